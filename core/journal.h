// core/journal.h
//
// Journal: the accounting-records writer behind `[log] records`. Callers hand it finished lines
// (one JSON object each, built with core/json.h; the schema is the caller's); a writer thread of
// its own appends them to the live file with write(2), whole lines only, in the order Append()
// was called (per thread, and overall in the order the short lock was taken).
//
// Durability: the writer writes what is pending at least every `flush_interval`, and at once
// when 1 MiB is pending, without fsync: after a kill -9 the page cache still has every written
// line, so at most the last interval is missing and the file ends with a whole line. fsync is
// done on rotation and on close. A write that fails part-way (ENOSPC, EFBIG) is cut back to the
// last whole line (ftruncate) and the rest retried on the next round; write_errors counts it.
// Memory: at most `max_buffered` bytes wait for the disk; past it a line is dropped and counted
// (`dropped`), never waited for, so a reactor never blocks on the disk.
//
// Rotation (regular files only): when a line would take the live file past `max_size`, or the
// live file is older than `max_age` (from its birth time, statx; mtime where the file system
// has none; an empty file is never rotated), the live file is fsynced and renamed to
// `PATH.YYYYMMDDTHHMMSS` (the UTC time of the rotation; `PATH.YYYYMMDDTHHMMSS.N`, N = 1, 2, ...
// when that name is taken) and a new live file is opened. A file found by Open() that is older
// than `max_age` is rotated first. A helper thread then compresses the rotated file (with
// `compress`: `....zst`, libzstd level 3, written to `....zst.tmp` and renamed, then the
// uncompressed file unlinked; Open() finishes what a crash left uncompressed) and removes all
// but the `keep` newest rotated files of PATH (ordered by time, then N).
// External rotation (logrotate's create mode, an operator's mv): each round the writer compares
// the path's inode with the open file's and reopens the path when they differ or the path is
// gone; Reopen() (for SIGHUP) forces it.
// Threading: any thread. Blocking: Append() takes a short lock, never waits for I/O; Flush()
// waits for the writer; the destructor writes everything appended and joins both threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/clock.h"
#include "core/result.h"

namespace spate {

class Journal {
 public:
  struct Options {
    std::string path;                // the live file, e.g. var/log/records.jsonl; dirs created
    uint64_t max_size = 1ull << 30;  // rotate before a line would take the file past it (0: never)
    Seconds max_age{86400};          // rotate when the live file is older (0: never)
    unsigned keep = 10;              // rotated files kept, the oldest removed
    bool compress = false;           // rotated files zstd-compressed to .zst
    std::chrono::milliseconds flush_interval{1000};
    uint64_t max_buffered = 64ull << 20;  // bytes waiting for the disk; past it lines are dropped
  };
  struct Stats {
    uint64_t lines = 0;         // lines written
    uint64_t bytes = 0;         // bytes written, newlines included
    uint64_t dropped = 0;       // lines dropped: max_buffered was reached
    uint64_t rotations = 0;     // live files rotated (by size, age or at Open)
    uint64_t write_errors = 0;  // failed write(2)s (the lines were kept and retried)
  };

  // Opens (creates, with its directories) the live file and starts the threads. An empty path
  // is an error ("records path is empty"); `*error` (when not null) says what failed, with path.
  static Result<std::unique_ptr<Journal>> Open(const Options& options, std::string* error);
  ~Journal();  // writes everything appended, fsyncs and closes; finishes compressing
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // One record, WITHOUT its newline (the writer adds it). A newline inside would split the
  // record: it is written as a space. Any thread; never blocks on I/O.
  void Append(std::string&& line);
  // Returns once the writer has made its write(2) of every line appended before the call
  // (when that write failed, the lines are still pending and write_errors says so).
  void Flush();
  // The writer closes the live file and opens PATH again before its next write (SIGHUP).
  void Reopen();
  Stats stats() const;

 private:
  struct State;
  explicit Journal(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace spate
