// core/wipe.h
//
// Wipe() overwrites a string's whole buffer (its capacity, not only its size: a string that
// shrank, or was moved from while short, still holds the old bytes there) before it is cleared,
// with explicit_bzero, which the compiler may not drop as a dead store. For passwords and other
// secrets, at every copy: a core dump or a later bug that reads freed memory finds nothing.
// Threading: any; Blocking: no.
#pragma once

#include <string>

#include <string.h>

namespace spate {

inline void Wipe(std::string& s) {
  s.resize(s.capacity());  // every byte the buffer can hold is now part of the string
  explicit_bzero(s.data(), s.size());
  s.clear();
}

// The bytes past the end, up to the capacity (what an erase or a shorter assign left behind).
inline void WipeSpare(std::string& s) {
  const size_t n = s.size();
  s.resize(s.capacity());
  explicit_bzero(s.data() + n, s.size() - n);
  s.resize(n);
}

// The first `n` bytes only (what a parser has consumed), leaving the string's size as it is.
inline void WipePrefix(std::string& s, size_t n) {
  explicit_bzero(s.data(), n < s.size() ? n : s.size());
}

}  // namespace spate
