#include "queue/body_log.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "core/log.h"
#include "queue/errc.h"

namespace spate::queue {

namespace {

constexpr uint32_t kPolynomial = 0x82f63b78;  // CRC32C, reflected
constexpr char kMagic[4] = {'S', 'P', 'B', '1'};
constexpr const char* kSuffix = ".body";
constexpr const char* kSpareSuffix = ".spare";
// Released segments kept to be written again (see body_log.h, "Space").
constexpr size_t kMaxSpares = 2;

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) != 0 ? (c >> 1) ^ kPolynomial : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kTable = MakeTable();

uint32_t Crc32cTable(const unsigned char* p, size_t n, uint32_t crc) {
  for (size_t i = 0; i < n; ++i)
    crc = kTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
// Eight bytes per instruction: about 8 GB/s on one stream, several times the table's speed
// (and Debian's librocksdb, built for baseline x86-64, has only the table's).
__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(const unsigned char* p, size_t n,
                                                       uint32_t crc) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p)
    c32 = _mm_crc32_u8(c32, *p);
  return c32;
}
const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
#endif

void PutLe32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<char>(v >> (8 * i));
}
void PutLe64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<char>(v >> (8 * i));
}

std::error_code FromErrno(int err) {
  return err == ENOSPC || err == EDQUOT ? make_error_code(Errc::kNoSpace)
                                        : make_error_code(Errc::kIo);
}

// "00000012.body" -> 12 (with kSuffix); 0 for anything else.
uint32_t ParseName(std::string_view name, std::string_view suffix = kSuffix) {
  if (name.size() != 8 + suffix.size() || !name.ends_with(suffix))
    return 0;
  uint32_t n = 0;
  for (char c : name.substr(0, 8)) {
    if (c < '0' || c > '9')
      return 0;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  return n;
}

}  // namespace

uint32_t Crc32c(std::string_view data, uint32_t crc) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  crc = ~crc;
#if defined(__x86_64__)
  if (kHaveSse42)
    return ~Crc32cSse42(p, data.size(), crc);
#endif
  return ~Crc32cTable(p, data.size(), crc);
}

struct BodyLog::Segment {
  Segment(uint32_t n, int f, uint64_t s) : number(n), fd(f), size(s) {}
  ~Segment() { ::close(fd); }
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const uint32_t number;
  const int fd;
  uint64_t size;      // commit thread
  uint64_t live = 0;  // commit thread: bodies retained
  // Commit thread, for compaction: bodies written to it (a recovered one: those retained at
  // the end of Recover), since when it is no longer written, and whether it was compacted.
  uint64_t records = 0;
  uint64_t retained_bytes = 0;  // of the records retained before Recover ended (their sizes)
  std::chrono::steady_clock::time_point full_since = std::chrono::steady_clock::now();
  bool compacted = false;
};

BodyLog::BodyLog(std::string dir, int dir_fd, uint64_t segment_bytes)
    : dir_(std::move(dir)), dir_fd_(dir_fd), segment_bytes_(segment_bytes) {}

BodyLog::~BodyLog() {
  std::lock_guard lock(mu_);
  current_.reset();
  segments_.clear();
  ::close(dir_fd_);
}

std::string BodyLog::PathOf(uint32_t number, bool spare) const {
  char name[32];
  std::snprintf(name, sizeof name, "/%08u%s", number, spare ? kSpareSuffix : kSuffix);
  return dir_ + name;
}

Result<std::unique_ptr<BodyLog>> BodyLog::Open(const std::string& dir, uint64_t segment_bytes,
                                               std::string* error) {
  if (::mkdir(dir.c_str(), 0700) == 0) {
    // Its entry in the spool's directory outlives a power loss before the first segment's.
    const std::string parent = dir.substr(0, dir.find_last_of('/'));
    if (int pfd = ::open(parent.empty() ? "/" : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        pfd >= 0) {
      ::fsync(pfd);
      ::close(pfd);
    }
  } else if (errno != EEXIST) {
    *error = "cannot create " + dir + ": " + std::strerror(errno);
    return Unexpected{FromErrno(errno)};
  }
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    *error = "cannot open " + dir + ": " + std::strerror(errno);
    return Unexpected{FromErrno(errno)};
  }
  std::unique_ptr<BodyLog> log(new BodyLog(dir, dir_fd, std::max<uint64_t>(segment_bytes, 1)));
  const int list_fd = ::dup(dir_fd);
  DIR* d = list_fd < 0 ? nullptr : ::fdopendir(list_fd);
  if (d == nullptr) {
    const int err = errno;
    if (list_fd >= 0)
      ::close(list_fd);
    *error = "cannot list " + dir + ": " + std::strerror(err);
    return Unexpected{FromErrno(err)};
  }
  while (const dirent* e = ::readdir(d)) {
    if (const uint32_t spare = ParseName(e->d_name, kSpareSuffix); spare != 0) {
      // Kept by the run before (or the one before a crash): still spare, unless too many.
      if (log->spares_.size() < kMaxSpares) {
        log->spares_.push_back(spare);
      } else {
        ::unlinkat(dir_fd, e->d_name, 0);
      }
      log->next_number_ = std::max(log->next_number_, spare + 1);
      continue;
    }
    const uint32_t n = ParseName(e->d_name);
    if (n == 0)
      continue;
    const int fd = ::openat(dir_fd, e->d_name, O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      *error = "cannot open " + log->PathOf(n) + ": " + std::strerror(errno);
      if (fd >= 0)
        ::close(fd);
      ::closedir(d);
      return Unexpected{FromErrno(errno)};
    }
    log->segments_.emplace(n, std::make_shared<Segment>(n, fd, static_cast<uint64_t>(st.st_size)));
    log->next_number_ = std::max(log->next_number_, n + 1);
  }
  ::closedir(d);
  return log;
}

std::error_code BodyLog::OpenNext(bool sync) {
  const uint32_t n = next_number_++;
  const std::string path = PathOf(n);
  int fd = -1;
  while (fd < 0 && !spares_.empty()) {
    // A spare, renamed: its blocks are allocated and inside the file's size, so the batches'
    // fdatasyncs write data only, with no inode update (a file growing has one: a journal
    // commit on a journaled ext4, a synchronous write of the inode's block without a journal).
    // What it held stays past the write offset, where no ref points (body_log.h).
    const uint32_t spare = spares_.back();
    spares_.pop_back();
    if (::rename(PathOf(spare, true).c_str(), path.c_str()) == 0) {
      fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0)
        ::unlink(path.c_str());
    } else {
      ::unlink(PathOf(spare, true).c_str());
    }
  }
  if (fd < 0)
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    SPATE_LOG(kError, "spool: cannot create %s: %s", path.c_str(), std::strerror(err));
    return FromErrno(err);
  }
  auto segment = std::make_shared<Segment>(n, fd, 0);
  // The file's entry, so that its bodies, synced later, are found after a power loss.
  if (sync && ::fsync(dir_fd_) != 0) {
    const int err = errno;
    SPATE_LOG(kError, "spool: cannot sync %s: %s", dir_.c_str(), std::strerror(err));
    ::unlink(path.c_str());
    return FromErrno(err);
  }
  {
    std::lock_guard lock(mu_);
    segments_.emplace(n, segment);
  }
  current_ = std::move(segment);
  return {};
}

std::error_code BodyLog::Append(std::span<Item> items, bool sync) {
  if (items.empty())
    return {};
  if (!current_) {
    if (std::error_code ec = OpenNext(sync))
      return ec;
  }
  Segment& seg = *current_;
  std::vector<std::array<char, kHeaderSize>> headers(items.size());
  std::vector<iovec> iov;
  iov.reserve(2 * items.size());
  uint64_t at = seg.size;
  for (size_t i = 0; i < items.size(); ++i) {
    Item& it = items[i];
    const uint32_t crc = Crc32c(it.body);
    char* h = headers[i].data();
    std::memcpy(h, kMagic, 4);
    PutLe32(h + 4, crc);
    PutLe64(h + 8, it.body.size());
    PutLe64(h + 16, it.id);
    iov.push_back({h, kHeaderSize});
    if (!it.body.empty())
      iov.push_back({const_cast<char*>(it.body.data()), it.body.size()});
    at += kHeaderSize;
    *it.ref = BodyRef{seg.number, at, it.body.size(), crc};
    at += it.body.size();
  }
  // pwritev takes at most IOV_MAX pieces and may write less than asked: continued where it
  // stopped.
  uint64_t offset = seg.size;
  size_t first = 0;
  int err = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const ssize_t n = ::pwritev(seg.fd, &iov[first], count, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      err = errno;
      break;
    }
    if (n == 0) {
      err = EIO;
      break;
    }
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (left > 0 && first < iov.size()) {
      if (left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      } else {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
        left = 0;
      }
    }
  }
  if (err == 0 && sync && ::fdatasync(seg.fd) != 0)
    err = errno;
  if (err != 0) {
    // What this batch wrote is torn or unsynced: no ref will name it, and nothing more is
    // written after it. Its earlier bodies stay readable; the next batch starts a segment.
    SPATE_LOG(kError, "spool: writing %s: %s", PathOf(seg.number).c_str(), std::strerror(err));
    const uint32_t number = seg.number;
    const bool unused = seg.live == 0;
    current_.reset();
    if (unused)
      Drop(number, /*reuse=*/false);  // not a file a write just failed in
    return FromErrno(err);
  }
  seg.size = offset;
  seg.records += items.size();
  if (seg.size >= segment_bytes_) {
    seg.full_since = std::chrono::steady_clock::now();
    current_.reset();  // full: dropped once its last body is released
  }
  return {};
}

Result<std::string> BodyLog::Read(const BodyRef& ref) const {
  std::shared_ptr<Segment> seg;
  {
    std::lock_guard lock(mu_);
    auto it = segments_.find(ref.segment);
    if (it == segments_.end())
      return Unexpected{Errc::kNotFound};
    seg = it->second;
  }
  std::string body;
  body.resize(ref.length);
  uint64_t done = 0;
  while (done < ref.length) {
    const ssize_t n = ::pread(seg->fd, body.data() + done, ref.length - done,
                              static_cast<off_t>(ref.offset + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      SPATE_LOG(kError, "spool: reading %s: %s", PathOf(ref.segment).c_str(), std::strerror(errno));
      return Unexpected{Errc::kIo};
    }
    if (n == 0) {
      SPATE_LOG(kError, "spool: %s ends inside a body (at %llu of %llu bytes)",
                PathOf(ref.segment).c_str(), static_cast<unsigned long long>(ref.offset + done),
                static_cast<unsigned long long>(ref.offset + ref.length));
      return Unexpected{Errc::kCorruption};
    }
    done += static_cast<uint64_t>(n);
  }
  if (Crc32c(body) != ref.crc) {
    SPATE_LOG(kError, "spool: a body in %s at %llu fails its CRC32C", PathOf(ref.segment).c_str(),
              static_cast<unsigned long long>(ref.offset));
    return Unexpected{Errc::kCorruption};
  }
  return body;
}

bool BodyLog::Holds(const BodyRef& ref) const {
  auto it = segments_.find(ref.segment);
  return it != segments_.end() && ref.offset >= kHeaderSize && ref.offset <= it->second->size &&
         ref.length <= it->second->size - ref.offset;
}

void BodyLog::Retain(uint32_t segment, uint64_t length) {
  if (auto it = segments_.find(segment); it != segments_.end()) {
    ++it->second->live;
    it->second->retained_bytes += kHeaderSize + length;
  }
}

void BodyLog::Release(uint32_t segment) {
  auto it = segments_.find(segment);
  if (it == segments_.end() || it->second->live == 0)
    return;
  if (--it->second->live == 0 && it->second != current_)
    Drop(segment);
}

void BodyLog::DropIfUnused(uint32_t segment) {
  auto it = segments_.find(segment);
  if (it != segments_.end() && it->second->live == 0 && it->second != current_)
    Drop(segment);
}

size_t BodyLog::DropUnreferenced() {
  std::vector<uint32_t> unused;
  for (const auto& [n, seg] : segments_) {
    if (seg->live == 0 && seg != current_)
      unused.push_back(n);
    // A segment from before a restart: how many bodies it held is estimated from its size and
    // those retained now (their records' mean size), so that it can be found sparse.
    if (seg->records < seg->live)
      seg->records = seg->live;
    if (seg->live > 0 && seg->retained_bytes > 0)
      seg->records = std::max(seg->records, seg->size * seg->live / seg->retained_bytes);
  }
  for (uint32_t n : unused)
    Drop(n);
  return unused.size();
}

void BodyLog::Drop(uint32_t number, bool reuse) {
  {
    // Out of the map first: no reader finds it from now on. One that holds it already reads
    // on through its descriptor, so such a file is unlinked (its bytes stay for that reader),
    // never written again as a spare.
    std::lock_guard lock(mu_);
    auto it = segments_.find(number);
    if (it != segments_.end()) {
      reuse = reuse && it->second.use_count() == 1;
      segments_.erase(it);  // closed once the last reader lets go of it
    }
  }
  // Neither the removal nor the rename need be synced: a segment back after a crash is named
  // by no ref, and dropped by the next Recover().
  if (reuse && spares_.size() < kMaxSpares &&
      ::rename(PathOf(number).c_str(), PathOf(number, true).c_str()) == 0) {
    spares_.push_back(number);
  } else if (::unlink(PathOf(number).c_str()) != 0 && errno != ENOENT) {
    SPATE_LOG(kWarn, "spool: cannot remove %s: %s", PathOf(number).c_str(), std::strerror(errno));
  }
}

uint32_t BodyLog::CompactionCandidate(std::chrono::steady_clock::duration after) const {
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [n, seg] : segments_) {  // oldest first
    if (seg != current_ && !seg->compacted && seg->live > 0 && seg->live * 2 <= seg->records &&
        now - seg->full_since >= after)
      return n;
  }
  return 0;
}

void BodyLog::MarkCompacted(uint32_t segment) {
  if (auto it = segments_.find(segment); it != segments_.end())
    it->second->compacted = true;
}

size_t BodyLog::DropSpares() {
  const size_t n = spares_.size();
  for (uint32_t spare : spares_)
    ::unlink(PathOf(spare, true).c_str());
  spares_.clear();
  return n;
}

size_t BodyLog::spares() const {
  return spares_.size();
}

size_t BodyLog::segments() const {
  return segments_.size();
}

uint64_t BodyLog::bytes() const {
  uint64_t total = 0;
  for (const auto& [n, seg] : segments_)
    total += seg->size;
  return total;
}

}  // namespace spate::queue
