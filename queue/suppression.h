// queue/suppression.h
//
// The suppression list: recipient addresses that bounced for good (a hard bounce of class
// InvalidRecipient or BadDomain, or an operator's import), so that a later RCPT TO for one is
// refused at once (550 5.1.1, naming when and why) instead of being tried and bounced again.
// The spool owns the one of its database (Spool::suppression()); it lives as long as the Spool.
//
// Stored in the spool's RocksDB, CF "suppression" (layout in records.h): key the normalized
// address (NormalizeAddress in suppression_csv.h: lower case, as mailbox providers compare), value
// version(1) since_ms(8) class reason.
//
// Lookup never touches the disk (it runs on a reactor for every RCPT): the whole list is kept in
// memory, loaded by Spool::Open (which drops expired and undecodable records), 16 shards by
// address hash, each a std::shared_mutex over a hash map. Add and Remove change the index at
// once and queue the write to the spool's commit thread (never a RocksDB write on the caller's
// thread: a write there would wait behind the commit thread's fsync); it goes out in the next
// group commit. Entries still queued at a power cut or kill -9 are lost, and learned again at the
// address's next hard bounce: the list is a cache of what bounced, not a record that must
// survive.
//
// Expiry: an entry older than the ttl (Spool::Options::suppression_ttl, 90 days) is absent for
// Lookup and export at once, and purged from memory and disk by a sweep: at Open, every hour on
// the commit thread, and soon after SetTtl(). A sweep walks each shard under its lock shared
// (lookups go on; an Add to that shard waits, ~1/16 of the list: tens of ms at 10 million
// entries), then removes what expired 1,024 entries at a time under the exclusive lock.
//
// Memory: about 330 bytes per entry at typical sizes (a 25-octet address, "InvalidRecipient",
// a 90-octet reason), counted in glibc malloc chunks: the hash node holding the key and value
// strings (128), the heap copies of address (48), class (32) and reason (112), a bucket (8).
// 10 million entries: about 3.3 GB; a reason at its 512-octet bound adds ~420 bytes. There is
// no bound on the count: the operator's ttl is the bound.
//
// Threading: every member from any thread. Blocking: none past a shard's lock (ImportCsv reads
// its stream; ExportCsv writes its stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "core/result.h"
#include "queue/spool.h"
#include "queue/suppression_csv.h"

namespace spate::queue {

class Suppression {
 public:
  struct Options {
    bool enabled = true;      // false: Lookup finds nothing, Add and Remove do nothing
    Seconds ttl{90 * 86400};  // <= 0: entries never expire
  };
  // Where changes go: the key, and the encoded value to put or nullopt to delete. Called under
  // the address's shard lock, so the writes of one address arrive in the order the index
  // changed; it must only queue them (the spool hands them to its commit thread).
  using Writer = std::function<void(std::string key, std::optional<std::string> value)>;

  // [cluster]: hears each change made here (Add, Remove, ImportCsv; not Load, Sweep or Apply),
  // to share it with the other nodes. Same rules as the Writer: called under the shard lock,
  // it must only queue. Set before any change.
  using Observer = Writer;
  void SetObserver(Observer observer);
  // A change another node made (what an Observer saw there): the record is put, or deleted
  // for nullopt, here and in the spool, without an Observer call. False for a record Load
  // would refuse (then nothing changes).
  bool Apply(std::string_view key, const std::optional<std::string>& value, int64_t now_ms);

  // The spool makes the one of its database; a test may make one over its own writer.
  Suppression(Options options, Writer writer);
  ~Suppression();
  Suppression(const Suppression&) = delete;
  Suppression& operator=(const Suppression&) = delete;

  // The entry of `address` (any case), unless it is older than the ttl at `now_ms`.
  std::optional<SuppressionEntry> Lookup(std::string_view address, int64_t now_ms) const;
  // Puts an entry on the list, or renews it (a later bounce replaces since, class, reason).
  // The address is normalized; an invalid one (ValidSuppressionAddress) is ignored; since_ms
  // <= 0 means now; the class is cut to its bound with other characters made '_' (empty:
  // "Manual"), the reason cut to kMaxSuppressionReason octets. One already past the ttl is not
  // stored.
  void Add(SuppressionEntry entry);
  // True when the address was on the list (expired or not) and is now gone.
  bool Remove(std::string_view address);
  // Entries held, expired ones not yet swept included.
  size_t size() const;
  void SetTtl(Seconds ttl);
  bool enabled() const;

  // The CSV of suppression_csv.h. Import is all or nothing: a bad line leaves the list as it
  // was, with Errc::kInvalid and *error naming the line; Errc::kDisabled when the list is off.
  // Returns the entries taken (those already past the ttl are not).
  Result<size_t> ImportCsv(std::istream& in, int64_t now_ms, std::string* error);
  // The live entries, sorted by address, after the header; returns how many.
  size_t ExportCsv(std::ostream& out, int64_t now_ms) const;

  // The spool's, at Open: takes one record of CF "suppression". False when the record is to be
  // deleted (it does not decode, its key is no normalized address, or it has expired).
  bool Load(std::string_view key, std::string_view value, int64_t now_ms);
  // The commit thread's: removes the entries past the ttl and writes their deletes; how many.
  size_t Sweep(int64_t now_ms);
  bool sweep_requested() const;  // SetTtl() asks for a sweep

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The `spate suppression` commands: the list of a spool on disk, without a running Spool.
struct SuppressionImport {
  size_t imported = 0;  // written
  size_t expired = 0;   // parsed but already past the ttl: not written
};
// Opens the database read-only, so it works while a spate runs (it sees what was written when
// it opened). Errc::kNotFound when there is no spool at `options.path`.
Result<size_t> ExportSpoolSuppression(const Spool::Options& options, int64_t now_ms,
                                      std::ostream& out, std::string* error);
// Opens the database for writing, synced: Errc::kInUse (and *error says to stop the running
// spate) when another process holds it, Errc::kInvalid for a bad CSV line (nothing written).
Result<SuppressionImport> ImportSpoolSuppression(const Spool::Options& options, std::istream& in,
                                                 int64_t now_ms, std::string* error);
// True when the address was on the list; Errc::kInUse as for import.
Result<bool> RemoveSpoolSuppression(const Spool::Options& options, std::string_view address,
                                    std::string* error);

}  // namespace spate::queue
