#include "queue/spool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <variant>

#include <sys/statvfs.h>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "core/log.h"
#include "core/reactor.h"
#include "queue/body_log.h"
#include "queue/errc.h"
#include "queue/records.h"
#include "queue/suppression.h"

namespace spate::queue {

namespace {

class Category : public std::error_category {
 public:
  const char* name() const noexcept override { return "spool"; }
  std::string message(int c) const override {
    switch (static_cast<Errc>(c)) {
      case Errc::kIo:
        return "spool I/O error";
      case Errc::kCorruption:
        return "spool record corrupt";
      case Errc::kNotFound:
        return "spool record not found";
      case Errc::kShutdown:
        return "spool shutting down";
      case Errc::kNoSpace:
        return "spool file system full (under min_free_space)";
      case Errc::kInvalid:
        return "spool input invalid";
      case Errc::kDisabled:
        return "suppression list off";
      case Errc::kInUse:
        return "spool in use by another process";
    }
    return "spool error";
  }
  std::error_condition default_error_condition(int c) const noexcept override {
    if (static_cast<Errc>(c) == Errc::kNoSpace)
      return std::errc::no_space_on_device;
    return std::error_condition(c, *this);
  }
};

// The one place a RocksDB Status becomes an error_code.
std::error_code ToError(const rocksdb::Status& s, const char* what) {
  SPATE_LOG(kError, "spool: %s: %s", what, s.ToString().c_str());
  if (s.IsNotFound())
    return Errc::kNotFound;
  if (s.IsCorruption())
    return Errc::kCorruption;
  return Errc::kIo;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// RocksDB memory: all memtables together, and the shared block cache.
constexpr size_t kMemtableBudget = 128 << 20;
constexpr size_t kBlockCacheBytes = 16 << 20;
// Obsolete files (write-ahead logs above all) deleted in the background, truncated this much at
// a time, at most this fast. The ratio is of the table files' size, past which RocksDB would
// delete at once: the spool's tables are small (most bodies never reach one), so it is set out
// of reach and the rate is the bound.
constexpr int64_t kDeleteBytesPerSecond = int64_t{1} << 30;
constexpr uint64_t kDeleteChunkBytes = 4 << 20;
constexpr double kMaxTrashRatio = 1e12;

// The memtable's insert hint (memtable_insert_with_hint_prefix_extractor) for the column
// families keyed by message id: one for every key. See Spool::Open.
class OneHint : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "spate.OneHint"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), 0);
  }
  bool InDomain(const rocksdb::Slice&) const override { return true; }
};

// Commit queue slots kept between batches.
constexpr size_t kKeptQueueCapacity = 1 << 16;

using records::MessageKey;
using records::RcptKey;
using records::RcptRecord;

// RocksDB's own log lines go to ours (warnings and errors only), not to a LOG file in the spool:
// a file it would write to while the disk is full, and one more thing to rotate. While the
// database is being opened they are debug lines: a failure there is Open()'s error (and opening
// a new spool "fails" to read the directory it then creates).
class SpoolLogger final : public rocksdb::Logger {
 public:
  SpoolLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  void SetOpening(bool opening) { opening_.store(opening, std::memory_order_relaxed); }
  using rocksdb::Logger::Logv;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel())
      return;
    char line[1024];
    // RocksDB's own format strings (its Logger interface has no format attribute to check).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    std::vsnprintf(line, sizeof line, format, ap);
#pragma GCC diagnostic pop
    if (opening_.load(std::memory_order_relaxed)) {
      SPATE_LOG(kDebug, "spool: rocksdb: %s", line);
    } else if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      SPATE_LOG(kError, "spool: rocksdb: %s", line);
    } else {
      SPATE_LOG(kWarn, "spool: rocksdb: %s", line);
    }
  }
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }

 private:
  std::atomic<bool> opening_{true};
};

// Free space of the file system holding `path`: what an unprivileged writer may use, and the
// size of it all. False when it cannot be known (then nothing is refused for it).
bool FreeSpace(const std::string& path, uint64_t* free_bytes, uint64_t* total_bytes) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0)
    return false;
  *free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  *total_bytes = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  return true;
}

constexpr auto kReminderInterval = std::chrono::seconds(60);
// How often the commit thread purges expired suppression entries (and at Open, and after
// Suppression::SetTtl()).
constexpr auto kSweepInterval = std::chrono::hours(1);

}  // namespace

const char* HealthName(Health health) {
  switch (health) {
    case Health::kOk:
      return "ok";
    case Health::kLowSpace:
      return "low_space";
    case Health::kFailed:
      return "failed";
    case Health::kStalled:
      return "stalled";
  }
  return "unknown";
}

const std::error_category& ErrorCategory() {
  static const Category c;
  return c;
}

std::string FormatId(MessageId id) {
  // 16 lower-case hex digits, by hand: several per message (the 250, the records).
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4)
    out[static_cast<size_t>(i)] = kHex[id & 0xf];
  return out;
}

struct Spool::Impl {
  struct AcceptReq {
    NewMessage message;
    AcceptDone done;
    // CommitBatch: the message's id, and where its body went when in the body log.
    MessageId id = 0;
    bool logged = false;
    BodyRef ref;
  };
  struct FinishReq {
    MessageId id;
    uint32_t index;
  };
  struct DeferReq {
    MessageId id;
    uint32_t index;
    uint16_t attempts;
    int64_t next_attempt_ms;
    bool delay_warned;
  };
  // A suppression list change, or one of the state (PutState): put `value`, or delete when it
  // has none; `done` (may be empty) once it is written.
  struct SuppressReq {
    std::string key;
    std::optional<std::string> value;
    bool state = false;  // CF "state", else "suppression"
    UniqueFunction<void()> done;
  };
  // An accepted message is held by pointer: a slot of the queue is then 32 bytes, not the size
  // of a NewMessage, so a burst of a million outcomes costs 32 MB, not 300. So is a
  // suppression change.
  using Request =
      std::variant<std::unique_ptr<AcceptReq>, FinishReq, DeferReq, std::unique_ptr<SuppressReq>>;
  struct ReadReq {
    MessageId id;
    BodyDone done;
  };

  Options options;
  // The database, and what it was opened with (to open it again after a fatal error). `db` and
  // the handles change only on the commit thread, under db_mu exclusively (Reopen()); the
  // reader thread and stats() read them under db_mu shared. `db` is null after a reopen that
  // failed, until one succeeds.
  rocksdb::DBOptions db_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> cf_descriptors;
  std::shared_ptr<SpoolLogger> logger = std::make_shared<SpoolLogger>();
  std::shared_ptr<rocksdb::EventListener> listener;
  mutable std::shared_mutex db_mu;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* body_cf = nullptr;
  rocksdb::ColumnFamilyHandle* envelope_cf = nullptr;
  rocksdb::ColumnFamilyHandle* rcpt_cf = nullptr;
  rocksdb::ColumnFamilyHandle* suppression_cf = nullptr;
  rocksdb::ColumnFamilyHandle* state_cf = nullptr;
  rocksdb::ColumnFamilyHandle* body_ref_cf = nullptr;
  // Bodies of at least options.body_log_min_bytes: in the body log, named by CF "body_ref".
  std::unique_ptr<BodyLog> body_log;

  // The suppression list: its index is in memory, its writes come through the commit queue.
  std::unique_ptr<Suppression> suppression;
  std::chrono::steady_clock::time_point next_sweep{};  // commit thread

  // Commit thread state. `remaining` and `last_id` are touched by Recover() before the thread
  // starts and by the commit thread afterwards, never by both.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Request> queue;
  bool stopping = false;
  std::thread commit_thread;
  // Per message with recipients pending: which ones. An outcome for a recipient that is not
  // pending (a duplicate, or a Defer after a Finish) changes nothing, so the last recipient's
  // record and the message always go together.
  struct Pending {
    uint32_t count = 0;
    std::vector<bool> waiting;   // by recipient index
    std::vector<bool> recorded;  // a record of this recipient is in CF "rcpt"
    uint32_t segment = 0;        // of the body log holding its body; 0: in CF "body"
  };
  std::unordered_map<MessageId, Pending> remaining;
  // Body log compaction (body_log.h, "Space"): the segment being emptied, and the messages
  // whose bodies are still to move out of it, a few MB per batch.
  uint32_t compact_segment = 0;
  std::vector<MessageId> compact_queue;
  struct Move {
    MessageId id = 0;
    uint32_t from = 0;  // the segment it leaves
    std::string body;
    BodyRef to;
  };

  bool IsWaiting(const Pending& p, uint32_t index) const {
    return index < p.waiting.size() && p.waiting[index];
  }
  MessageId last_id = 0;

  std::mutex read_mu;
  std::condition_variable read_cv;
  std::deque<ReadReq> reads;
  bool read_stopping = false;  // under read_mu (`stopping` is the commit thread's, under mu)
  std::thread read_thread;

  mutable std::mutex stats_mu;
  SpoolStats stats;

  // Health. The listener (RocksDB's threads) sets the atomics; the commit thread decides the
  // rest and publishes `health`.
  std::atomic<Health> health{Health::kOk};
  std::atomic<bool> bg_error{false};  // RocksDB stopped on a background error
  std::atomic<bool> bg_error_nospace{false};
  std::atomic<int> stalled_cfs{0};  // column families whose writes are stopped
  bool low_space = false;           // commit thread: under the watermark
  bool write_failed = false;        // commit thread: the last write failed
  bool write_failed_nospace = false;
  std::string last_error;               // what the last failure said
  uint64_t free_at_check = UINT64_MAX;  // at the last statvfs
  uint64_t watermark = 0;               // bytes that must stay free
  uint64_t written_since_check = 0;     // bytes of batches since then
  std::chrono::steady_clock::time_point last_check{};
  std::chrono::steady_clock::time_point last_reminder{};
  uint64_t refused_since_change = 0;  // accepts refused since the health last changed
  uint64_t finished_since_flush = 0;  // messages removed since the last forced flush
  // When a failed database may next be resumed or opened again, and the wait after that.
  std::chrono::steady_clock::time_point next_recovery{};
  std::chrono::steady_clock::duration recovery_delay{};
  std::chrono::steady_clock::time_point last_flush{};

  class Listener final : public rocksdb::EventListener {
   public:
    explicit Listener(Impl* impl) : impl_(impl) {}
    void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
      if (error == nullptr || error->ok())
        return;
      impl_->bg_error_nospace.store(error->IsNoSpace(), std::memory_order_relaxed);
      impl_->bg_error.store(true, std::memory_order_relaxed);
    }
    // The spool decides when a database stopped by an error is resumed (Watch: once its own
    // check finds room). RocksDB would otherwise start its own recovery from a full disk,
    // through the SstFileManager the spool has for deleting logs, and the spool's Resume() met
    // it running ("Resource busy"), took that for a fatal error, and opened the database
    // again, replaying its whole write-ahead log, where Resume() was all a full disk needed.
    // A soft error (a compaction short of space) stops no write, and Resume() leaves it be
    // ("nothing to do", db_impl.cc): RocksDB's own recovery is what clears it, so it stays on.
    void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status error,
                              bool* auto_recovery) override {
      if (auto_recovery != nullptr && error.severity() >= rocksdb::Status::Severity::kHardError)
        *auto_recovery = false;
    }
    void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
      if (info.new_bg_error.ok())
        impl_->bg_error.store(false, std::memory_order_relaxed);
    }
    void OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) override {
      const bool was = info.condition.prev == rocksdb::WriteStallCondition::kStopped;
      const bool is = info.condition.cur == rocksdb::WriteStallCondition::kStopped;
      if (is && !was)
        impl_->stalled_cfs.fetch_add(1, std::memory_order_relaxed);
      if (was && !is)
        impl_->stalled_cfs.fetch_sub(1, std::memory_order_relaxed);
    }

   private:
    Impl* impl_;
  };

  // Looks at the free space (every check_interval, or now if `force`) and at what RocksDB and
  // the last write said; tries to resume a failed database once there is room; publishes the
  // health and logs a change once (and a reminder every minute while it lasts).
  void Watch(bool force) {
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_check < options.check_interval)
      return;
    last_check = now;
    uint64_t free_bytes = 0;
    uint64_t total = 0;
    const bool known = options.free_space ? options.free_space(&free_bytes, &total)
                                          : FreeSpace(options.path, &free_bytes, &total);
    if (known) {
      watermark = std::max<uint64_t>(options.min_free_bytes,
                                     static_cast<uint64_t>(options.min_free_ratio * total));
      free_at_check = free_bytes;
      // Out of it again only with a twentieth to spare, so a disk right at the mark does not
      // flap between refusing and accepting.
      low_space = low_space ? free_bytes < watermark + watermark / 20 : free_bytes < watermark;
    } else {
      free_at_check = UINT64_MAX;
      low_space = false;
    }
    written_since_check = 0;
    // Short of space, the body log's spare segments are the first to go.
    if (low_space && body_log)
      body_log->DropSpares();
    if (low_space && db && finished_since_flush > 0 &&
        now - last_flush >= std::chrono::seconds(1)) {
      // Deliveries remove messages, but the space stays taken until RocksDB flushes the
      // memtables and drops the write-ahead log that holds them (a body put and removed in one
      // memtable never reaches a table file). Short of space, that is not left to the
      // memtables' own size: flushed now, in the background.
      rocksdb::FlushOptions fo;
      fo.wait = false;
      fo.allow_write_stall = true;
      rocksdb::Status s = db->Flush(fo, handles);
      if (!s.ok())
        SPATE_LOG(kDebug, "spool: flush to free space: %s", s.ToString().c_str());
      finished_since_flush = 0;
      last_flush = now;
    }
    const bool failed = write_failed || bg_error.load(std::memory_order_relaxed) || !db;
    if (failed && !low_space && now >= next_recovery) {
      // Room again (or it was no space problem): out of read-only mode, and the next batch
      // tries for real. Resume() is a no-op on a database without a background error, and
      // brings one back from a recoverable error (ENOSPC). After a fatal one (an I/O error in
      // the WAL) RocksDB takes no more writes until it is opened again: then it is, and it
      // recovers every synced batch from its WAL, which is all the spool ever acknowledged.
      rocksdb::Status s = db ? db->Resume() : rocksdb::Status::IOError("spool is closed");
      if (s.IsBusy()) {
        // A recovery of RocksDB's own is under way (none should be: the listener turns them
        // off): left to finish and asked again at the next check, not taken for a fatal error.
        next_recovery = now + options.check_interval;
        Publish(now);
        return;
      }
      if (!s.ok())
        s = Reopen();
      if (s.ok()) {
        write_failed = false;
        bg_error.store(false, std::memory_order_relaxed);
        recovery_delay = {};
      } else {
        // Opening again replays the write-ahead log: against a disk that keeps failing, tried
        // less and less often (up to every 4 s), not every check interval.
        last_error = s.ToString();
        recovery_delay = std::min<std::chrono::steady_clock::duration>(
            std::max<std::chrono::steady_clock::duration>(2 * recovery_delay,
                                                          options.check_interval),
            std::chrono::seconds(4));
        next_recovery = now + recovery_delay;
      }
    }
    Publish(now);
  }

  rocksdb::Status OpenDb() {
    rocksdb::DB* opened = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> opened_handles;
    logger->SetOpening(true);
    rocksdb::Status s =
        rocksdb::DB::Open(db_options, options.path, cf_descriptors, &opened_handles, &opened);
    logger->SetOpening(false);
    if (!s.ok())
      return s;
    db.reset(opened);
    handles = std::move(opened_handles);
    body_cf = handles[1];
    envelope_cf = handles[2];
    rcpt_cf = handles[3];
    suppression_cf = handles[4];
    state_cf = handles[5];
    body_ref_cf = handles[6];
    return s;
  }

  void CloseDb() {
    if (!db)
      return;
    for (auto* h : handles)
      db->DestroyColumnFamilyHandle(h);
    handles.clear();
    body_cf = envelope_cf = rcpt_cf = suppression_cf = state_cf = body_ref_cf = nullptr;
    rocksdb::Status s = db->Close();
    if (!s.ok())
      SPATE_LOG(kError, "spool: close: %s", s.ToString().c_str());
    db.reset();
  }

  // Commit thread only: closes the database and opens it again (see Watch()).
  rocksdb::Status Reopen() {
    std::unique_lock lock(db_mu);
    CloseDb();
    rocksdb::Status s = OpenDb();
    if (s.ok()) {
      SPATE_LOG(kWarn, "spool: opened again after a fatal error");
    } else {
      SPATE_LOG(kError, "spool: cannot open again after a fatal error: %s", s.ToString().c_str());
    }
    return s;
  }

  Health Compute() const {
    const bool bg = bg_error.load(std::memory_order_relaxed);
    const bool nospace = (write_failed && write_failed_nospace) ||
                         (bg && bg_error_nospace.load(std::memory_order_relaxed));
    if (low_space || nospace)
      return Health::kLowSpace;
    if (write_failed || bg)
      return Health::kFailed;
    if (stalled_cfs.load(std::memory_order_relaxed) > 0)
      return Health::kStalled;
    return Health::kOk;
  }

  void Publish(std::chrono::steady_clock::time_point now) {
    const Health next = Compute();
    const Health prev = health.exchange(next, std::memory_order_relaxed);
    {
      std::lock_guard lock(stats_mu);
      stats.health = next;
      stats.free_bytes = free_at_check == UINT64_MAX ? 0 : free_at_check;
    }
    if (next == prev) {
      if (next != Health::kOk && now - last_reminder >= kReminderInterval) {
        last_reminder = now;
        SPATE_LOG(kWarn, "spool: still refusing new mail (%s): %llu refused in the last %lld s",
                  Why(next).c_str(), static_cast<unsigned long long>(refused_since_change),
                  static_cast<long long>(kReminderInterval.count()));
        refused_since_change = 0;
      }
      return;
    }
    last_reminder = now;
    if (next == Health::kOk) {
      SPATE_LOG(kWarn, "spool: accepting new mail again (was %s); %llu messages refused meanwhile",
                HealthName(prev), static_cast<unsigned long long>(refused_since_change));
    } else {
      SPATE_LOG(kError, "spool: refusing new mail (%s); deliveries go on", Why(next).c_str());
    }
    refused_since_change = 0;
  }

  std::string Why(Health h) const {
    char buf[256];
    switch (h) {
      case Health::kLowSpace:
        if (low_space) {
          std::snprintf(buf, sizeof buf,
                        "452 4.3.1: %llu MB free on %s, under min_free_space %llu MB",
                        static_cast<unsigned long long>(free_at_check >> 20), options.path.c_str(),
                        static_cast<unsigned long long>(watermark >> 20));
          return buf;
        }
        return "452 4.3.1: the file system is full: " + last_error;
      case Health::kFailed:
        return "451 4.3.0: " + (last_error.empty() ? std::string("background error") : last_error);
      case Health::kStalled:
        return "451 4.3.0: RocksDB stopped writes until compaction catches up";
      case Health::kOk:
        break;
    }
    return "ok";
  }

  ~Impl() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    {
      std::lock_guard lock(read_mu);
      read_stopping = true;
    }
    read_cv.notify_all();
    if (commit_thread.joinable())
      commit_thread.join();
    if (read_thread.joinable())
      read_thread.join();
    CloseDb();
  }

  MessageId NextId() {
    auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    last_id = std::max<MessageId>(last_id + 1, static_cast<MessageId>(now_us));
    return last_id;
  }

  // Compaction's share of one batch (body_log.h, "Space"): the next bodies of the segment being
  // emptied, up to kMoveBytesPerBatch, read back (their CRC checked). A new segment to empty is
  // picked once the last one's queue is done: its messages found by one walk of `remaining`.
  static constexpr uint64_t kMoveBytesPerBatch = 4 << 20;
  void TakeMoves(std::vector<Move>* moves) {
    if (compact_queue.empty()) {
      compact_segment = body_log->CompactionCandidate(options.body_log_compact_after);
      if (compact_segment == 0)
        return;
      body_log->MarkCompacted(compact_segment);
      for (const auto& [id, p] : remaining) {
        if (p.segment == compact_segment)
          compact_queue.push_back(id);
      }
      SPATE_LOG(kInfo, "spool: moving the %zu bodies still needed out of body log segment %u",
                compact_queue.size(), compact_segment);
    }
    uint64_t bytes = 0;
    while (!compact_queue.empty() && bytes < kMoveBytesPerBatch) {
      const MessageId id = compact_queue.back();
      compact_queue.pop_back();
      auto it = remaining.find(id);
      if (it == remaining.end() || it->second.segment != compact_segment)
        continue;  // finished since
      std::string value;
      rocksdb::Status s = db->Get(rocksdb::ReadOptions(), body_ref_cf, MessageKey(id), &value);
      std::optional<BodyRef> ref = s.ok() ? records::DecodeBodyRef(value) : std::nullopt;
      Result<std::string> body =
          ref ? body_log->Read(*ref) : Result<std::string>(Unexpected{Errc::kCorruption});
      if (!body) {
        SPATE_LOG(kWarn, "spool: the body of %s stays in body log segment %u: %s",
                  FormatId(id).c_str(), compact_segment, body.error().message().c_str());
        continue;
      }
      bytes += body->size();
      moves->push_back(Move{id, compact_segment, std::move(*body), {}});
    }
  }

  void CommitLoop() {
    // RocksDB counts into its thread's perf context by default (kEnableCount: every key
    // comparison of every memtable insert); nothing here reads those counts.
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
    std::vector<Request> batch;
    for (;;) {
      bool stop;
      {
        std::unique_lock lock(mu);
        // Woken by work, or every check_interval to watch the disk (and resume a failed
        // database) while nothing comes.
        cv.wait_for(lock, options.check_interval, [&] { return stopping || !queue.empty(); });
        if (queue.empty() && stopping)
          return;
        stop = stopping;
        batch.swap(queue);
      }
      Watch(false);
      MaybeSweep();
      if (batch.empty()) {
        // Idle: a compaction still goes on (body_log.h, "Space"), a batch of moves alone.
        if (!stop && db && Compute() == Health::kOk &&
            (!compact_queue.empty() ||
             body_log->CompactionCandidate(options.body_log_compact_after) != 0))
          CommitBatch(batch);
        continue;
      }
      std::vector<Request> again = CommitBatch(batch);
      batch.clear();
      if (!again.empty()) {
        if (stop) {
          // Not recorded: those recipients are still pending on disk and are delivered again
          // after the restart (at least once). The accepts still queued get their answer.
          SPATE_LOG(kError,
                    "spool: stopping with %zu delivery outcomes not written (%s); they are "
                    "delivered again after the restart",
                    again.size(), last_error.c_str());
        } else {
          std::unique_lock lock(mu);
          // Ahead of what came meanwhile, in their order; tried again after a check interval
          // (and a Resume()), not in a tight loop against a broken disk.
          queue.insert(queue.begin(), std::make_move_iterator(again.begin()),
                       std::make_move_iterator(again.end()));
          std::lock_guard stats_lock(stats_mu);
          stats.outcomes_retried += again.size();
        }
        if (!stop) {
          std::unique_lock lock(mu);
          cv.wait_for(lock, options.check_interval, [&] { return stopping; });
        }
      }
      // A burst (a whole campaign deferred at once) leaves no large buffer behind.
      if (batch.capacity() > kKeptQueueCapacity)
        std::vector<Request>().swap(batch);
    }
  }

  // Commit thread: purges expired suppression entries every kSweepInterval (or when the ttl
  // changed). Their deletes join the queue, for the next batch.
  void MaybeSweep() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_sweep && !suppression->sweep_requested())
      return;
    next_sweep = now + kSweepInterval;
    if (size_t n = suppression->Sweep(NowMs()); n > 0)
      SPATE_LOG(kInfo, "spool: %zu suppression entries expired", n);
  }

  // Open(): the suppression list into memory; expired and undecodable records are deleted.
  rocksdb::Status LoadSuppression() {
    if (!suppression->enabled())
      return rocksdb::Status::OK();
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, suppression_cf));
    rocksdb::WriteBatch purge;
    const int64_t now_ms = NowMs();
    size_t loaded = 0;
    size_t bad = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string_view key(it->key().data(), it->key().size());
      const std::string_view value(it->value().data(), it->value().size());
      if (suppression->Load(key, value, now_ms)) {
        ++loaded;
        continue;
      }
      // Expired, or damaged: either way the entry is absent (an address that bounces again
      // comes back).
      if (!records::DecodeSuppression(value))
        ++bad;
      purge.Delete(suppression_cf, it->key());
    }
    if (!it->status().ok())
      return it->status();
    if (bad > 0)
      SPATE_LOG(kWarn, "spool: %zu suppression records do not decode; removed", bad);
    if (purge.Count() > 0) {
      rocksdb::Status s = db->Write(rocksdb::WriteOptions(), &purge);
      if (!s.ok())
        return s;
    }
    if (loaded > 0 || purge.Count() > 0) {
      SPATE_LOG(kInfo, "spool: suppression list: %zu entries; %u expired or damaged removed",
                loaded, purge.Count());
    }
    next_sweep = std::chrono::steady_clock::now() + kSweepInterval;
    return rocksdb::Status::OK();
  }

  // Writes one batch; returns the Finish/Defer requests of a batch whose write failed, to be
  // queued again.
  std::vector<Request> CommitBatch(std::vector<Request>& batch) {
    // Room for the whole batch up front: growing the batch's buffer by copies was 8% of the
    // commit thread at 100 KB messages (bench/results/profile-100k).
    size_t reserve = 64;
    bool any_accept = false;
    for (const Request& r : batch) {
      if (const auto* a = std::get_if<std::unique_ptr<AcceptReq>>(&r)) {
        reserve += (*a)->message.body.size() + 256 + (*a)->message.rcpt_to.size() * 96;
        any_accept = true;
      } else {
        reserve += 48;
      }
    }
    // New messages only while the disk keeps its watermark: looked at again now if this batch
    // would take it there (a burst of large messages between two checks), and refused if it
    // still would.
    auto no_room = [&] {
      return any_accept && free_at_check != UINT64_MAX &&
             written_since_check + reserve + watermark > free_at_check;
    };
    if (no_room()) {
      Watch(true);
      if (no_room()) {
        // As good as at the mark: refused from MAIL on, not after each message's data, until
        // there is room again (with the hysteresis of Watch()).
        low_space = true;
        Publish(std::chrono::steady_clock::now());
      }
    }
    const Health h = Compute();
    const bool full = h == Health::kLowSpace;
    const bool refuse = full || h == Health::kFailed;
    const std::error_code refusal =
        full ? make_error_code(Errc::kNoSpace) : make_error_code(Errc::kIo);
    std::vector<Request> outcomes;  // to be queued again, should the write fail
    if (!db) {
      // Closed after a fatal error and not open again yet (Watch() keeps trying): nothing can
      // be written, so accepts are refused and outcomes wait.
      uint64_t n = 0;
      for (Request& r : batch) {
        if (auto* ap = std::get_if<std::unique_ptr<AcceptReq>>(&r)) {
          ++n;
          (*ap)->done(Unexpected{refusal}, std::move((*ap)->message));
        } else {
          outcomes.push_back(std::move(r));
        }
      }
      refused_since_change += n;
      std::lock_guard lock(stats_mu);
      stats.refused += n;
      return outcomes;
    }
    rocksdb::WriteBatch wb(refuse ? 64 : reserve);
    std::vector<std::pair<AcceptReq*, MessageId>> accepted;
    // The state of every message this batch touches, as it was before: a failed write puts it
    // back, so memory keeps matching disk.
    std::unordered_map<MessageId, std::optional<Pending>> before;
    auto remember = [&](MessageId id) {
      if (before.count(id) != 0)
        return;
      auto it = remaining.find(id);
      before.emplace(id, it == remaining.end() ? std::nullopt : std::optional(it->second));
    };
    uint64_t finished = 0;
    uint64_t deferred = 0;
    int64_t now_ms = NowMs();
    uint64_t refused = 0;
    std::vector<SuppressReq*> written;  // whose `done` is called once the batch is on disk
    // The large bodies first: appended to the body log and synced before the records that
    // name them are written (body_log.h), so no ref on disk names bytes that are not.
    std::error_code log_error;
    uint64_t logged_bytes = 0;
    // Bodies moving out of a sparse segment go with them, not while the spool refuses mail
    // (short of space, a failed move would fail the spool for its outcomes too).
    std::vector<Move> moves;
    uint32_t appended_segment = 0;  // the segment this batch's bodies went to
    if (!refuse)
      TakeMoves(&moves);
    {
      std::vector<BodyLog::Item> items;
      for (Move& m : moves) {
        items.push_back({m.id, m.body, &m.to});
        logged_bytes += BodyLog::kHeaderSize + m.body.size();
      }
      for (Request& r : batch) {
        if (refuse)
          break;
        if (auto* ap = std::get_if<std::unique_ptr<AcceptReq>>(&r)) {
          AcceptReq& a = **ap;
          a.id = NextId();
          a.logged = a.message.body.size() >= options.body_log_min_bytes;
          if (a.logged) {
            items.push_back({a.id, a.message.body, &a.ref});
            logged_bytes += BodyLog::kHeaderSize + a.message.body.size();
          }
        }
      }
      log_error = body_log->Append(items, options.sync);
      if (!log_error && !items.empty())
        appended_segment = items.front().ref->segment;
      if (log_error) {
        // Those messages are refused (451/452: sent again later); the rest of the batch is
        // written. The spool is failed until the next check (Watch) clears it.
        write_failed = true;
        write_failed_nospace = log_error == Errc::kNoSpace;
        last_error = "body log: " + log_error.message();
        logged_bytes = 0;
        for (Move& m : moves)
          compact_queue.push_back(m.id);  // tried again with a later batch
        moves.clear();
      }
    }
    std::vector<uint32_t> released;                   // segments of the bodies this batch removes
    std::vector<std::pair<MessageId, bool>> removed;  // messages it removes; body in the log?
    for (Request& r : batch) {
      if (auto* ap = std::get_if<std::unique_ptr<AcceptReq>>(&r)) {
        AcceptReq* a = ap->get();
        if (refuse) {
          // Nothing stored: the client is told to try again later (452 4.3.1 or 451 4.3.0).
          ++refused;
          a->done(Unexpected{refusal}, std::move(a->message));
          continue;
        }
        if (a->logged && log_error) {
          ++refused;
          a->done(Unexpected{log_error}, std::move(a->message));
          continue;
        }
        MessageId id = a->id;
        const NewMessage& m = a->message;
        // Its body and envelope are put after the loop (below). No recipient records: a
        // recipient without one is pending with no attempt yet. The common message (one
        // recipient, delivered at the first try) thus costs two puts and two deletes in the
        // memtable, not six operations.
        remember(id);
        remaining[id] = Pending{
            static_cast<uint32_t>(m.rcpt_to.size()), std::vector<bool>(m.rcpt_to.size(), true),
            std::vector<bool>(m.rcpt_to.size(), false), a->logged ? a->ref.segment : 0};
        accepted.emplace_back(a, id);
      } else if (auto* f = std::get_if<FinishReq>(&r)) {
        auto it = remaining.find(f->id);
        if (it == remaining.end() || !IsWaiting(it->second, f->index)) {
          continue;  // already finished (a duplicate outcome): harmless
        }
        remember(f->id);
        Pending& p = it->second;
        p.waiting[f->index] = false;
        ++finished;
        if (--p.count == 0) {
          ++finished_since_flush;
          // The last one: the message goes (its body and envelope after the loop), and every
          // record of its recipients with it.
          removed.emplace_back(f->id, p.segment != 0);
          if (p.segment != 0)
            released.push_back(p.segment);
          for (uint32_t i = 0; i < p.recorded.size(); ++i) {
            if (p.recorded[i])
              wb.Delete(rcpt_cf, RcptKey(f->id, i));
          }
          remaining.erase(it);
        } else {
          wb.Put(rcpt_cf, RcptKey(f->id, f->index), records::EncodeRcpt({RcptRecord::Kind::kDone}));
          p.recorded[f->index] = true;
        }
      } else if (auto* d = std::get_if<DeferReq>(&r)) {
        auto it = remaining.find(d->id);
        if (it == remaining.end() || !IsWaiting(it->second, d->index)) {
          continue;  // finished already: never bring its record back
        }
        remember(d->id);
        wb.Put(rcpt_cf, RcptKey(d->id, d->index),
               records::EncodeRcpt({RcptRecord::Kind::kDeferred, d->attempts, d->next_attempt_ms,
                                    d->delay_warned}));
        it->second.recorded[d->index] = true;
        ++deferred;
      } else if (auto* sp = std::get_if<std::unique_ptr<SuppressReq>>(&r)) {
        // Written even while new mail is refused: a few bytes, like the outcomes.
        SuppressReq& q = **sp;
        rocksdb::ColumnFamilyHandle* cf = q.state ? state_cf : suppression_cf;
        if (q.value) {
          wb.Put(cf, q.key, *q.value);
        } else {
          wb.Delete(cf, q.key);
        }
        if (q.done)
          written.push_back(&q);
      }
    }
    // Bodies and envelopes: the removed messages' in key order, then the new ones' (whose ids
    // grow). Each column family's memtable then takes ascending runs, each insert next to the
    // last one (RocksDB's skip list keeps where it last inserted), instead of a jump between
    // an old key and the newest for every message of the batch. Their keys are in no other
    // operation of the batch (a message is neither acknowledged nor finished in the batch that
    // accepts it), so the order changes nothing else.
    std::sort(removed.begin(), removed.end());
    for (const auto& [id, logged] : removed) {
      // A ref may have been put twice (its body moved by a compaction): Delete, since
      // SingleDelete is for a key put once.
      if (logged) {
        wb.Delete(body_ref_cf, MessageKey(id));
      } else {
        wb.SingleDelete(body_cf, MessageKey(id));
      }
    }
    // The moved bodies' new refs, for the messages still there after this batch's outcomes.
    size_t moved = 0;
    for (Move& m : moves) {
      auto it = remaining.find(m.id);
      if (it == remaining.end() || it->second.segment != m.from) {
        m.to.segment = 0;  // finished meanwhile: the copy is named by nothing
        continue;
      }
      wb.Put(body_ref_cf, MessageKey(m.id), records::EncodeBodyRef(m.to));
      ++moved;
    }
    for (const auto& [id, logged] : removed)
      wb.SingleDelete(envelope_cf, MessageKey(id));
    for (auto& [a, id] : accepted) {
      if (a->logged) {
        wb.Put(body_ref_cf, MessageKey(id), records::EncodeBodyRef(a->ref));
      } else {
        wb.Put(body_cf, MessageKey(id), a->message.body);
      }
    }
    for (auto& [a, id] : accepted)
      wb.Put(envelope_cf, MessageKey(id), records::EncodeEnvelope(a->message, now_ms));
    rocksdb::WriteOptions wo;
    wo.sync = options.sync;
    auto start = std::chrono::steady_clock::now();
    rocksdb::Status s = wb.Count() == 0 ? rocksdb::Status::OK()
                        : db            ? db->Write(wo, &wb)
                                        : rocksdb::Status::IOError("spool is closed");
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (refused != 0) {
      refused_since_change += refused;
      std::lock_guard lock(stats_mu);
      stats.refused += refused;
    }
    if (!s.ok()) {
      // Logged once, as the health changes (Publish), not once per batch.
      write_failed = true;
      write_failed_nospace = s.IsNoSpace();
      last_error = s.ToString();
      const std::error_code ec =
          s.IsNoSpace() ? make_error_code(Errc::kNoSpace) : make_error_code(Errc::kIo);
      // Nothing of this batch is stored: put the pending state back as it was.
      for (auto& [id, state] : before) {
        if (state) {
          remaining[id] = std::move(*state);
        } else {
          remaining.erase(id);
        }
      }
      refused_since_change += accepted.size();
      {
        std::lock_guard lock(stats_mu);
        ++stats.write_errors;
        stats.refused += accepted.size();
      }
      for (auto& [a, id] : accepted)
        a->done(Unexpected{ec}, std::move(a->message));
      for (Move& m : moves) {
        if (m.to.segment == 0)
          continue;
        compact_queue.push_back(m.id);
        // Its new ref may be in the log all the same (a sync that failed after the append):
        // the new segment stays until the next Recover counts what names it.
        body_log->Retain(m.to.segment);
      }
      Publish(std::chrono::steady_clock::now());
      // The batch still holds its outcomes (only its accepts were taken): queued again.
      for (Request& r : batch) {
        if (!std::holds_alternative<std::unique_ptr<AcceptReq>>(r))
          outcomes.push_back(std::move(r));
      }
      return outcomes;
    }
    written_since_check += wb.GetDataSize() + logged_bytes;
    // The bodies' segments, now that the records naming them (or their removal) are on disk:
    // every new ref retained before anything is released. The segment this batch appended to
    // may have been filled by it and hold nothing else still needed; released first, it would
    // go (and be written again as a spare) under the refs just written to it.
    for (auto& [a, id] : accepted) {
      if (a->logged)
        body_log->Retain(a->ref.segment);
    }
    for (Move& m : moves) {
      if (m.to.segment == 0)
        continue;
      remaining[m.id].segment = m.to.segment;
      body_log->Retain(m.to.segment);
    }
    for (uint32_t segment : released)
      body_log->Release(segment);
    for (Move& m : moves) {
      if (m.to.segment != 0)
        body_log->Release(m.from);
    }
    if (appended_segment != 0)
      body_log->DropIfUnused(appended_segment);
    {
      std::lock_guard lock(stats_mu);
      stats.bodies_moved += moved;
      stats.body_log_segments = body_log->segments();
      stats.body_log_bytes = body_log->bytes();
      if (!batch.empty() || moved > 0)
        ++stats.batches;  // not an idle turn that moved nothing
      stats.accepted += accepted.size();
      stats.finished += finished;
      stats.deferred += deferred;
      stats.commit_seconds += seconds;
      stats.pending_messages = remaining.size();
    }
    {
      // What the callbacks post (each message's 250 to its connection's shard, its jobs to
      // their shards) goes as one task per reactor for the whole batch.
      Reactor::PostBatch posts;
      for (auto& [a, id] : accepted)
        a->done(id, std::move(a->message));
    }
    for (SuppressReq* q : written)
      q->done();
    return {};
  }

  void ReadLoop() {
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);  // as the commit thread
    for (;;) {
      ReadReq req;
      {
        std::unique_lock lock(read_mu);
        read_cv.wait(lock, [&] { return read_stopping || !reads.empty(); });
        if (reads.empty())
          return;
        req = std::move(reads.front());
        reads.pop_front();
      }
      // Where the body is (a ref: in the body log), else the body itself.
      std::string body;
      rocksdb::Status s;
      bool in_log = false;
      {
        std::shared_lock lock(db_mu);
        const std::string key = MessageKey(req.id);
        if (!db) {
          s = rocksdb::Status::IOError("spool is closed");
        } else {
          s = db->Get(rocksdb::ReadOptions(), body_ref_cf, key, &body);
          in_log = s.ok();
          if (s.IsNotFound())
            s = db->Get(rocksdb::ReadOptions(), body_cf, key, &body);
        }
      }
      if (!s.ok()) {
        req.done(Unexpected{ToError(s, "read body")});
      } else if (!in_log) {
        req.done(std::move(body));
      } else if (std::optional<BodyRef> ref = records::DecodeBodyRef(body)) {
        Result<std::string> read = body_log->Read(*ref);
        if (!read && read.error() == Errc::kNotFound) {
          // Its segment went between the two reads: its body was moved by a compaction, and
          // the ref is new. Once more, with that one.
          std::string again;
          bool found = false;
          {
            std::shared_lock lock(db_mu);
            found =
                db && db->Get(rocksdb::ReadOptions(), body_ref_cf, MessageKey(req.id), &again).ok();
          }
          std::optional<BodyRef> moved = found ? records::DecodeBodyRef(again) : std::nullopt;
          if (moved && *moved != *ref)
            read = body_log->Read(*moved);  // outside the lock, as the first read
        }
        req.done(std::move(read));
      } else {
        SPATE_LOG(kError, "spool: the body ref of %s does not decode", FormatId(req.id).c_str());
        req.done(Unexpected{Errc::kCorruption});
      }
    }
  }

  void Enqueue(Request&& r) {
    {
      std::lock_guard lock(mu);
      queue.push_back(std::move(r));
    }
    cv.notify_one();
  }
};

Spool::Spool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Spool::~Spool() = default;

Result<std::unique_ptr<Spool>> Spool::Open(const Options& options, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  rocksdb::DBOptions& db_options = impl->db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  // Everything acknowledged is in the WAL: recover every complete synced batch.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db_options.max_total_wal_size = 256 << 20;
  // RocksDB deletes a write-ahead log once every memtable in it is flushed, often several at
  // once (256 MB when max_total_wal_size forces the small column families out). On ext4, one
  // such unlink frees (and, mounted with discard, discards) its blocks, at once without a
  // journal and in the next journal commit with one: every WAL fdatasync of the next tens of
  // milliseconds waits behind that, and the accepts of those batches with them
  // (bench/README.md, "The accept tail at half load"). Through an SstFileManager they are
  // renamed to .trash and truncated 4 MB at a time in the background instead, at most 1 GB/s
  // (far above any WAL rate this spool writes, so trash never piles up). RocksDB still deletes at
  // once while it tracks no table file (a fresh spool), and removes the trash a crash left at Open.
  {
    rocksdb::Status sfm_status;
    db_options.sst_file_manager.reset(rocksdb::NewSstFileManager(
        rocksdb::Env::Default(), nullptr, "", kDeleteBytesPerSecond,
        /*delete_existing_trash=*/true, &sfm_status, kMaxTrashRatio, kDeleteChunkBytes));
    if (!sfm_status.ok()) {
      SPATE_LOG(kWarn, "spool: deleting logs in the background: %s; they are deleted at once",
                sfm_status.ToString().c_str());
      db_options.sst_file_manager.reset();
    }
  }
  // Table files (memtable flushes) are written back 1 MB at a time as they are written, not in
  // one burst at their end that the WAL's fdatasync of the next batch would wait behind (the
  // accept tail at half load, bench/README.md). The WAL's own syncs are unchanged.
  db_options.bytes_per_sync = 1 << 20;
  db_options.info_log = impl->logger;
  impl->listener = std::make_shared<Impl::Listener>(impl.get());
  db_options.listeners.push_back(impl->listener);
  // RocksDB's memory is bounded as a whole, whatever the load: memtables of every column family
  // together (flushed early past this), and one block cache shared by all of them (each
  // column family would otherwise make its own).
  db_options.db_write_buffer_size = kMemtableBudget;
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  std::shared_ptr<rocksdb::TableFactory> table_factory(
      rocksdb::NewBlockBasedTableFactory(table_options));
  rocksdb::ColumnFamilyOptions body_options;
  // Large memtables: most bodies are delivered and SingleDelete'd before a flush, and then
  // never written to an SST at all.
  body_options.write_buffer_size = 32 << 20;
  body_options.max_write_buffer_number = 3;
  body_options.table_factory = table_factory;
  rocksdb::ColumnFamilyOptions small_options;
  small_options.write_buffer_size = 32 << 20;
  small_options.table_factory = table_factory;
  rocksdb::ColumnFamilyOptions message_options = small_options;
  auto hint = std::make_shared<OneHint>();
  body_options.memtable_insert_with_hint_prefix_extractor = hint;
  message_options.memtable_insert_with_hint_prefix_extractor = hint;
  impl->cf_descriptors = {
      {rocksdb::kDefaultColumnFamilyName, small_options},
      {"body", body_options},
      {"envelope", message_options},
      {"rcpt", message_options},
      // Small values, read once at Open: the small column families' options. Opened with the
      // others, created in a spool made before it (create_missing_column_families).
      {"suppression", small_options},
      {"state", small_options},
      {"body_ref", small_options},
  };
  Impl* d = impl.get();
  impl->suppression = std::make_unique<Suppression>(
      Suppression::Options{options.suppression, options.suppression_ttl},
      [d](std::string key, std::optional<std::string> value) {
        auto req = std::make_unique<Impl::SuppressReq>();
        req->key = std::move(key);
        req->value = std::move(value);
        d->Enqueue(std::move(req));
      });
  rocksdb::Status s = impl->OpenDb();
  if (s.ok())
    s = impl->LoadSuppression();
  if (!s.ok()) {
    *error = "cannot open spool " + options.path + ": " + s.ToString();
    return Unexpected{Errc::kIo};
  }
  auto body_log = BodyLog::Open(options.path + "/bodies", options.body_log_segment_bytes, error);
  if (!body_log) {
    *error = "cannot open spool " + options.path + ": " + *error;
    return Unexpected{body_log.error()};
  }
  impl->body_log = std::move(*body_log);
  impl->read_thread = std::thread([d = impl.get()] { d->ReadLoop(); });
  impl->Watch(true);  // the disk as it is at start-up
  return std::unique_ptr<Spool>(new Spool(std::move(impl)));
}

Result<void> Spool::Recover(const std::function<void(RecoveredMessage&&)>& fn) {
  Impl& d = *impl_;
  // Every envelope is a message with at least one recipient pending; its recipient records say
  // which are finished and which were deferred. Both column families sort by message id, so
  // one iterator walks each, side by side: every record is read once.
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;  // a one-time scan: keep the block cache for the bodies
  std::unique_ptr<rocksdb::Iterator> env_it(d.db->NewIterator(ro, d.envelope_cf));
  std::unique_ptr<rocksdb::Iterator> rcpt_it(d.db->NewIterator(ro, d.rcpt_cf));
  rcpt_it->SeekToFirst();
  // The third, side by side: the refs of the bodies in the body log.
  std::unique_ptr<rocksdb::Iterator> ref_it(d.db->NewIterator(ro, d.body_ref_cf));
  ref_it->SeekToFirst();
  rocksdb::WriteBatch cleanup;
  size_t leftovers = 0;
  size_t orphans = 0;
  size_t lost = 0;
  std::vector<PendingRecipient> all;
  for (env_it->SeekToFirst(); env_it->Valid(); env_it->Next()) {
    std::string_view key(env_it->key().data(), env_it->key().size());
    std::optional<MessageId> decoded_id = records::DecodeMessageKey(key);
    if (!decoded_id) {
      SPATE_LOG(kError, "spool: undecodable envelope key skipped");
      continue;
    }
    MessageId id = *decoded_id;
    d.last_id = std::max(d.last_id, id);
    RecoveredMessage m;
    m.id = id;
    if (!records::DecodeEnvelope(std::string_view(env_it->value().data(), env_it->value().size()),
                                 &m, &all)) {
      SPATE_LOG(kError, "spool: envelope of %s does not decode", FormatId(id).c_str());
      return Unexpected{Errc::kCorruption};
    }
    const uint32_t n = static_cast<uint32_t>(all.size());
    Impl::Pending pending{n, std::vector<bool>(n, true), std::vector<bool>(n, false)};
    for (; rcpt_it->Valid(); rcpt_it->Next()) {
      auto k =
          records::DecodeRcptKey(std::string_view(rcpt_it->key().data(), rcpt_it->key().size()));
      if (!k)
        return Unexpected{Errc::kCorruption};
      if (k->id > id)
        break;  // the next message's
      if (k->id < id) {
        // A record of a message that is gone (its envelope was removed): cannot normally
        // happen, since they are deleted together. Removed with the leftovers.
        ++orphans;
        cleanup.Delete(d.rcpt_cf, rcpt_it->key());
        continue;
      }
      auto v =
          records::DecodeRcpt(std::string_view(rcpt_it->value().data(), rcpt_it->value().size()));
      if (!v || k->index >= n)
        return Unexpected{Errc::kCorruption};
      pending.recorded[k->index] = true;
      if (v->kind == RcptRecord::Kind::kDone) {
        if (pending.waiting[k->index])
          --pending.count;
        pending.waiting[k->index] = false;
      } else {
        all[k->index].attempts = v->attempts;
        all[k->index].next_attempt_ms = v->next_attempt_ms;
        all[k->index].delay_warned = v->delay_warned;
      }
    }
    if (!rcpt_it->status().ok())
      return Unexpected{ToError(rcpt_it->status(), "recover scan")};
    bool has_ref = false;
    std::optional<BodyRef> ref;
    while (ref_it->Valid()) {
      const std::string_view k(ref_it->key().data(), ref_it->key().size());
      const std::optional<MessageId> ref_id = records::DecodeMessageKey(k);
      if (ref_id && *ref_id > id)
        break;  // the next message's
      if (ref_id && *ref_id == id) {
        has_ref = true;
        ref = records::DecodeBodyRef(
            std::string_view(ref_it->value().data(), ref_it->value().size()));
      } else {
        // The ref of a message that is gone: cannot normally happen (they are deleted
        // together). Removed with the leftovers.
        ++orphans;
        cleanup.Delete(d.body_ref_cf, ref_it->key());
      }
      ref_it->Next();
      if (has_ref)
        break;
    }
    if (!ref_it->status().ok())
      return Unexpected{ToError(ref_it->status(), "recover scan")};
    if (has_ref && pending.count > 0 && (!ref || !d.body_log->Holds(*ref))) {
      // Its body is not where its ref says: the segment went, or is shorter (a file system
      // that lost a synced write, or a hand that removed it). Nothing can deliver it: said
      // once per message, and removed, rather than read and fail again every minute.
      ++lost;
      SPATE_LOG(kError,
                "spool: the body of %s is missing from the body log (%s); the message is "
                "removed, its %u pending recipients not delivered",
                FormatId(id).c_str(), ref ? "its segment is gone or shorter" : "its ref is damaged",
                pending.count);
      pending.count = 0;
    }
    if (pending.count == 0) {
      // Every recipient finished but the message is still here: cannot normally happen (the
      // last finish and the message's removal share a batch). Remove the leftovers.
      ++leftovers;
      cleanup.SingleDelete(d.envelope_cf, env_it->key());
      if (has_ref) {
        cleanup.Delete(d.body_ref_cf, env_it->key());  // put twice, maybe (a moved body)
      } else {
        cleanup.SingleDelete(d.body_cf, env_it->key());
      }
      for (uint32_t i = 0; i < n; ++i) {
        if (pending.recorded[i])
          cleanup.Delete(d.rcpt_cf, RcptKey(id, i));
      }
      continue;
    }
    if (has_ref) {
      pending.segment = ref->segment;
      d.body_log->Retain(ref->segment, ref->length);
    }
    m.recipients.reserve(pending.count);
    for (PendingRecipient& p : all) {
      if (pending.waiting[p.index])
        m.recipients.push_back(std::move(p));
    }
    d.remaining.emplace(id, std::move(pending));
    fn(std::move(m));
  }
  if (!env_it->status().ok())
    return Unexpected{ToError(env_it->status(), "recover scan")};
  for (; rcpt_it->Valid(); rcpt_it->Next()) {
    ++orphans;
    cleanup.Delete(d.rcpt_cf, rcpt_it->key());
  }
  for (; ref_it->Valid(); ref_it->Next()) {
    ++orphans;
    cleanup.Delete(d.body_ref_cf, ref_it->key());
  }
  if (!ref_it->status().ok())
    return Unexpected{ToError(ref_it->status(), "recover scan")};
  if (cleanup.Count() > 0) {
    SPATE_LOG(kWarn, "spool: removing %zu finished messages and %zu stray records",
              leftovers - lost, orphans);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = d.db->Write(wo, &cleanup);
    if (!s.ok())
      return Unexpected{ToError(s, "recover cleanup")};
  }
  // Segments no pending message's body is in (finished, or written by a batch that did not
  // make it to disk).
  if (size_t n = d.body_log->DropUnreferenced(); n > 0)
    SPATE_LOG(kInfo, "spool: %zu body log segments no message needs removed", n);
  std::lock_guard lock(d.stats_mu);
  d.stats.pending_messages = d.remaining.size();
  d.stats.lost_bodies = lost;
  d.stats.body_log_segments = d.body_log->segments();
  d.stats.body_log_bytes = d.body_log->bytes();
  return {};
}

void Spool::Start() {
  impl_->commit_thread = std::thread([d = impl_.get()] { d->CommitLoop(); });
}

void Spool::Accept(NewMessage&& message, AcceptDone done) {
  auto req = std::make_unique<Impl::AcceptReq>();
  req->message = std::move(message);
  req->done = std::move(done);
  impl_->Enqueue(std::move(req));
}

void Spool::Finish(MessageId id, uint32_t index) {
  impl_->Enqueue(Impl::FinishReq{id, index});
}

void Spool::Defer(MessageId id, uint32_t index, uint16_t attempts, int64_t next_attempt_ms,
                  bool delay_warned) {
  impl_->Enqueue(Impl::DeferReq{id, index, attempts, next_attempt_ms, delay_warned});
}

void Spool::ReadBody(MessageId id, BodyDone done) {
  {
    std::lock_guard lock(impl_->read_mu);
    impl_->reads.push_back({id, std::move(done)});
  }
  impl_->read_cv.notify_one();
}

void Spool::PutState(std::string key, std::optional<std::string> value,
                     UniqueFunction<void()> done) {
  auto req = std::make_unique<Impl::SuppressReq>();
  req->key = std::move(key);
  req->value = std::move(value);
  req->state = true;
  req->done = std::move(done);
  impl_->Enqueue(std::move(req));
}

Result<std::vector<std::pair<std::string, std::string>>> Spool::ReadState(
    std::string_view prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db)
    return Unexpected{Errc::kIo};
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->state_cf));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
    std::string_view key(it->key().data(), it->key().size());
    if (!key.starts_with(prefix))
      break;
    out.emplace_back(std::string(key), it->value().ToString());
  }
  if (!it->status().ok())
    return Unexpected{Errc::kIo};
  return out;
}

Suppression& Spool::suppression() {
  return *impl_->suppression;
}

const Suppression& Spool::suppression() const {
  return *impl_->suppression;
}

Health Spool::health() const {
  return impl_->health.load(std::memory_order_relaxed);
}

std::shared_ptr<rocksdb::EventListener> Spool::listener_for_testing() const {
  return impl_->listener;
}

SpoolStats Spool::stats() const {
  SpoolStats out;
  {
    std::lock_guard lock(impl_->stats_mu);
    out = impl_->stats;
  }
  // Thread-safe property reads; db_mu only keeps a reopen away.
  std::shared_lock lock(impl_->db_mu);
  if (!impl_->db)
    return out;
  for (rocksdb::ColumnFamilyHandle* h : impl_->handles) {
    uint64_t v = 0;
    if (impl_->db->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v))
      out.memtable_bytes += v;
  }
  uint64_t cache = 0;
  if (impl_->db->GetIntProperty(rocksdb::DB::Properties::kBlockCacheUsage, &cache))
    out.block_cache_bytes = cache;
  return out;
}

}  // namespace spate::queue
