// queue/spool.h
//
// Spool is the durable message queue: one RocksDB instance. Whatever it acknowledged survives
// kill -9 and power loss (with sync on): every commit batch is one WriteBatch written with
// sync=true, and only then are the callers told.
//
// Group commit: Accept/Finish/Defer requests from every shard go into one queue; the commit
// thread takes everything queued, writes it as ONE synced batch, then runs the callbacks. While
// it syncs, the next batch gathers, so the fsync cost is shared by every shard's messages.
//
// The spool also owns "how many recipients of this message are still pending" (in memory,
// rebuilt by Recover()), so the batch that finishes the last recipient also deletes the body
// and envelope. The queue knows nothing of delivery: recipients are indices and addresses.
//
// Key layouts (all integers big-endian, so keys sort by message id, then recipient):
//   CF "body":     id(8)          -> the message, canonical (CRLF lines, not dot-stuffed).
//                                     Written once and removed once with SingleDelete, so a
//                                     message delivered before its memtable flushes never
//                                     reaches an SST file. Only bodies under
//                                     body_log_min_bytes; the larger ones are in
//   CF "body_ref": id(8)          -> where the body is in the body log (records.h,
//                                     body_log.h: <path>/bodies/), written and removed like
//                                     a body. Its bytes are appended and fdatasync'd before the
//                                     batch that holds the ref is written.
//   CF "envelope": id(8)          -> version(1) flags(1: 8bit, smtputf8) received_ms(8)
//                                     body_size(8) ret(1) str mail_from, str envid,
//                                     str auth_user, str campaign (versions 2 and 3),
//                                     priority(1, signed: version 3), count(4),
//                                     count x (str address, notify(1), str orcpt)
//                                     where str = len(4) bytes. Version 1: neither campaign
//                                     nor priority; 2: a campaign, priority 0; 3: a priority
//                                     other than 0, with the campaign or "" (the smallest
//                                     version that holds the message is written, so a build
//                                     from before a field still reads messages without it).
//                                     Written once, SingleDelete'd.
//   CF "rcpt":     id(8) index(4) -> 'P' attempts(2) next_attempt_ms(8): deferred ('W': and
//                                     the sender has had the DSN delay notice), or
//                                     'D': finished while others of the message are pending.
//                                     No record: pending, not tried yet (so the usual message,
//                                     one recipient delivered at once, writes no record at all).
//                                     The last recipient's finish deletes them all, with the
//                                     body and envelope, in one batch.
//   CF "suppression": address -> version(1) since_ms(8) str class, str reason: the suppression
//                                     list (suppression.h), loaded into memory by Open().
//   CF "state":    key -> value: small state of the daemon's that must outlive a restart
//                                     (operators' suspensions, idempotency keys), opaque to the
//                                     spool; keys by prefix ("control/", "idempotency/").
// Message ids: microseconds since the epoch at acceptance, bumped to stay strictly increasing
// (also across restarts: Recover() sees the largest id), so ids are unique and time-ordered.
//
// Record codecs: queue/records.h.
//
// Health: the spool refuses new messages rather than let RocksDB meet a full disk (which it does
// not survive: Debian's build aborts in WritableFileWriter after ENOSPC) or a broken one. The
// commit thread looks at the file system's free space (statvfs) every check_interval, and again
// before a batch whose size would take it under the watermark ([spool] min_free_space: the
// larger of min_free_bytes and min_free_ratio of the file system); under it, accepts fail with
// Errc::kNoSpace (452 4.3.1) while Finish and Defer go on being written (deliveries free
// space). A failed write, or a RocksDB background error, makes the spool kFailed: accepts fail
// with kIo (451 4.3.0), and every check_interval it calls DB::Resume() and tries again; the
// Finish/Defer records of a failed batch are queued again, never dropped (at shutdown they are
// left out, and those recipients are delivered again after the restart: at least once). A
// write stall (RocksDB stopped writes until compaction catches up) is kStalled. health() says
// which, from any thread, so the server can refuse at MAIL; each change is logged once.
//
// Threading: Accept/Finish/Defer/ReadBody from any thread; their callbacks run on the spool's
// own threads (commit, reader) and must only hand work on (e.g. post to a shard). The reader
// thread runs from Open(), so bodies can be read while Recover() still streams; the commit
// thread from Start(). Recover() runs before Start(), on the caller's thread: requests made
// meanwhile (a Finish for a recovered message being delivered already) wait in the commit queue.
// Blocking: Open() and Recover() block.
//
// Crash story, with the body log: a batch's large bodies are synced (append, fdatasync) before
// the batch's WriteBatch is (sync); its 250s go after both. A crash between the two leaves
// bodies no ref names: Recover() counts the refs per segment and removes the segments none
// names. A ref whose bytes are not there (a segment removed by hand) loses its message, by
// name in the log (SpoolStats::lost_bodies).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "core/task.h"

namespace rocksdb {
class EventListener;
}  // namespace rocksdb

namespace spate::queue {

class Suppression;

using MessageId = uint64_t;

// "0005f1c2a3b4c5d6": 16 lower-case hex digits.
std::string FormatId(MessageId id);

// RFC 3461 DSN request of one recipient, kept for the bounce and delay notices.
struct DsnRequest {
  uint8_t notify = 0;  // bit set as in core/smtp/server_session.h (kNotify*); 0: not given
  std::string orcpt;   // "rfc822;user@example.com", or empty
};

struct NewMessage {
  std::string mail_from;
  std::vector<std::string> rcpt_to;
  std::string body;
  bool body_8bit = false;
  bool smtputf8 = false;
  uint8_t ret = 0;              // RFC 3461 RET: 0 unset, 1 FULL, 2 HDRS
  std::string envid;            // RFC 3461 ENVID, decoded
  std::string auth_user;        // who submitted it (RFC 4954), empty when not authenticated
  std::string campaign;         // [server] campaign_header's value, or empty
  int8_t priority = 0;          // RFC 6710 MT-PRIORITY, -9 (lowest) to 9; 0 normal
  std::vector<DsnRequest> dsn;  // parallel to rcpt_to, or empty (no DSN parameters at all)
};

struct PendingRecipient {
  uint32_t index = 0;
  std::string address;
  DsnRequest dsn;
  uint16_t attempts = 0;
  int64_t next_attempt_ms = 0;  // unix time in ms; 0: now
  bool delay_warned = false;    // the sender has had its delay notice
};

struct RecoveredMessage {
  MessageId id = 0;
  std::string mail_from;
  int64_t received_ms = 0;
  uint64_t body_size = 0;
  bool body_8bit = false;
  bool smtputf8 = false;
  uint8_t ret = 0;
  std::string envid;
  std::string auth_user;
  std::string campaign;
  int8_t priority = 0;
  std::vector<PendingRecipient> recipients;  // only the pending ones
};

// Whether the spool takes new messages (see "Health" above).
enum class Health : uint8_t {
  kOk,
  kLowSpace,  // free space under the watermark, or RocksDB met ENOSPC: accepts get kNoSpace
  kFailed,    // a write failed or RocksDB stopped on a background error: accepts get kIo
  kStalled,   // RocksDB stopped writes until compaction catches up: commits wait
};
const char* HealthName(Health health);  // "ok", "low_space", "failed", "stalled"

struct SpoolStats {
  uint64_t batches = 0;       // synced writes
  uint64_t accepted = 0;      // messages made durable
  uint64_t finished = 0;      // recipients removed
  uint64_t deferred = 0;      // recipient states rewritten
  double commit_seconds = 0;  // total time in Write(), sync included
  uint64_t pending_messages = 0;
  // RocksDB's own memory now: memtables of every column family, and the block cache.
  uint64_t memtable_bytes = 0;
  uint64_t block_cache_bytes = 0;
  Health health = Health::kOk;
  uint64_t free_bytes = 0;         // on the spool's file system, at the last check
  uint64_t refused = 0;            // accepts refused for health (kNoSpace, kIo)
  uint64_t write_errors = 0;       // batches whose write failed
  uint64_t outcomes_retried = 0;   // Finish/Defer records written again after a failed batch
  uint64_t body_log_segments = 0;  // files of the body log (body_log.h), at the last batch
  uint64_t body_log_bytes = 0;     // their size together
  uint64_t lost_bodies = 0;        // messages Recover() removed: their body was not in the body log
  uint64_t bodies_moved = 0;       // bodies moved out of sparse body log segments (compaction)
};

class Spool {
 public:
  struct Options {
    std::string path;
    bool sync = true;
    // [spool] min_free_space: new messages are refused while less than the larger of these is
    // free on the spool's file system.
    uint64_t min_free_bytes = uint64_t{256} << 20;
    double min_free_ratio = 0.02;
    // How often free space is looked at, and a failed spool tries to resume.
    std::chrono::milliseconds check_interval{250};
    // Free and total bytes of the spool's file system; statvfs(path) when empty (a test gives
    // its own). False: unknown, nothing is refused for it.
    std::function<bool(uint64_t* free_bytes, uint64_t* total_bytes)> free_space = nullptr;
    // [suppression] enabled, ttl: the suppression list (suppression.h). Off, it
    // finds and keeps nothing (its column family stays, untouched).
    bool suppression = true;
    Seconds suppression_ttl{90 * 86400};
    // [spool] body_log_min_size: bodies of at least this many bytes go to the body log
    // (body_log.h) and RocksDB holds where; smaller ones stay in CF "body". UINT64_MAX: none.
    uint64_t body_log_min_bytes = uint64_t{64} << 10;
    // A segment of the body log takes batches until it is this large.
    uint64_t body_log_segment_bytes = uint64_t{64} << 20;
    // A body log segment full this long with half of its bodies or fewer still needed is
    // compacted: those bodies move to the segment being written (body_log.h, "Space").
    std::chrono::milliseconds body_log_compact_after{10 * 60 * 1000};
  };

  static Result<std::unique_ptr<Spool>> Open(const Options& options, std::string* error);
  ~Spool();  // finishes queued requests, stops the threads, closes the database

  // Start-up only, before Start(): calls `fn` for each message with pending recipients, in id
  // order, and removes leftovers of finished messages. One pass over the envelopes and one over
  // the recipient records, side by side (both sorted by id): linear in the records.
  Result<void> Recover(const std::function<void(RecoveredMessage&&)>& fn);
  void Start();

  // `done` gets the new id once the message is durable (or an error: nothing was stored), and
  // the message back, so the caller can deliver it without reading it again.
  using AcceptDone = UniqueFunction<void(Result<MessageId>, NewMessage&&)>;
  void Accept(NewMessage&& message, AcceptDone done);

  // The recipient's outcome is final (delivered or failed): it leaves the spool; the message
  // goes with its last recipient.
  void Finish(MessageId id, uint32_t index);
  // The recipient stays, to be tried again at `next_attempt_ms`; `delay_warned`: its sender
  // has had the delay notice, which is never sent twice (also not after a restart).
  void Defer(MessageId id, uint32_t index, uint16_t attempts, int64_t next_attempt_ms,
             bool delay_warned = false);

  // Reads a body on the reader thread (for retries and recovered messages).
  using BodyDone = UniqueFunction<void(Result<std::string>)>;
  void ReadBody(MessageId id, BodyDone done);

  // The daemon's state (CF "state"): `value` put under `key`, or the key deleted (nullopt),
  // written with the commit thread's next batch (from Start() on), then `done` (may be empty;
  // on the commit thread: hand work on). A write that fails is tried again with the next batch.
  void PutState(std::string key, std::optional<std::string> value,
                UniqueFunction<void()> done = {});
  // Every state entry whose key starts with `prefix`, in key order, as on disk now (any thread;
  // reads the disk).
  Result<std::vector<std::pair<std::string, std::string>>> ReadState(std::string_view prefix) const;

  // The suppression list of this spool: any thread, as long as the Spool lives. Its writes go
  // out with the commit thread's batches (from Start() on).
  Suppression& suppression();
  const Suppression& suppression() const;

  SpoolStats stats() const;
  Health health() const;  // any thread; a relaxed read

  // What RocksDB tells the spool (background errors, write stops), for a test to say it too.
  std::shared_ptr<rocksdb::EventListener> listener_for_testing() const;

 private:
  struct Impl;
  explicit Spool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spate::queue
