// tests/fuzz/fuzz_util.h
//
// Helpers shared by the fuzz targets: FUZZ_CHECK, which traps (so libFuzzer and the replay
// driver both report the input) after naming the invariant, and Chunker, which cuts a payload
// into the pieces a target feeds to a sans-I/O API.
//
// Input layout shared by the stream targets: a few header octets (flags and three chunk sizes),
// then the payload (the peer's bytes). Chunk sizes cycle through the three header octets; a 0
// means "everything that is left", so {0,0,0} feeds the payload whole and {1,1,1} feeds it
// octet by octet.
// Threading: single-threaded, like the targets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) [[unlikely]] {                                                              \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      __builtin_trap();                                                                      \
    }                                                                                        \
  } while (false)

namespace spate::fuzz {

class Chunker {
 public:
  Chunker(std::string_view payload, const uint8_t sizes[3])
      : rest_(payload), sizes_{sizes[0], sizes[1], sizes[2]} {}

  // The next piece, or false once the payload is used up.
  bool Next(std::string_view* chunk) {
    if (rest_.empty()) {
      return false;
    }
    const size_t want = sizes_[turn_++ % 3];
    const size_t n = want == 0 || want > rest_.size() ? rest_.size() : want;
    *chunk = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }

 private:
  std::string_view rest_;
  uint8_t sizes_[3];
  size_t turn_ = 0;
};

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

}  // namespace spate::fuzz
