// core/http/internal/syntax.h
//
// The small pieces of HTTP syntax (RFC 9110, RFC 9112) the server codec (http.cc) and the
// client's response parser (client.cc) share: ASCII case folding, tokens, blanks, field values.
// Threading: pure functions.
#pragma once

#include <algorithm>
#include <cstring>
#include <string_view>

namespace spate::http::internal {

constexpr char Lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i]))
      return false;
  }
  return true;
}

// tchar (RFC 9110 §5.6.2).
inline bool IsTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

inline bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar);
}

inline bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// Without the optional whitespace (OWS: SP, HTAB) around it (RFC 9110 §5.6.3).
inline std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// A field value may hold HTAB, SP, VCHAR and obs-text; CR, LF and NUL must be refused (RFC 9110
// §5.5), and so are the other controls: nothing spate reads needs them.
inline bool IsFieldValue(std::string_view v) {
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return false;
  }
  return true;
}

}  // namespace spate::http::internal
