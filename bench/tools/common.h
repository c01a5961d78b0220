// bench/tools/common.h
//
// What spate-blast and spate-sink share: command-line flags, a small JSON object builder, the
// clocks, and the timestamp header that carries the end-to-end latency from the load generator
// to the sink. Threading: FlagSet and JsonObject are plain values; the clock functions are
// callable from any thread. Nothing here blocks.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace spate::bench {

// The header spate-blast stamps into every message: nanoseconds since the Unix epoch
// (CLOCK_REALTIME, so it means the same in another process), always kTimestampDigits digits.
inline constexpr std::string_view kTimestampHeader = "X-Blast-Ts: ";
inline constexpr size_t kTimestampDigits = 19;

uint64_t WallNs();       // CLOCK_REALTIME
uint64_t MonotonicNs();  // CLOCK_MONOTONIC

// Finds the timestamp header in the start of a message (its header section); 0 if absent.
uint64_t FindTimestamp(std::string_view head);

// --name value, --name=value; --name alone for booleans (and --no-name to turn one off).
class FlagSet {
 public:
  FlagSet(std::string program, std::string summary);
  void String(const char* name, std::string* value, const char* help);
  void Uint(const char* name, uint64_t* value, const char* help);
  void Double(const char* name, double* value, const char* help);
  void Bool(const char* name, bool* value, const char* help);
  // False on a bad flag (after printing why and the usage to stderr). --help prints the usage
  // to stdout and exits 0.
  bool Parse(int argc, char** argv);
  void PrintUsage(bool to_stderr) const;

 private:
  enum class Kind { kString, kUint, kDouble, kBool };
  struct Flag {
    Kind kind;
    void* value;
    std::string help;
    std::string default_text;
  };
  bool Set(const std::string& name, Flag& flag, const char* text);

  std::string program_;
  std::string summary_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
};

// Builds one JSON object, keys in insertion order. Numbers are written as given; strings are
// escaped; Raw() inserts already-formatted JSON (a nested object or array).
class JsonObject {
 public:
  JsonObject& Add(std::string_view key, uint64_t v);
  JsonObject& Add(std::string_view key, int64_t v);
  JsonObject& Add(std::string_view key, int v) { return Add(key, static_cast<int64_t>(v)); }
  JsonObject& Add(std::string_view key, double v);
  JsonObject& Add(std::string_view key, bool v);
  JsonObject& Add(std::string_view key, std::string_view v);
  JsonObject& Add(std::string_view key, const char* v) { return Add(key, std::string_view(v)); }
  JsonObject& Raw(std::string_view key, std::string_view json);
  std::string Finish() const { return "{" + body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_;
};

std::string JsonString(std::string_view s);

// Writes `text` to `path` through a temporary file and rename(), so a reader never sees a
// half-written file. False on failure (errno set).
bool WriteFileAtomically(const std::string& path, std::string_view text);

}  // namespace spate::bench
