// core/smtp/ascii.h
//
// ASCII case folding for protocol keywords, verbs and domains (RFC 5321 §2.4: verbs, keywords
// and domains are case-insensitive; local parts are not, so never fold those), and the ALPHA /
// DIGIT class of the ABNF (RFC 5234 §B.1). Locale-free, unlike <cctype>. Threading: pure
// functions.
#pragma once

#include <cstddef>
#include <string_view>

namespace spate::smtp {

constexpr char AsciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

constexpr bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) {
      return false;
    }
  }
  return true;
}

constexpr bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsNoCase(s.substr(0, prefix.size()), prefix);
}

}  // namespace spate::smtp
