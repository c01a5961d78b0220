// queue/body_log.h
//
// BodyLog: the spool's append-only files for large message bodies ([spool] body_log_min_size).
// RocksDB keeps everything else; for these messages it holds a BodyRef (CF "body_ref") where
// it would hold the body. A body is then written once (here, with no copy: one pwritev of the
// whole commit batch from the messages' own buffers), instead of twice through RocksDB (its
// write-ahead log, checksummed by Debian's librocksdb with a software CRC32C, and its memtable).
//
// Layout: <spool>/bodies/NNNNNNNN.body, segments numbered from 1. Each body is a record:
//   magic "SPB1"(4) crc32c(4) length(8) message id(8), then the body's bytes.
// All integers little-endian. A BodyRef names the segment, the body's offset (past the header),
// its length and its CRC32C (Castagnoli, the SSE4.2 instruction where the CPU has it).
//
// Durability (spool.h): the commit thread appends a batch's bodies and fdatasyncs the segment
// (a new segment's directory entry is synced too) BEFORE it writes the batch's RocksDB records
// with sync; the 250s go after both. So every BodyRef on disk names bytes already on disk; a
// crash mid-append leaves a torn tail that no ref names. A segment is written by one batch
// after another until it passes segment_bytes; a write that fails leaves it and the next batch
// starts a new one (never a write after a failed one, past a torn tail).
//
// Space: a segment goes when the last body it holds is released (its message finished) and it
// is no longer the one being written; Recover() counts the refs and drops the segments no ref
// names. A segment held only by a few messages (deferred ones, mostly) is compacted: once it has
// been full a while (Spool::Options::body_log_compact_after) with half of its bodies or fewer
// still retained, the spool moves those to the segment being written (they are appended with a
// batch's new bodies, their refs rewritten in its RocksDB write) and the segment goes with the
// last of them (CompactionCandidate, MarkCompacted). The first two segments to go are kept as
// spares (NNNNNNNN.spare) and the next new segments are those files, renamed and written again
// from their start: a write inside a file's allocated size is synced without the inode update
// a growing file needs (a journal commit, on a journaled ext4), which makes the batches'
// fdatasyncs faster (bench/README.md, "The body log writes its segments again"). What
// a spare held stays past the write offset, behind the bodies written since: no ref names it
// (refs name only what their batch wrote and synced), and a read checks its body's CRC. Short
// of disk space the spool deletes them (DropSpares).
//
// Threading: Append/Retain/Release/DropUnreferenced on the spool's commit thread (or before it
// starts, in Open/Recover); Read from any thread (the spool's reader). Blocking: all of it
// (file I/O).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/result.h"
#include "queue/spool.h"

namespace spate::queue {

// CRC32C (Castagnoli, RFC 3720 appendix B.4) of `data`, continuing `crc` (0 to start).
uint32_t Crc32c(std::string_view data, uint32_t crc = 0);

struct BodyRef {
  uint32_t segment = 0;
  uint64_t offset = 0;  // of the body's first byte, past its record header
  uint64_t length = 0;
  uint32_t crc = 0;  // CRC32C of the body

  friend bool operator==(const BodyRef&, const BodyRef&) = default;
};

class BodyLog {
 public:
  static constexpr size_t kHeaderSize = 24;

  struct Item {
    MessageId id = 0;
    std::string_view body;
    BodyRef* ref = nullptr;  // filled by Append
  };

  // Opens (creating) `dir` and every segment in it, for reading. A new batch goes to a new
  // segment, numbered past the largest there.
  static Result<std::unique_ptr<BodyLog>> Open(const std::string& dir, uint64_t segment_bytes,
                                               std::string* error);
  ~BodyLog();
  BodyLog(const BodyLog&) = delete;
  BodyLog& operator=(const BodyLog&) = delete;

  // Appends every item's body (one pwritev per IOV_MAX pieces) and, with `sync`, fdatasyncs.
  // Fills each item's ref. An error (Errc::kNoSpace or kIo) means none of them is usable.
  std::error_code Append(std::span<Item> items, bool sync);

  // The body `ref` names, its CRC checked: Errc::kNotFound (no such segment: released),
  // kCorruption (short, or its CRC differs), kIo.
  Result<std::string> Read(const BodyRef& ref) const;

  // Whether `ref` lies inside its segment as it is on disk (Recover()).
  bool Holds(const BodyRef& ref) const;

  // Counts of the bodies still referenced, per segment: Retain once its ref is on disk,
  // Release once its removal is; a segment at zero that is not being written is removed. A
  // batch retains everything it wrote refs to before it releases anything: a segment it
  // appended to (and filled) may hold no other body still needed.
  // `length`: the body's, when known (Recover: it sizes a segment from before a restart).
  void Retain(uint32_t segment, uint64_t length = 0);
  void Release(uint32_t segment);
  // Removes `segment` if it is no longer written and no body in it is retained: one a batch
  // filled with bodies none of which is named now (moved ones whose messages finished in the
  // same batch), which no Release would ever reach.
  void DropIfUnused(uint32_t segment);
  // Removes every segment no body is retained in (but the one being written); how many.
  size_t DropUnreferenced();
  // Deletes the spare segments (Space, above); how many.
  size_t DropSpares();
  // The oldest segment to compact (Space, above): full for at least `after`, not compacted
  // before, half of its bodies or fewer retained but some. 0: none.
  uint32_t CompactionCandidate(std::chrono::steady_clock::duration after) const;
  void MarkCompacted(uint32_t segment);
  size_t spares() const;  // commit thread

  size_t segments() const;  // commit thread
  uint64_t bytes() const;   // commit thread: the size of every segment together

 private:
  struct Segment;
  BodyLog(std::string dir, int dir_fd, uint64_t segment_bytes);
  std::error_code OpenNext(bool sync);
  // Removes segment `number`, kept as a spare while there is room for one and `reuse`.
  void Drop(uint32_t number, bool reuse = true);
  std::string PathOf(uint32_t number, bool spare = false) const;

  const std::string dir_;
  const int dir_fd_;
  const uint64_t segment_bytes_;
  // Changed by the commit thread under mu_, read by the reader under it (the commit thread
  // reads it without: it is the only writer).
  mutable std::mutex mu_;
  std::map<uint32_t, std::shared_ptr<Segment>> segments_;
  std::shared_ptr<Segment> current_;  // being written, or null: the next Append opens one
  uint32_t next_number_ = 1;          // past every segment's and spare's number
  std::vector<uint32_t> spares_;      // commit thread: the spares' numbers (their file names)
};

}  // namespace spate::queue
