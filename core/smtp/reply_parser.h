// core/smtp/reply_parser.h
//
// Incremental parser for SMTP server replies (RFC 5321 §4.2): multi-line replies ("250-..."
// lines ended by "250 ...") and RFC 3463 enhanced status codes (RFC 2034 §4).
//
// Sans-I/O: bytes may arrive split anywhere (inside the code, between CR and LF); Feed() keeps
// the state. Lines end in CRLF; a bare LF is accepted as a line end too (lenient to servers).
// Threading: not thread-safe; owned by the shard that owns the connection.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "core/result.h"
#include "core/smtp/reply.h"

namespace spate::smtp {

class ReplyParser {
 public:
  struct Limits {
    size_t max_line_bytes = 4096;  // RFC 5321 §4.5.3.1.5 says 512; real servers exceed it
    size_t max_lines = 128;
  };

  explicit ReplyParser(Limits limits);
  ReplyParser() : ReplyParser(Limits{}) {}

  // Consumes a prefix of `in` and returns how many bytes were used. Stops after one complete
  // reply, so the caller can act on it before the next one (pipelining); while that reply has
  // not been taken, Feed() consumes nothing. Errors (smtp::Errc::kMalformedReply,
  // kReplyTooLong) are final: drop the connection.
  Result<size_t> Feed(std::string_view in);

  // The reply completed by the last Feed(), if any. Taking it clears it.
  std::optional<Reply> TakeReply();

 private:
  // One complete line, without its line end. `line` may alias line_.
  std::error_code OnLine(std::string_view line);
  Unexpected Fail(std::error_code ec);

  Limits limits_;
  std::string line_;       // the partial line carried between Feed() calls, without line end
  Reply current_;          // the reply being assembled (or complete, when done_)
  size_t lines_ = 0;       // lines of current_ so far
  bool done_ = false;      // current_ is complete and not yet taken
  std::error_code error_;  // sticky: once set, every Feed() returns it
};

}  // namespace spate::smtp
