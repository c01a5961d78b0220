#include "core/toml_check.h"

#include <cstddef>
#include <string>

namespace spate {

namespace {

bool BareKeyStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '"' || c == '\'';
}

bool Ascii(char c) {
  return static_cast<unsigned char>(c) < 128;
}

// The end of the string opened at text[i] (one past its closing quote, or text.size()); npos
// for a multi-line basic string with a line-ending backslash followed by a non-ASCII
// character (toml++ 3.3 asks its whitespace table about it, and the table reaches
// TOML_UNREACHABLE for U+00A1 to U+0499 and others).
size_t SkipString(std::string_view text, size_t i) {
  const char q = text[i];
  const bool multi = text.substr(i, 3) == std::string_view(q == '"' ? "\"\"\"" : "'''");
  const std::string_view close = multi ? text.substr(i, 3) : text.substr(i, 1);
  for (size_t j = i + close.size(); j < text.size(); ++j) {
    if (q == '"' && text[j] == '\\') {
      size_t k = j + 1;
      while (multi && k < text.size() &&
             (text[k] == ' ' || text[k] == '\t' || text[k] == '\r' || text[k] == '\n'))
        ++k;
      if (k < text.size() && !Ascii(text[k]))
        return std::string_view::npos;
      ++j;  // an escape: the next character is not a closing quote
    } else if (!multi && text[j] == '\n') {
      return j;  // toml++ reports the unterminated string
    } else if (text.substr(j, close.size()) == close) {
      size_t end = j + close.size();
      for (int extra = 0; multi && extra < 2 && end < text.size() && text[end] == q; ++extra)
        ++end;  // TOML: up to two quotes next to the closing delimiter are content
      return end;
    }
  }
  return text.size();
}

}  // namespace

bool CheckTomlText(std::string_view text, std::string* error) {
  size_t line = 1;
  std::string open;  // the '[' and '{' of values not closed yet, innermost last
  bool statement_start = true;
  bool in_header = false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    line += c == '\n';
    if ((u < 32 && c != '\t' && c != '\n' && c != '\r') || u == 127) {
      *error = "line " + std::to_string(line) + ": a control character";
      return false;
    }
  }
  line = 1;
  char prev = '\n';       // the character before, outside strings
  bool in_value = false;  // after a key's '=', until a key may come again
  for (size_t i = 0; i < text.size(); prev = text[i++]) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      in_header = false;
      statement_start = open.empty();
      in_value = in_value && !open.empty();
    } else if ((c == '"' || c == '\'') && in_value && prev == '.') {
      // A dotted key may go on with a quoted part ("a."b" = 1"); a value never does, and
      // toml++ 3.3 reaches TOML_UNREACHABLE on a bad number so followed ("+."μ": found by
      // tests/fuzz/shaping_fuzz).
      *error = "line " + std::to_string(line) + ": a quote after a '.' in a value";
      return false;
    } else if ((c == '"' || c == '\'') &&
               std::string_view(" \t\r\n=[{,.").find(prev) == std::string_view::npos) {
      *error = "line " + std::to_string(line) + ": a quote inside a bare key or value";
      return false;
    } else if (c == '"' || c == '\'') {
      const size_t end = SkipString(text, i);
      if (end == std::string_view::npos) {
        *error = "line " + std::to_string(line) + ": a non-ASCII character after a backslash";
        return false;
      }
      for (size_t j = i; j < end; ++j)
        line += text[j] == '\n';
      i = end - 1;
      statement_start = false;
    } else if (!Ascii(c)) {
      // TOML 1.0 allows other characters only in strings and comments; toml++ 3.3 would ask
      // its whitespace table (above).
      *error = "line " + std::to_string(line) + ": a non-ASCII character outside a string";
      return false;
    } else if (c == '#') {
      while (i + 1 < text.size() && text[i + 1] != '\n')
        ++i;
    } else if (c == '[' && statement_start) {
      size_t j = i + 1;
      if (j < text.size() && text[j] == '[')
        ++j;
      while (j < text.size() && (text[j] == ' ' || text[j] == '\t'))
        ++j;
      if (j < text.size() && text[j] != ']' && !BareKeyStart(text[j])) {
        *error = "line " + std::to_string(line) + ": a table header without a key";
        return false;
      }
      in_header = true;
      statement_start = false;
    } else if (!in_header && c == '=') {
      in_value = true;
      statement_start = false;
    } else if (!in_header && (c == '[' || c == '{')) {
      open += c;
      in_value = in_value && c == '[';  // an inline table's keys come next
      statement_start = false;
    } else if (!in_header && c == ',' && !open.empty() && open.back() == '{') {
      in_value = false;  // the next key of an inline table
      statement_start = false;
    } else if (!in_header && c == '}' && !open.empty() && open.back() == '[') {
      *error = "line " + std::to_string(line) + ": a '}' inside an array";
      return false;
    } else if (!in_header && (c == ']' || c == '}')) {
      if (!open.empty())
        open.pop_back();
      in_value = true;  // what closed was a value
      statement_start = false;
    } else if (c != ' ' && c != '\t' && c != '\r') {
      statement_start = false;
    }
  }
  return true;
}

}  // namespace spate
