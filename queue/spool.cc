#include "queue/spool.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <variant>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "core/log.h"
#include "queue/errc.h"
#include "queue/records.h"

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
    }
    return "spool error";
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

// Commit queue slots kept between batches.
constexpr size_t kKeptQueueCapacity = 1 << 16;

using records::MessageKey;
using records::RcptKey;
using records::RcptRecord;

}  // namespace

const std::error_category& ErrorCategory() {
  static const Category c;
  return c;
}

std::string FormatId(MessageId id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

struct Spool::Impl {
  struct AcceptReq {
    NewMessage message;
    AcceptDone done;
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
  };
  // An accepted message is held by pointer: a slot of the queue is then 32 bytes, not the size
  // of a NewMessage, so a burst of a million outcomes costs 32 MB, not 300.
  using Request = std::variant<std::unique_ptr<AcceptReq>, FinishReq, DeferReq>;
  struct ReadReq {
    MessageId id;
    BodyDone done;
  };

  Options options;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* body_cf = nullptr;
  rocksdb::ColumnFamilyHandle* envelope_cf = nullptr;
  rocksdb::ColumnFamilyHandle* rcpt_cf = nullptr;

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
  };
  std::unordered_map<MessageId, Pending> remaining;

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
    if (db) {
      for (auto* h : handles)
        db->DestroyColumnFamilyHandle(h);
      rocksdb::Status s = db->Close();
      if (!s.ok())
        SPATE_LOG(kError, "spool: close: %s", s.ToString().c_str());
    }
  }

  MessageId NextId() {
    auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    last_id = std::max<MessageId>(last_id + 1, static_cast<MessageId>(now_us));
    return last_id;
  }

  void CommitLoop() {
    std::vector<Request> batch;
    for (;;) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty() && stopping)
          return;
        batch.swap(queue);
      }
      CommitBatch(batch);
      batch.clear();
      // A burst (a whole campaign deferred at once) leaves no large buffer behind.
      if (batch.capacity() > kKeptQueueCapacity)
        std::vector<Request>().swap(batch);
    }
  }

  void CommitBatch(std::vector<Request>& batch) {
    // Room for the whole batch up front: growing the batch's buffer by copies was 8% of the
    // commit thread at 100 KB messages (bench/results/profile-100k).
    size_t reserve = 64;
    for (const Request& r : batch) {
      if (const auto* a = std::get_if<std::unique_ptr<AcceptReq>>(&r)) {
        reserve += (*a)->message.body.size() + 256 + (*a)->message.rcpt_to.size() * 96;
      } else {
        reserve += 48;
      }
    }
    rocksdb::WriteBatch wb(reserve);
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
    for (Request& r : batch) {
      if (auto* ap = std::get_if<std::unique_ptr<AcceptReq>>(&r)) {
        AcceptReq* a = ap->get();
        MessageId id = NextId();
        const NewMessage& m = a->message;
        std::string key = MessageKey(id);
        std::string env = records::EncodeEnvelope(m, now_ms);
        wb.Put(body_cf, key, m.body);
        wb.Put(envelope_cf, key, env);
        // No recipient records: a recipient without one is pending with no attempt yet. The
        // common message (one recipient, delivered at the first try) thus costs two puts and
        // two deletes in the memtable, not six operations.
        remember(id);
        remaining[id] = Pending{static_cast<uint32_t>(m.rcpt_to.size()),
                                std::vector<bool>(m.rcpt_to.size(), true),
                                std::vector<bool>(m.rcpt_to.size(), false)};
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
          // The last one: the message goes, and every record of its recipients with it.
          std::string key = MessageKey(f->id);
          wb.SingleDelete(body_cf, key);
          wb.SingleDelete(envelope_cf, key);
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
               records::EncodeRcpt({RcptRecord::Kind::kDeferred, d->attempts, d->next_attempt_ms}));
        it->second.recorded[d->index] = true;
        ++deferred;
      }
    }
    rocksdb::WriteOptions wo;
    wo.sync = options.sync;
    auto start = std::chrono::steady_clock::now();
    rocksdb::Status s = wb.Count() > 0 ? db->Write(wo, &wb) : rocksdb::Status::OK();
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!s.ok()) {
      std::error_code ec = ToError(s, "commit");
      // Nothing of this batch is stored: put the pending state back as it was.
      for (auto& [id, state] : before) {
        if (state) {
          remaining[id] = std::move(*state);
        } else {
          remaining.erase(id);
        }
      }
      for (auto& [a, id] : accepted)
        a->done(Unexpected{ec}, std::move(a->message));
      return;
    }
    {
      std::lock_guard lock(stats_mu);
      ++stats.batches;
      stats.accepted += accepted.size();
      stats.finished += finished;
      stats.deferred += deferred;
      stats.commit_seconds += seconds;
      stats.pending_messages = remaining.size();
    }
    for (auto& [a, id] : accepted)
      a->done(id, std::move(a->message));
  }

  void ReadLoop() {
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
      std::string body;
      rocksdb::Status s = db->Get(rocksdb::ReadOptions(), body_cf, MessageKey(req.id), &body);
      if (s.ok()) {
        req.done(std::move(body));
      } else {
        req.done(Unexpected{ToError(s, "read body")});
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
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  // Everything acknowledged is in the WAL: recover every complete synced batch.
  db_options.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db_options.max_total_wal_size = 256 << 20;
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
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, small_options},
      {"body", body_options},
      {"envelope", small_options},
      {"rcpt", small_options},
  };
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, cfs, &impl->handles, &db);
  if (!s.ok()) {
    *error = "cannot open spool " + options.path + ": " + s.ToString();
    return Unexpected{Errc::kIo};
  }
  impl->db.reset(db);
  impl->body_cf = impl->handles[1];
  impl->envelope_cf = impl->handles[2];
  impl->rcpt_cf = impl->handles[3];
  impl->read_thread = std::thread([d = impl.get()] { d->ReadLoop(); });
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
  rocksdb::WriteBatch cleanup;
  size_t leftovers = 0;
  size_t orphans = 0;
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
      }
    }
    if (!rcpt_it->status().ok())
      return Unexpected{ToError(rcpt_it->status(), "recover scan")};
    if (pending.count == 0) {
      // Every recipient finished but the message is still here: cannot normally happen (the
      // last finish and the message's removal share a batch). Remove the leftovers.
      ++leftovers;
      cleanup.SingleDelete(d.envelope_cf, env_it->key());
      cleanup.SingleDelete(d.body_cf, env_it->key());
      for (uint32_t i = 0; i < n; ++i) {
        if (pending.recorded[i])
          cleanup.Delete(d.rcpt_cf, RcptKey(id, i));
      }
      continue;
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
  if (cleanup.Count() > 0) {
    SPATE_LOG(kWarn, "spool: removing %zu finished messages and %zu stray recipient records",
              leftovers, orphans);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = d.db->Write(wo, &cleanup);
    if (!s.ok())
      return Unexpected{ToError(s, "recover cleanup")};
  }
  std::lock_guard lock(d.stats_mu);
  d.stats.pending_messages = d.remaining.size();
  return {};
}

void Spool::Start() {
  impl_->commit_thread = std::thread([d = impl_.get()] { d->CommitLoop(); });
}

void Spool::Accept(NewMessage&& message, AcceptDone done) {
  impl_->Enqueue(
      std::make_unique<Impl::AcceptReq>(Impl::AcceptReq{std::move(message), std::move(done)}));
}

void Spool::Finish(MessageId id, uint32_t index) {
  impl_->Enqueue(Impl::FinishReq{id, index});
}

void Spool::Defer(MessageId id, uint32_t index, uint16_t attempts, int64_t next_attempt_ms) {
  impl_->Enqueue(Impl::DeferReq{id, index, attempts, next_attempt_ms});
}

void Spool::ReadBody(MessageId id, BodyDone done) {
  {
    std::lock_guard lock(impl_->read_mu);
    impl_->reads.push_back({id, std::move(done)});
  }
  impl_->read_cv.notify_one();
}

SpoolStats Spool::stats() const {
  SpoolStats out;
  {
    std::lock_guard lock(impl_->stats_mu);
    out = impl_->stats;
  }
  // Thread-safe property reads (no lock of ours).
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
