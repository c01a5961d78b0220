#include "core/journal.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "core/log.h"

namespace spate {
namespace {

using WallClock = std::chrono::system_clock;

// Pending bytes that wake the writer before its interval: memory stays small at high rates
// (100,000 lines/s of 300 bytes is about 30 wake-ups a second).
constexpr size_t kWakeBytes = 1 << 20;
constexpr int kZstdLevel = 3;

// "YYYYMMDDTHHMMSS" in UTC.
std::string UtcStamp(WallClock::time_point t) {
  const time_t secs = WallClock::to_time_t(t);
  tm u{};
  gmtime_r(&secs, &u);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02d", u.tm_year + 1900, u.tm_mon + 1,
                u.tm_mday, u.tm_hour, u.tm_min, u.tm_sec);
  return buf;
}

WallClock::time_point FromStatx(const statx_timestamp& ts) {
  return WallClock::time_point(std::chrono::duration_cast<WallClock::duration>(
      std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 || errno != ENOENT;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A rotated file of the live file `base`: "BASE.YYYYMMDDTHHMMSS[.N][.zst]". Its place in time is
// (stamp, n): the stamp has a fixed width, so both compare as they should.
struct Rotated {
  std::string name;
  std::string stamp;
  uint64_t n = 0;
  bool zst = false;
  bool operator<(const Rotated& o) const {
    return std::tie(stamp, n, zst, name) < std::tie(o.stamp, o.n, o.zst, o.name);
  }
};

bool ParseRotated(std::string_view name, std::string_view base, Rotated* out) {
  if (name.size() <= base.size() + 1 || name.substr(0, base.size()) != base ||
      name[base.size()] != '.')
    return false;
  std::string_view rest = name.substr(base.size() + 1);
  Rotated r;
  r.name = std::string(name);
  if (rest.size() >= 4 && rest.substr(rest.size() - 4) == ".zst") {
    r.zst = true;
    rest.remove_suffix(4);
  }
  if (rest.size() < 15 || !AllDigits(rest.substr(0, 8)) || rest[8] != 'T' ||
      !AllDigits(rest.substr(9, 6)))
    return false;
  r.stamp = std::string(rest.substr(0, 15));
  rest.remove_prefix(15);
  if (!rest.empty()) {
    if (rest[0] != '.' || !AllDigits(rest.substr(1)) || rest.size() > 10)
      return false;
    std::from_chars(rest.data() + 1, rest.data() + rest.size(), r.n);
  }
  *out = std::move(r);
  return true;
}

bool WriteAllFd(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t w = ::write(fd, data, size);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    data += w;
    size -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

struct Journal::State {
  explicit State(const Options& options) : o(options) {}

  const Options o;
  std::string dir;   // the live file's directory
  std::string base;  // its name in `dir`
  size_t wake_bytes = kWakeBytes;

  // Shared with the callers, under `mu`.
  std::mutex mu;
  std::condition_variable writer_cv;  // to the writer: work, a Flush(), a Reopen() or the stop
  std::condition_variable done_cv;    // to Flush(): a round is done
  std::string pending;                // whole lines, each with its newline
  uint64_t unwritten = 0;             // bytes appended and not yet written (pending + writer's)
  uint64_t flush_asked = 0;           // Flush() calls so far
  uint64_t flush_served = 0;          // of them, those whose round is done
  bool reopen = false;
  bool stopping = false;

  // The writer's own (and Open()'s, before the threads start).
  int fd = -1;
  bool regular = false;  // rotation is for regular files only
  uint64_t file_size = 0;
  WallClock::time_point born;  // the live file's birth (its age is counted from it)
  std::string last_stamp;      // the last rotated name: stamp and suffix
  uint64_t last_n = 0;
  bool write_failing = false;  // said once in the log until a write succeeds again
  bool open_failing = false;

  // The helper thread's queue: rotated files to compress, then prune.
  std::mutex fin_mu;
  std::condition_variable fin_cv;
  std::deque<std::string> fin_queue;
  bool fin_prune = false;
  bool fin_stop = false;

  std::atomic<uint64_t> lines{0}, bytes{0}, dropped{0}, rotations{0}, write_errors{0};
  std::thread writer, finisher;

  int OpenLive(std::string* error);
  bool Rotate();
  void MaybeRotateByAge();
  void CheckPath(bool forced);
  size_t WriteLines(const char* data, size_t len);
  size_t WriteOut(const std::string& out);
  void RunWriter();
  void Finish(std::string name);
  void RunFinisher();
  void Compress(const std::string& src);
  std::vector<Rotated> ListRotated();
  void Prune();
};

// Opens (creating) the live file; the open file is replaced only on success. Returns 0 or errno.
int Journal::State::OpenLive(std::string* error) {
  const int nfd = ::open(o.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  struct statx stx {};
  if (nfd < 0 ||
      ::statx(nfd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE | STATX_BTIME, &stx) != 0) {
    const int e = errno;
    if (nfd >= 0)
      ::close(nfd);
    if (error != nullptr)
      *error = "records: cannot open " + o.path + ": " + log::ErrorText(e);
    return e;
  }
  if (fd >= 0)
    ::close(fd);
  fd = nfd;
  regular = S_ISREG(stx.stx_mode);
  file_size = stx.stx_size;
  // No birth time on this file system: the last change is the best guess of the age there is.
  born = (stx.stx_mask & STATX_BTIME) ? FromStatx(stx.stx_btime) : FromStatx(stx.stx_mtime);
  return 0;
}

// Renames the live file away and opens a new one. False (logged) when it could not.
bool Journal::State::Rotate() {
  if (!regular)
    return false;
  ::fsync(fd);  // a rotated file is complete on disk before anything may compress or remove it
  const std::string stamp = UtcStamp(WallClock::now());
  uint64_t n = stamp == last_stamp ? last_n + 1 : 0;
  std::string name;
  for (;; ++n) {
    name = o.path + "." + stamp + (n == 0 ? "" : "." + std::to_string(n));
    if (!Exists(name) && !Exists(name + ".zst"))
      break;
  }
  if (::rename(o.path.c_str(), name.c_str()) != 0) {
    SPATE_LOG(kError, "records: cannot rotate %s to %s: %s", o.path.c_str(), name.c_str(),
              log::ErrorText(errno));
    return false;
  }
  last_stamp = stamp;
  last_n = n;
  rotations.fetch_add(1, std::memory_order_relaxed);
  std::string error;
  if (OpenLive(&error) != 0) {
    // Still writing to the renamed file; CheckPath() tries the path again each round.
    SPATE_LOG(kError, "%s", error.c_str());
    open_failing = true;
  }
  Finish(std::move(name));
  return true;
}

void Journal::State::MaybeRotateByAge() {
  if (!regular || o.max_age.count() <= 0)
    return;
  const auto now = WallClock::now();
  if (file_size == 0) {
    born = now;  // an empty file is never rotated: its age starts with its first line
    return;
  }
  if (now - born >= o.max_age)
    Rotate();
}

// Reopens the path when it no longer names the open file (renamed or removed from outside).
void Journal::State::CheckPath(bool forced) {
  if (!forced) {
    struct stat at_path, open_file;
    if (::stat(o.path.c_str(), &at_path) == 0 && ::fstat(fd, &open_file) == 0 &&
        at_path.st_dev == open_file.st_dev && at_path.st_ino == open_file.st_ino)
      return;
  }
  std::string error;
  if (OpenLive(&error) != 0) {
    if (!open_failing)
      SPATE_LOG(kError, "%s (writing on to the file already open)", error.c_str());
    open_failing = true;
    return;
  }
  if (open_failing)
    SPATE_LOG(kInfo, "records: %s open again", o.path.c_str());
  open_failing = false;
}

// Writes whole lines; returns how many bytes of them are in the file. A write that fails
// part-way is cut back to the last whole line, so the file never ends in a torn line (unless the
// cut fails too: then the rest of that line follows on the next round).
size_t Journal::State::WriteLines(const char* data, size_t len) {
  size_t done = 0;
  while (done < len) {
    const ssize_t w = ::write(fd, data + done, len - done);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    const int e = w < 0 ? errno : EIO;
    const char* nl = done == 0 ? nullptr : static_cast<const char*>(memrchr(data, '\n', done));
    const size_t whole = nl == nullptr ? 0 : static_cast<size_t>(nl - data) + 1;
    if (done > whole) {
      struct stat st;
      if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= done - whole &&
          ::ftruncate(fd, st.st_size - static_cast<off_t>(done - whole)) == 0)
        done = whole;
    }
    write_errors.fetch_add(1, std::memory_order_relaxed);
    if (!write_failing)
      SPATE_LOG(kError,
                "records: cannot write %s: %s (retrying each round; lines are dropped once "
                "the buffer is full)",
                o.path.c_str(), log::ErrorText(e));
    write_failing = true;
    break;
  }
  if (done == len && write_failing) {
    SPATE_LOG(kInfo, "records: writing %s again", o.path.c_str());
    write_failing = false;
  }
  file_size += done;
  bytes.fetch_add(done, std::memory_order_relaxed);
  lines.fetch_add(static_cast<uint64_t>(std::count(data, data + done, '\n')),
                  std::memory_order_relaxed);
  return done;
}

// Writes `out` (whole lines), rotating by size on the way; returns the bytes written.
size_t Journal::State::WriteOut(const std::string& out) {
  size_t off = 0;
  bool may_rotate = regular && o.max_size > 0;
  while (off < out.size()) {
    size_t end = out.size();
    if (may_rotate && file_size + (end - off) > o.max_size) {
      // The longest run of whole lines that still fits.
      const size_t room = file_size < o.max_size ? o.max_size - file_size : 0;
      const void* nl = room == 0 ? nullptr : memrchr(out.data() + off, '\n', room);
      if (nl != nullptr) {
        end = static_cast<size_t>(static_cast<const char*>(nl) - out.data()) + 1;
      } else if (file_size > 0) {
        may_rotate = Rotate();  // a failed rotation: on in the same file for this round
        continue;
      } else {  // an empty file and a line longer than max_size: that line alone
        end =
            static_cast<size_t>(
                static_cast<const char*>(memchr(out.data() + off, '\n', end - off)) - out.data()) +
            1;
      }
    }
    const size_t w = WriteLines(out.data() + off, end - off);
    off += w;
    if (off != end)
      break;  // failed: the rest next round
  }
  return off;
}

void Journal::State::RunWriter() {
  std::string out;  // whole lines being written; what a failed write left stays for the next round
  for (;;) {
    uint64_t serving;
    bool stop, forced_reopen;
    {
      std::unique_lock lock(mu);
      auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::max(o.flush_interval, std::chrono::milliseconds(1)));
      if (regular && o.max_age.count() > 0 && file_size > 0) {
        const auto to_age = std::chrono::duration_cast<std::chrono::nanoseconds>(
            born + std::chrono::duration_cast<WallClock::duration>(o.max_age) - WallClock::now());
        wait = std::clamp(to_age, std::chrono::nanoseconds(0), wait);
      }
      writer_cv.wait_for(lock, wait, [&] {
        return stopping || reopen || pending.size() >= wake_bytes || flush_asked > flush_served;
      });
      if (out.empty()) {
        out.swap(pending);
      } else {
        out += pending;
        pending.clear();
      }
      serving = flush_asked;
      stop = stopping;
      forced_reopen = std::exchange(reopen, false);
    }
    if (forced_reopen || !out.empty())
      CheckPath(forced_reopen);
    MaybeRotateByAge();
    const size_t written = out.empty() ? 0 : WriteOut(out);
    const bool stuck = written < out.size();
    if (!stuck) {
      out.clear();
      if (out.capacity() > 4 * kWakeBytes)
        std::string().swap(out);  // a burst leaves no large buffer behind
    } else {
      out.erase(0, written);
    }
    {
      std::lock_guard lock(mu);
      unwritten -= written;
      flush_served = serving;
    }
    done_cv.notify_all();
    if (stop && (!stuck || written == 0)) {
      if (stuck)
        SPATE_LOG(kError, "records: %zu bytes could not be written to %s at the stop", out.size(),
                  o.path.c_str());
      return;
    }
  }
}

void Journal::State::Finish(std::string name) {
  {
    std::lock_guard lock(fin_mu);
    fin_queue.push_back(std::move(name));
  }
  fin_cv.notify_one();
}

void Journal::State::RunFinisher() {
  for (;;) {
    std::string name;
    {
      std::unique_lock lock(fin_mu);
      fin_cv.wait(lock, [&] { return fin_stop || fin_prune || !fin_queue.empty(); });
      if (fin_queue.empty() && !fin_prune)
        return;  // stopping, and everything done
      if (!fin_queue.empty()) {
        name = std::move(fin_queue.front());
        fin_queue.pop_front();
      }
      fin_prune = false;
    }
    if (!name.empty() && o.compress)
      Compress(name);
    Prune();
  }
}

// src -> src.zst (through src.zst.tmp), then src unlinked. On failure src stays as it is.
void Journal::State::Compress(const std::string& src) {
  const std::string dst = src + ".zst";
  const std::string tmp = dst + ".tmp";
  const int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    if (errno != ENOENT)  // gone: pruned already
      SPATE_LOG(kWarn, "records: cannot read %s: %s", src.c_str(), log::ErrorText(errno));
    return;
  }
  const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (out < 0) {
    SPATE_LOG(kWarn, "records: cannot create %s: %s", tmp.c_str(), log::ErrorText(errno));
    ::close(in);
    return;
  }
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, kZstdLevel);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  struct stat st;
  if (::fstat(in, &st) == 0)
    ZSTD_CCtx_setPledgedSrcSize(cctx, static_cast<unsigned long long>(st.st_size));
  std::vector<char> ibuf(ZSTD_CStreamInSize()), obuf(ZSTD_CStreamOutSize());
  std::string what;  // what failed
  for (bool last = false; !last && what.empty();) {
    const ssize_t n = ::read(in, ibuf.data(), ibuf.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      what = std::string("read: ") + log::ErrorText(errno);
      break;
    }
    last = n == 0;
    const ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
    ZSTD_inBuffer ib{ibuf.data(), static_cast<size_t>(n), 0};
    for (bool drained = false; !drained;) {
      ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
      const size_t left = ZSTD_compressStream2(cctx, &ob, &ib, mode);
      if (ZSTD_isError(left)) {
        what = std::string("zstd: ") + ZSTD_getErrorName(left);
        break;
      }
      if (!WriteAllFd(out, obuf.data(), ob.pos)) {
        what = std::string("write: ") + log::ErrorText(errno);
        break;
      }
      drained = last ? left == 0 : ib.pos == ib.size;
    }
  }
  ZSTD_freeCCtx(cctx);
  if (what.empty() && ::fsync(out) != 0)
    what = std::string("fsync: ") + log::ErrorText(errno);
  ::close(out);
  ::close(in);
  if (what.empty() && ::rename(tmp.c_str(), dst.c_str()) != 0)
    what = std::string("rename: ") + log::ErrorText(errno);
  if (!what.empty()) {
    SPATE_LOG(kWarn, "records: cannot compress %s (%s): kept uncompressed", src.c_str(),
              what.c_str());
    ::unlink(tmp.c_str());
    return;
  }
  ::unlink(src.c_str());
}

std::vector<Rotated> Journal::State::ListRotated() {
  std::vector<Rotated> found;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr)
    return found;
  while (const dirent* e = ::readdir(d)) {
    Rotated r;
    if (ParseRotated(e->d_name, base, &r))
      found.push_back(std::move(r));
  }
  ::closedir(d);
  std::sort(found.begin(), found.end());
  return found;
}

// Removes all but the `keep` newest rotated files.
void Journal::State::Prune() {
  const std::vector<Rotated> found = ListRotated();
  for (size_t i = 0; i + o.keep < found.size(); ++i) {
    const std::string p = dir + "/" + found[i].name;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT)
      SPATE_LOG(kWarn, "records: cannot remove %s: %s", p.c_str(), log::ErrorText(errno));
  }
}

Result<std::unique_ptr<Journal>> Journal::Open(const Options& options, std::string* error) {
  std::string scratch;
  std::string& err = error != nullptr ? *error : scratch;
  if (options.path.empty()) {
    err = "records path is empty";
    return Errno(EINVAL);
  }
  auto s = std::make_unique<State>(options);
  const size_t slash = options.path.rfind('/');
  s->dir = slash == std::string::npos ? "." : slash == 0 ? "/" : options.path.substr(0, slash);
  s->base = options.path.substr(slash == std::string::npos ? 0 : slash + 1);
  if (s->base.empty()) {
    err = "records path " + options.path + " names a directory, not a file";
    return Errno(EISDIR);
  }
  if (slash != std::string::npos) {
    std::error_code ec;
    std::filesystem::create_directories(s->dir, ec);
    if (ec) {
      err = "records: cannot create directory " + s->dir + ": " + log::ErrorText(ec.value());
      return Unexpected{ec};
    }
  }
  if (const int e = s->OpenLive(&err); e != 0)
    return Errno(e);
  s->wake_bytes =
      static_cast<size_t>(std::clamp<uint64_t>(options.max_buffered / 2, 1, kWakeBytes));
  // A live file left from before that is already too old goes first.
  if (s->regular && options.max_age.count() > 0 && s->file_size > 0 &&
      WallClock::now() - s->born >= options.max_age)
    s->Rotate();
  // What a crash left: half-written compressed files, rotated files not yet compressed.
  for (const Rotated& r : s->ListRotated()) {
    if (options.compress && !r.zst)
      s->fin_queue.push_back(s->dir + "/" + r.name);
  }
  if (DIR* d = ::opendir(s->dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      std::string_view name = e->d_name;
      Rotated r;
      if (name.size() > 4 && name.substr(name.size() - 4) == ".tmp" &&
          ParseRotated(name.substr(0, name.size() - 4), s->base, &r) && r.zst)
        ::unlink((s->dir + "/" + std::string(name)).c_str());
    }
    ::closedir(d);
  }
  s->fin_prune = true;
  State* st = s.get();
  st->writer = std::thread([st] { st->RunWriter(); });
  st->finisher = std::thread([st] { st->RunFinisher(); });
  return std::unique_ptr<Journal>(new Journal(std::move(s)));
}

Journal::Journal(std::unique_ptr<State> state) : s_(std::move(state)) {}

Journal::~Journal() {
  {
    std::lock_guard lock(s_->mu);
    s_->stopping = true;
  }
  s_->writer_cv.notify_one();
  s_->writer.join();
  ::fsync(s_->fd);
  ::close(s_->fd);
  {
    std::lock_guard lock(s_->fin_mu);
    s_->fin_stop = true;
  }
  s_->fin_cv.notify_one();
  s_->finisher.join();
}

void Journal::Append(std::string&& line) {
  for (size_t at = line.find('\n'); at != std::string::npos; at = line.find('\n', at + 1))
    line[at] = ' ';
  const size_t size = line.size() + 1;
  bool wake;
  {
    std::lock_guard lock(s_->mu);
    if (s_->unwritten + size > s_->o.max_buffered) {
      s_->dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const bool below = s_->pending.size() < s_->wake_bytes;
    s_->pending += line;
    s_->pending.push_back('\n');
    s_->unwritten += size;
    wake = below && s_->pending.size() >= s_->wake_bytes;
  }
  if (wake)
    s_->writer_cv.notify_one();
}

void Journal::Flush() {
  std::unique_lock lock(s_->mu);
  if (s_->unwritten == 0)
    return;
  const uint64_t ticket = ++s_->flush_asked;
  s_->writer_cv.notify_one();
  s_->done_cv.wait(lock, [&] { return s_->flush_served >= ticket; });
}

void Journal::Reopen() {
  {
    std::lock_guard lock(s_->mu);
    s_->reopen = true;
  }
  s_->writer_cv.notify_one();
}

Journal::Stats Journal::stats() const {
  return Stats{s_->lines.load(std::memory_order_relaxed), s_->bytes.load(std::memory_order_relaxed),
               s_->dropped.load(std::memory_order_relaxed),
               s_->rotations.load(std::memory_order_relaxed),
               s_->write_errors.load(std::memory_order_relaxed)};
}

}  // namespace spate
