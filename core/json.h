// core/json.h
//
// JSON text (RFC 8259) for the records file: strings and integers appended to a line being built.
// AppendJsonString() always produces a valid JSON string of valid UTF-8, whatever the input (a
// remote server's reply text is hostile): `"` and `\` escaped (§7), control characters as \n, \r,
// \t, \b, \f or \u00XX, DEL as \u007f; well-formed UTF-8 (RFC 3629 §4: no overlong forms, no
// surrogates, nothing above U+10FFFF) passed through as it is; every byte that does not begin a
// well-formed sequence replaced by U+FFFD, one for each such byte, and the next byte tried anew.
// The output never holds a raw newline, so one record is one line.
// Threading: pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace spate {

// Appends `s` as a quoted JSON string.
void AppendJsonString(std::string& out, std::string_view s);

// Appends an integer as a JSON number (note: readers that keep numbers as doubles, JavaScript's
// among them, are exact only up to 2^53).
void AppendJsonNumber(std::string& out, int64_t n);
void AppendJsonNumber(std::string& out, uint64_t n);

}  // namespace spate
