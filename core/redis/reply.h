// core/redis/reply.h
//
// RESP2 replies (the Redis protocol) read from the bytes a server sent, sans-I/O, by hiredis's
// redisReader, into Reply values; and commands written by redisFormatCommandArgv. The server
// may be anyone's: a reply that does not parse is an error, and the reader is done.
// Threading: one reader per connection, on its thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisReader;

namespace spate::redis {

struct Reply {
  enum class Type : uint8_t { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus, kError
  std::vector<Reply> elements;
};

class ReplyReader {
 public:
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  // False once the input cannot be read (then error() says why, and nothing more comes).
  bool Feed(std::string_view bytes);
  // The next whole reply, or nullopt when more input is needed (or after an error).
  std::optional<Reply> Next();
  const std::string& error() const { return error_; }
  // Octets fed and not yet taken as whole replies: what a caller bounds.
  size_t buffered() const { return buffered_; }

 private:
  redisReader* reader_;
  std::string error_;
  size_t buffered_ = 0;
};

// The command `args` in RESP (an array of bulk strings): binary-safe.
std::string FormatCommand(const std::vector<std::string>& args);

}  // namespace spate::redis
