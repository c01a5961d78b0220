// tests/faultinject/faultfs.c
//
// faultfs: an LD_PRELOAD shim that makes file I/O under one directory fail, for the fault
// injection tests (tests/integration/test_faultfs.py). It interposes the libc calls RocksDB
// makes on its files and, while faults are on, fails those on a file under FAULTFS_DIR with
// FAULTFS_ERRNO instead of making them (the call never reaches the kernel). Everything else
// (other files, sockets, io_uring) passes through untouched.
//
// Environment (read once, at load):
//   FAULTFS_DIR      the directory prefix whose files fail (absolute). Unset: the shim is inert.
//   FAULTFS_OPS      comma-separated calls to fail: write (write, writev), pwrite (pwrite,
//                    pwritev), fsync, fdatasync, sync_file_range, rename, ftruncate, fallocate,
//                    open (an open that creates or writes), or "all". Unset: none.
//   FAULTFS_ERRNO    EIO (default), ENOSPC, EDQUOT, EROFS, or a number.
//   FAULTFS_CONTROL  a path: faults are on only while it exists (checked at every call), so a
//                    test turns them on and off under load. Unset: always on.
//   FAULTFS_AFTER    let this many matching calls through (counted while on), fail the rest.
//   FAULTFS_PROB     fail a matching call with this probability (0..1, default 1), drawn from a
//   FAULTFS_SEED     xorshift generator seeded with this (default 1): the same run, the same
//                    draws.
//   FAULTFS_SHORT    1: the first failing write or pwrite (of more than one byte) on a
//                    descriptor writes half of it and returns that (a short write, as a disk
//                    filling up does); the later ones fail outright. The file then ends in a
//                    torn record.
//   FAULTFS_LOG      append one line per injected fault: "faultfs: <call> <errno> <path>"
//                    ("short" for a short write, "stop" for FAULTFS_STOP_*).
//
// Besides failing calls, the shim can freeze the process right after one succeeded, so that a
// test can kill it at that very point (say, after the spool's write-ahead log is synced and
// before anyone is told):
//   FAULTFS_STOP_OPS      calls after which to stop (same names as FAULTFS_OPS), on files
//   FAULTFS_STOP_SUFFIX   under FAULTFS_DIR whose path ends so (optional, e.g. ".log").
//   FAULTFS_STOP_CONTROL  a path: while it exists, the next such call that succeeds removes it
//                         and stops the whole process with SIGSTOP (one shot; the test sees
//                         state T in /proc/<pid>/stat, then kills it). Logged as "stop".
//
// The path of a descriptor is read from /proc/self/fd at every call: slow, and fine for tests.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
  kWrite = 1 << 0,
  kPwrite = 1 << 1,
  kFsync = 1 << 2,
  kFdatasync = 1 << 3,
  kSyncFileRange = 1 << 4,
  kRename = 1 << 5,
  kFtruncate = 1 << 6,
  kFallocate = 1 << 7,
  kOpen = 1 << 8,
};

static const struct {
  const char* name;
  int bit;
} kOps[] = {
    {"write", kWrite},
    {"pwrite", kPwrite},
    {"fsync", kFsync},
    {"fdatasync", kFdatasync},
    {"sync_file_range", kSyncFileRange},
    {"rename", kRename},
    {"ftruncate", kFtruncate},
    {"fallocate", kFallocate},
    {"open", kOpen},
};

static const struct {
  const char* name;
  int value;
} kErrnos[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}};

static char g_dir[4096];
static size_t g_dir_len;
static int g_ops;
static int g_errno = EIO;
static char g_control[4096];
static long g_after;
static double g_prob = 1;
static uint64_t g_rng = 1;
static int g_short;
static int g_log_fd = -1;
static long g_matched;  // matching calls while on (FAULTFS_AFTER counts these)
static int g_stop_ops;
static char g_stop_suffix[256];
static char g_stop_control[4096];

enum { kMaxFds = 65536 };
static unsigned char g_shorted[kMaxFds];  // this descriptor had its short write

static ssize_t (*real_write)(int, const void*, size_t);
static ssize_t (*real_writev)(int, const struct iovec*, int);
static ssize_t (*real_pwrite)(int, const void*, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void*, size_t, off64_t);
static ssize_t (*real_pwritev)(int, const struct iovec*, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);
static int (*real_rename)(const char*, const char*);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_fallocate64)(int, int, off64_t, off64_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static int (*real_open)(const char*, int, ...);
static int (*real_open64)(const char*, int, ...);
static int (*real_openat)(int, const char*, int, ...);
static int (*real_openat64)(int, const char*, int, ...);
static int (*real_creat)(const char*, mode_t);

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

static void Resolve(void) {
  RESOLVE(write);
  RESOLVE(writev);
  RESOLVE(pwrite);
  RESOLVE(pwrite64);
  RESOLVE(pwritev);
  RESOLVE(fsync);
  RESOLVE(fdatasync);
  RESOLVE(sync_file_range);
  RESOLVE(rename);
  RESOLVE(ftruncate);
  RESOLVE(ftruncate64);
  RESOLVE(fallocate);
  RESOLVE(fallocate64);
  RESOLVE(posix_fallocate);
  RESOLVE(open);
  RESOLVE(open64);
  RESOLVE(openat);
  RESOLVE(openat64);
  RESOLVE(creat);
}

static void ParseOps(const char* s) {
  g_ops = 0;
  while (*s) {
    size_t n = strcspn(s, ",");
    if (n == 3 && strncmp(s, "all", 3) == 0)
      g_ops = ~0;
    for (size_t i = 0; i < sizeof(kOps) / sizeof(kOps[0]); ++i) {
      if (strlen(kOps[i].name) == n && strncmp(s, kOps[i].name, n) == 0)
        g_ops |= kOps[i].bit;
    }
    s += n;
    if (*s == ',')
      ++s;
  }
}

static const char* ErrnoName(int e) {
  for (size_t i = 0; i < sizeof(kErrnos) / sizeof(kErrnos[0]); ++i) {
    if (kErrnos[i].value == e)
      return kErrnos[i].name;
  }
  return "errno";
}

__attribute__((constructor)) static void Init(void) {
  Resolve();
  const char* dir = getenv("FAULTFS_DIR");
  if (dir == NULL || *dir == '\0')
    return;  // inert
  snprintf(g_dir, sizeof(g_dir), "%s", dir);
  g_dir_len = strlen(g_dir);
  while (g_dir_len > 1 && g_dir[g_dir_len - 1] == '/')
    g_dir[--g_dir_len] = '\0';
  const char* v;
  if ((v = getenv("FAULTFS_OPS")) != NULL)
    ParseOps(v);
  if ((v = getenv("FAULTFS_ERRNO")) != NULL) {
    g_errno = atoi(v);
    for (size_t i = 0; i < sizeof(kErrnos) / sizeof(kErrnos[0]); ++i) {
      if (strcmp(v, kErrnos[i].name) == 0)
        g_errno = kErrnos[i].value;
    }
    if (g_errno <= 0)
      g_errno = EIO;
  }
  if ((v = getenv("FAULTFS_CONTROL")) != NULL)
    snprintf(g_control, sizeof(g_control), "%s", v);
  if ((v = getenv("FAULTFS_AFTER")) != NULL)
    g_after = atol(v);
  if ((v = getenv("FAULTFS_PROB")) != NULL)
    g_prob = atof(v);
  if ((v = getenv("FAULTFS_SEED")) != NULL)
    g_rng = strtoull(v, NULL, 10) | 1;
  if ((v = getenv("FAULTFS_SHORT")) != NULL)
    g_short = atoi(v);
  if ((v = getenv("FAULTFS_STOP_OPS")) != NULL) {
    int ops = g_ops;
    ParseOps(v);
    g_stop_ops = g_ops;
    g_ops = ops;
  }
  if ((v = getenv("FAULTFS_STOP_SUFFIX")) != NULL)
    snprintf(g_stop_suffix, sizeof(g_stop_suffix), "%s", v);
  if ((v = getenv("FAULTFS_STOP_CONTROL")) != NULL)
    snprintf(g_stop_control, sizeof(g_stop_control), "%s", v);
  if ((v = getenv("FAULTFS_LOG")) != NULL) {
    // The raw system call: open() is interposed below.
    g_log_fd =
        (int)syscall(SYS_openat, AT_FDCWD, v, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
}

static int UnderDir(const char* path) {
  return g_dir_len > 0 && strncmp(path, g_dir, g_dir_len) == 0 &&
         (path[g_dir_len] == '/' || path[g_dir_len] == '\0');
}

// The absolute path of `path` (relative to the working directory or to `dirfd`), in `out`.
static void Absolute(int dirfd, const char* path, char* out, size_t size) {
  if (path[0] == '/') {
    snprintf(out, size, "%s", path);
    return;
  }
  char base[4096];
  base[0] = '\0';
  if (dirfd == AT_FDCWD) {
    if (getcwd(base, sizeof(base)) == NULL)
      base[0] = '\0';
  } else {
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof(base) - 1);
    base[n > 0 ? n : 0] = '\0';
  }
  snprintf(out, size, "%s/%s", base, path);
}

static int FdPath(int fd, char* out, size_t size) {
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, size - 1);
  if (n <= 0)
    return 0;
  out[n] = '\0';
  return 1;
}

static int FaultsOn(void) {
  if (g_control[0] == '\0')
    return 1;
  return syscall(SYS_faccessat, AT_FDCWD, g_control, F_OK) == 0;
}

static uint64_t NextRandom(void) {
  // xorshift64; races between threads only perturb the sequence.
  uint64_t x = __atomic_load_n(&g_rng, __ATOMIC_RELAXED);
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  __atomic_store_n(&g_rng, x, __ATOMIC_RELAXED);
  return x;
}

// `what`: the errno name, "short" or "stop".
static void Log(const char* call, const char* what, const char* path) {
  if (g_log_fd < 0)
    return;
  char line[4600];
  int n = snprintf(line, sizeof(line), "faultfs: %s %s %s\n", call, what, path);
  if (n > (int)sizeof(line) - 1)
    n = (int)sizeof(line) - 1;
  if (n > 0)
    (void)syscall(SYS_write, g_log_fd, line, (size_t)n);
}

// Whether this call on `path` fails now.
static int ShouldFail(int op, const char* path) {
  if (!(g_ops & op) || !UnderDir(path) || !FaultsOn())
    return 0;
  long seen = __atomic_fetch_add(&g_matched, 1, __ATOMIC_RELAXED);
  if (seen < g_after)
    return 0;
  if (g_prob < 1 && (double)(NextRandom() >> 11) / (double)(1ULL << 53) >= g_prob)
    return 0;
  return 1;
}

// After call `op` on `fd` succeeded: stops the process when armed (FAULTFS_STOP_*).
static void StopAfter(int op, int fd, const char* call) {
  if (!(g_stop_ops & op) || g_stop_control[0] == '\0')
    return;
  char path[4096];
  if (!FdPath(fd, path, sizeof(path)) || !UnderDir(path))
    return;
  size_t n = strlen(path), m = strlen(g_stop_suffix);
  if (n < m || strcmp(path + n - m, g_stop_suffix) != 0)
    return;
  // Whoever removes the file is the one shot.
  if (syscall(SYS_unlinkat, AT_FDCWD, g_stop_control, 0) != 0)
    return;
  Log(call, "stop", path);
  // raise(), not kill(getpid()): a signal sent to the process may be taken by another thread,
  // and this one would run on until that thread's group stop reached it. Sent to this thread,
  // it stops before the call returns; the others follow.
  raise(SIGSTOP);
}

static int FdShouldFail(int op, int fd, const char* call) {
  if (g_dir_len == 0 || !(g_ops & op))
    return 0;
  char path[4096];
  if (!FdPath(fd, path, sizeof(path)) || !ShouldFail(op, path))
    return 0;
  Log(call, ErrnoName(g_errno), path);
  return 1;
}

// A write or pwrite of `count` bytes: 0 to pass it through, 1 to write half of it (a short
// write: FAULTFS_SHORT, the first on a descriptor), -1 to fail it (errno set).
static int WriteFault(int op, int fd, size_t count, const char* call) {
  if (g_dir_len == 0 || !(g_ops & op))
    return 0;
  char path[4096];
  if (!FdPath(fd, path, sizeof(path)) || !ShouldFail(op, path))
    return 0;
  int known = fd >= 0 && fd < kMaxFds;
  if (g_short && count > 1 && known && !g_shorted[fd]) {
    g_shorted[fd] = 1;
    Log(call, "short", path);
    return 1;
  }
  Log(call, ErrnoName(g_errno), path);
  errno = g_errno;
  return -1;
}

ssize_t write(int fd, const void* buf, size_t count) {
  if (real_write == NULL)
    Resolve();
  int f = WriteFault(kWrite, fd, count, "write");
  return f == 0 ? real_write(fd, buf, count) : f > 0 ? real_write(fd, buf, count / 2) : -1;
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  if (FdShouldFail(kWrite, fd, "writev")) {
    errno = g_errno;
    return -1;
  }
  return real_writev(fd, iov, iovcnt);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  int f = WriteFault(kPwrite, fd, count, "pwrite");
  return f == 0  ? real_pwrite(fd, buf, count, offset)
         : f > 0 ? real_pwrite(fd, buf, count / 2, offset)
                 : -1;
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  int f = WriteFault(kPwrite, fd, count, "pwrite");
  return f == 0  ? real_pwrite64(fd, buf, count, offset)
         : f > 0 ? real_pwrite64(fd, buf, count / 2, offset)
                 : -1;
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  if (FdShouldFail(kPwrite, fd, "pwritev")) {
    errno = g_errno;
    return -1;
  }
  return real_pwritev(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
  if (FdShouldFail(kFsync, fd, "fsync")) {
    errno = g_errno;
    return -1;
  }
  int r = real_fsync(fd);
  if (r == 0)
    StopAfter(kFsync, fd, "fsync");
  return r;
}

int fdatasync(int fd) {
  if (FdShouldFail(kFdatasync, fd, "fdatasync")) {
    errno = g_errno;
    return -1;
  }
  int r = real_fdatasync(fd);
  if (r == 0)
    StopAfter(kFdatasync, fd, "fdatasync");
  return r;
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
  // Flags 0 is a no-op that no disk can fail: RocksDB probes for the call with it (and asserts
  // that the probe fails with nothing but ENOSYS).
  if (flags != 0 && FdShouldFail(kSyncFileRange, fd, "sync_file_range")) {
    errno = g_errno;
    return -1;
  }
  return real_sync_file_range(fd, offset, nbytes, flags);
}

int ftruncate(int fd, off_t length) {
  if (FdShouldFail(kFtruncate, fd, "ftruncate")) {
    errno = g_errno;
    return -1;
  }
  return real_ftruncate(fd, length);
}

int ftruncate64(int fd, off64_t length) {
  if (FdShouldFail(kFtruncate, fd, "ftruncate")) {
    errno = g_errno;
    return -1;
  }
  return real_ftruncate64(fd, length);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
  if (FdShouldFail(kFallocate, fd, "fallocate")) {
    errno = g_errno;
    return -1;
  }
  return real_fallocate(fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off64_t offset, off64_t len) {
  if (FdShouldFail(kFallocate, fd, "fallocate")) {
    errno = g_errno;
    return -1;
  }
  return real_fallocate64(fd, mode, offset, len);
}

int posix_fallocate(int fd, off_t offset, off_t len) {
  if (FdShouldFail(kFallocate, fd, "posix_fallocate"))
    return g_errno;  // posix_fallocate returns the error, errno untouched
  return real_posix_fallocate(fd, offset, len);
}

int rename(const char* from, const char* to) {
  if (g_dir_len > 0) {
    char path[4096];
    Absolute(AT_FDCWD, to, path, sizeof(path));
    if (ShouldFail(kRename, path)) {
      Log("rename", ErrnoName(g_errno), path);
      errno = g_errno;
      return -1;
    }
  }
  return real_rename(from, to);
}

static int OpenShouldFail(int dirfd, const char* path, int flags) {
  if (g_dir_len == 0 || !(flags & (O_CREAT | O_WRONLY | O_RDWR | O_TRUNC)))
    return 0;
  char abs[4096];
  Absolute(dirfd, path, abs, sizeof(abs));
  if (!ShouldFail(kOpen, abs))
    return 0;
  Log("open", ErrnoName(g_errno), abs);
  errno = g_errno;
  return 1;
}

#define OPEN_MODE(flags, mode)             \
  mode_t mode = 0;                         \
  if ((flags) & (O_CREAT | __O_TMPFILE)) { \
    va_list ap;                            \
    va_start(ap, flags);                   \
    mode = (mode_t)va_arg(ap, int);        \
    va_end(ap);                            \
  }

int open(const char* path, int flags, ...) {
  OPEN_MODE(flags, mode);
  if (real_open == NULL)
    Resolve();
  if (OpenShouldFail(AT_FDCWD, path, flags))
    return -1;
  return real_open(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  OPEN_MODE(flags, mode);
  if (real_open64 == NULL)
    Resolve();
  if (OpenShouldFail(AT_FDCWD, path, flags))
    return -1;
  return real_open64(path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
  OPEN_MODE(flags, mode);
  if (real_openat == NULL)
    Resolve();
  if (OpenShouldFail(dirfd, path, flags))
    return -1;
  return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
  OPEN_MODE(flags, mode);
  if (real_openat64 == NULL)
    Resolve();
  if (OpenShouldFail(dirfd, path, flags))
    return -1;
  return real_openat64(dirfd, path, flags, mode);
}

int creat(const char* path, mode_t mode) {
  if (real_creat == NULL)
    Resolve();
  if (OpenShouldFail(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC))
    return -1;
  return real_creat(path, mode);
}
