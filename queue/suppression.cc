#include "queue/suppression.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdarg>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <ostream>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "core/log.h"
#include "queue/errc.h"
#include "queue/internal/quiet_logger.h"
#include "queue/records.h"

namespace spate::queue {

namespace {

// The whole CSV, read and parsed: Errc::kIo when the stream fails, Errc::kInvalid (and
// *error naming the line) for a bad line.
Result<SuppressionCsv> ReadCsv(std::istream& in, int64_t now_ms, std::string* error) {
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    *error = "cannot read the CSV";
    return Unexpected{Errc::kIo};
  }
  SuppressionCsv csv = ParseSuppressionCsv(text, now_ms);
  if (!csv.ok()) {
    *error = csv.error;
    return Unexpected{Errc::kInvalid};
  }
  return csv;
}

constexpr size_t kShards = 16;
constexpr const char* kColumnFamily = "suppression";
constexpr uint32_t kImportBatch = 1 << 16;  // entries per write of an offline import

int64_t TtlMs(Seconds ttl) {
  return ttl.count() <= 0 ? 0 : static_cast<int64_t>(ttl.count() * 1000);
}

bool Expired(int64_t since_ms, int64_t now_ms, int64_t ttl_ms) {
  return ttl_ms > 0 && now_ms - since_ms > ttl_ms;
}

// The class as the list keeps it: bounded, of ValidSuppressionClass characters.
std::string CleanClass(std::string_view klass) {
  std::string out(klass.substr(0, kMaxSuppressionClass));
  for (char& c : out) {
    if (!ValidSuppressionClass(std::string_view(&c, 1)))
      c = '_';
  }
  return out.empty() ? std::string(kDefaultSuppressionClass) : out;
}

// Cut to the bound, not inside a UTF-8 sequence.
void CutReason(std::string* reason) {
  if (reason->size() <= kMaxSuppressionReason)
    return;
  size_t n = kMaxSuppressionReason;
  while (n > 0 && (static_cast<unsigned char>((*reason)[n]) & 0xC0) == 0x80)
    --n;
  reason->resize(n);
}

}  // namespace

struct Suppression::State {
  struct Item {
    int64_t since_ms = 0;
    std::string klass;
    std::string reason;
  };
  struct Shard {
    mutable std::shared_mutex mu;
    std::unordered_map<std::string, Item> map;
  };

  bool enabled = true;
  std::atomic<int64_t> ttl_ms{0};
  std::atomic<bool> sweep_requested{false};
  Writer writer;
  Writer observer;
  std::array<Shard, kShards> shards;

  Shard& ShardOf(const std::string& key) { return shards[std::hash<std::string>{}(key) % kShards]; }
  const Shard& ShardOf(const std::string& key) const {
    return shards[std::hash<std::string>{}(key) % kShards];
  }
  int64_t ttl() const { return ttl_ms.load(std::memory_order_relaxed); }
};

Suppression::Suppression(Options options, Writer writer) : state_(std::make_unique<State>()) {
  state_->enabled = options.enabled;
  state_->ttl_ms.store(TtlMs(options.ttl), std::memory_order_relaxed);
  state_->writer = std::move(writer);
}

Suppression::~Suppression() = default;

bool Suppression::enabled() const {
  return state_->enabled;
}

std::optional<SuppressionEntry> Suppression::Lookup(std::string_view address,
                                                    int64_t now_ms) const {
  if (!state_->enabled)
    return std::nullopt;
  std::string key = NormalizeAddress(address);
  const State::Shard& shard = state_->ShardOf(key);
  std::shared_lock lock(shard.mu);
  auto it = shard.map.find(key);
  if (it == shard.map.end() || Expired(it->second.since_ms, now_ms, state_->ttl()))
    return std::nullopt;
  return SuppressionEntry{std::move(key), it->second.since_ms, it->second.klass, it->second.reason};
}

void Suppression::Add(SuppressionEntry entry) {
  if (!state_->enabled)
    return;
  if (!ValidSuppressionAddress(entry.address)) {
    SPATE_LOG(kWarn, "suppression: not an address, not added: %.*s",
              static_cast<int>(std::min<size_t>(entry.address.size(), 300)), entry.address.data());
    return;
  }
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  if (entry.since_ms <= 0)
    entry.since_ms = now_ms;
  if (Expired(entry.since_ms, now_ms, state_->ttl()))
    return;
  std::string key = NormalizeAddress(entry.address);
  State::Item item{entry.since_ms, CleanClass(entry.klass), std::move(entry.reason)};
  CutReason(&item.reason);
  std::string value = records::EncodeSuppression({item.since_ms, item.klass, item.reason});
  State::Shard& shard = state_->ShardOf(key);
  std::unique_lock lock(shard.mu);
  shard.map.insert_or_assign(key, std::move(item));
  if (state_->observer)
    state_->observer(key, value);
  state_->writer(std::move(key), std::move(value));
}

void Suppression::SetObserver(Observer observer) {
  state_->observer = std::move(observer);
}

bool Suppression::Apply(std::string_view key, const std::optional<std::string>& value,
                        int64_t now_ms) {
  if (!state_->enabled)
    return false;
  if (!value) {
    std::string k = NormalizeAddress(key);
    State::Shard& shard = state_->ShardOf(k);
    std::unique_lock lock(shard.mu);
    if (shard.map.erase(k) > 0)
      state_->writer(std::move(k), std::nullopt);
    return true;
  }
  std::optional<records::SuppressionValue> v = records::DecodeSuppression(*value);
  if (!v || !ValidSuppressionAddress(key) || NormalizeAddress(key) != key ||
      Expired(v->since_ms, now_ms, state_->ttl()))
    return false;
  std::string k(key);
  State::Shard& shard = state_->ShardOf(k);
  std::unique_lock lock(shard.mu);
  shard.map.insert_or_assign(k,
                             State::Item{v->since_ms, std::move(v->klass), std::move(v->reason)});
  state_->writer(std::move(k), *value);
  return true;
}

bool Suppression::Remove(std::string_view address) {
  if (!state_->enabled)
    return false;
  std::string key = NormalizeAddress(address);
  State::Shard& shard = state_->ShardOf(key);
  std::unique_lock lock(shard.mu);
  if (shard.map.erase(key) == 0)
    return false;
  if (state_->observer)
    state_->observer(key, std::nullopt);
  state_->writer(std::move(key), std::nullopt);
  return true;
}

size_t Suppression::size() const {
  size_t n = 0;
  for (const State::Shard& shard : state_->shards) {
    std::shared_lock lock(shard.mu);
    n += shard.map.size();
  }
  return n;
}

void Suppression::SetTtl(Seconds ttl) {
  state_->ttl_ms.store(TtlMs(ttl), std::memory_order_relaxed);
  state_->sweep_requested.store(true, std::memory_order_relaxed);
}

bool Suppression::sweep_requested() const {
  return state_->sweep_requested.load(std::memory_order_relaxed);
}

bool Suppression::Load(std::string_view key, std::string_view value, int64_t now_ms) {
  std::optional<records::SuppressionValue> v = records::DecodeSuppression(value);
  if (!v || !ValidSuppressionAddress(key) || NormalizeAddress(key) != key ||
      Expired(v->since_ms, now_ms, state_->ttl())) {
    return false;
  }
  std::string k(key);
  State::Shard& shard = state_->ShardOf(k);
  std::unique_lock lock(shard.mu);
  shard.map.insert_or_assign(std::move(k),
                             State::Item{v->since_ms, std::move(v->klass), std::move(v->reason)});
  return true;
}

size_t Suppression::Sweep(int64_t now_ms) {
  state_->sweep_requested.store(false, std::memory_order_relaxed);
  const int64_t ttl_ms = state_->ttl();
  if (ttl_ms <= 0)
    return 0;
  // The walk holds a shard's lock shared, so lookups (every RCPT, on the reactors) go on; the
  // expired entries are then removed a batch at a time under the exclusive lock, each looked
  // at again (a bounce may have renewed it meanwhile).
  constexpr size_t kBatch = 1024;
  size_t removed = 0;
  std::vector<std::string> expired;
  for (State::Shard& shard : state_->shards) {
    expired.clear();
    {
      std::shared_lock lock(shard.mu);
      for (const auto& [key, entry] : shard.map) {
        if (Expired(entry.since_ms, now_ms, ttl_ms))
          expired.push_back(key);
      }
    }
    for (size_t first = 0; first < expired.size(); first += kBatch) {
      std::unique_lock lock(shard.mu);
      for (size_t i = first; i < std::min(expired.size(), first + kBatch); ++i) {
        auto it = shard.map.find(expired[i]);
        if (it == shard.map.end() || !Expired(it->second.since_ms, now_ms, ttl_ms))
          continue;
        state_->writer(it->first, std::nullopt);
        shard.map.erase(it);
        ++removed;
      }
    }
  }
  return removed;
}

Result<size_t> Suppression::ImportCsv(std::istream& in, int64_t now_ms, std::string* error) {
  if (!state_->enabled) {
    *error = "the suppression list is off ([suppression] enabled = false)";
    return Unexpected{Errc::kDisabled};
  }
  auto csv = ReadCsv(in, now_ms, error);
  if (!csv)
    return Unexpected{csv.error()};
  size_t imported = 0;
  for (SuppressionEntry& e : csv->entries) {
    if (Expired(e.since_ms, now_ms, state_->ttl()))
      continue;
    Add(std::move(e));
    ++imported;
  }
  return imported;
}

size_t Suppression::ExportCsv(std::ostream& out, int64_t now_ms) const {
  std::vector<SuppressionEntry> live;
  if (state_->enabled) {
    for (const State::Shard& shard : state_->shards) {
      std::shared_lock lock(shard.mu);
      for (const auto& [key, item] : shard.map) {
        if (!Expired(item.since_ms, now_ms, state_->ttl()))
          live.push_back({key, item.since_ms, item.klass, item.reason});
      }
    }
  }
  std::sort(live.begin(), live.end(), [](const SuppressionEntry& a, const SuppressionEntry& b) {
    return a.address < b.address;
  });
  std::string text = FormatSuppressionCsv(live);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  return live.size();
}

// ---- The commands: the list of a spool on disk --------------------------------------------

namespace {

using internal::QuietLogger;

std::string InUseMessage(const std::string& path) {
  return "the spool at " + path +
         " is in use by a running spate; stop it first (the admin API will import live)";
}

// Whether another process holds the lock RocksDB takes on <path>/LOCK (fcntl, as RocksDB's
// PosixEnv takes it). A lock of this process is not seen: RocksDB's Open reports that one.
bool LockedByOtherProcess(const std::string& path) {
  int fd = ::open((path + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const bool locked = ::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  return locked;
}

bool IsLockError(const rocksdb::Status& s) {
  const std::string text = s.ToString();
  return text.find("lock hold") != std::string::npos ||
         text.find("lock held") != std::string::npos ||
         text.find("While lock file") != std::string::npos;
}

// The database of a command: every column family it has (RocksDB opens none for writing
// otherwise), "suppression" created when missing. Closed at destruction.
struct CommandDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* cf = nullptr;  // "suppression"; null read-only without one

  ~CommandDb() {
    if (!db)
      return;
    for (auto* h : handles)
      db->DestroyColumnFamilyHandle(h);
    db->Close().PermitUncheckedError();  // a command's close: nothing of ours is unwritten
  }
};

Result<void> OpenCommandDb(const std::string& path, bool read_only, CommandDb* out,
                           std::string* error) {
  rocksdb::DBOptions options;
  options.info_log = std::make_shared<QuietLogger>();
  options.create_if_missing = !read_only;
  options.create_missing_column_families = !read_only;
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, path, &names);
  if (!s.ok() && read_only) {
    *error = "no spool at " + path + ": " + s.ToString();
    return Unexpected{Errc::kNotFound};
  }
  if (names.empty())
    names.push_back(rocksdb::kDefaultColumnFamilyName);
  const bool has_cf = std::find(names.begin(), names.end(), kColumnFamily) != names.end();
  if (!has_cf && !read_only)
    names.push_back(kColumnFamily);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) {
    // Read-only, only what is read; for writing, all of them (RocksDB's rule).
    if (!read_only || n == kColumnFamily || n == rocksdb::kDefaultColumnFamilyName)
      descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  }
  rocksdb::DB* db = nullptr;
  s = read_only ? rocksdb::DB::OpenForReadOnly(options, path, descriptors, &out->handles, &db)
                : rocksdb::DB::Open(options, path, descriptors, &out->handles, &db);
  if (!s.ok()) {
    if (!read_only && (IsLockError(s) || LockedByOtherProcess(path))) {
      *error = InUseMessage(path);
      return Unexpected{Errc::kInUse};
    }
    *error = "cannot open spool " + path + ": " + s.ToString();
    return Unexpected{Errc::kIo};
  }
  out->db.reset(db);
  for (size_t i = 0; i < descriptors.size(); ++i) {
    if (descriptors[i].name == kColumnFamily)
      out->cf = out->handles[i];
  }
  return {};
}

// Opens the spool for writing, once sure no running spate holds it.
Result<void> OpenForWriting(const std::string& path, CommandDb* db, std::string* error) {
  if (LockedByOtherProcess(path)) {
    *error = InUseMessage(path);
    return Unexpected{Errc::kInUse};
  }
  std::error_code ec;
  std::filesystem::create_directories(path, ec);  // a new spool may be seeded before its start
  return OpenCommandDb(path, /*read_only=*/false, db, error);
}

}  // namespace

Result<size_t> ExportSpoolSuppression(const Spool::Options& options, int64_t now_ms,
                                      std::ostream& out, std::string* error) {
  CommandDb db;
  SPATE_RETURN_IF_ERROR(OpenCommandDb(options.path, /*read_only=*/true, &db, error));
  const int64_t ttl_ms = TtlMs(options.suppression_ttl);
  size_t n = 0;
  std::string text(kSuppressionCsvHeader);
  if (db.cf != nullptr) {
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db.db->NewIterator(ro, db.cf));
    // Keys sort bytewise: the output is sorted by address.
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key(it->key().data(), it->key().size());
      auto v = records::DecodeSuppression(std::string_view(it->value().data(), it->value().size()));
      if (!v || !ValidSuppressionAddress(key) || Expired(v->since_ms, now_ms, ttl_ms))
        continue;
      AppendSuppressionCsv({std::string(key), v->since_ms, v->klass, v->reason}, &text);
      ++n;
      if (text.size() >= (1 << 16)) {
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        text.clear();
      }
    }
    if (!it->status().ok()) {
      *error = "reading the suppression list of " + options.path + ": " + it->status().ToString();
      return Unexpected{Errc::kIo};
    }
  }
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.flush();
  if (!out) {
    *error = "cannot write the CSV";
    return Unexpected{Errc::kIo};
  }
  return n;
}

Result<SuppressionImport> ImportSpoolSuppression(const Spool::Options& options, std::istream& in,
                                                 int64_t now_ms, std::string* error) {
  // The whole file is parsed before the spool is opened: a bad line writes nothing.
  auto csv = ReadCsv(in, now_ms, error);
  if (!csv) {
    if (csv.error() == make_error_code(Errc::kInvalid))
      *error += " (nothing imported)";
    return Unexpected{csv.error()};
  }
  CommandDb db;
  SPATE_RETURN_IF_ERROR(OpenForWriting(options.path, &db, error));
  const int64_t ttl_ms = TtlMs(options.suppression_ttl);
  SuppressionImport result;
  rocksdb::WriteOptions wo;
  wo.sync = true;  // "imported N" is said once it is on disk
  rocksdb::WriteBatch batch;
  // In batches of bounded size (a list of millions is not one batch of gigabytes). Parsed
  // whole first, so a bad line still writes nothing; a failed write leaves what went before.
  auto write = [&] {
    rocksdb::Status s = batch.Count() == 0 ? rocksdb::Status::OK() : db.db->Write(wo, &batch);
    batch.Clear();
    if (!s.ok())
      *error = "writing the suppression list of " + options.path + ": " + s.ToString();
    return s.ok();
  };
  for (const SuppressionEntry& e : csv->entries) {
    if (Expired(e.since_ms, now_ms, ttl_ms)) {
      ++result.expired;
      continue;
    }
    batch.Put(db.cf, e.address, records::EncodeSuppression({e.since_ms, e.klass, e.reason}));
    ++result.imported;
    if (batch.Count() >= kImportBatch && !write())
      return Unexpected{Errc::kIo};
  }
  if (!write())
    return Unexpected{Errc::kIo};
  return result;
}

Result<bool> RemoveSpoolSuppression(const Spool::Options& options, std::string_view address,
                                    std::string* error) {
  CommandDb db;
  SPATE_RETURN_IF_ERROR(OpenForWriting(options.path, &db, error));
  const std::string key = NormalizeAddress(address);
  std::string value;
  rocksdb::Status s = db.db->Get(rocksdb::ReadOptions(), db.cf, key, &value);
  if (s.IsNotFound())
    return false;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (s.ok())
    s = db.db->Delete(wo, db.cf, key);
  if (!s.ok()) {
    *error = "removing from the suppression list of " + options.path + ": " + s.ToString();
    return Unexpected{Errc::kIo};
  }
  return true;
}

}  // namespace spate::queue
