// core/toml_check.h
//
// A look at a TOML document before toml++ parses it (the configuration, bounce rules).
// What toml++ 3.3 would abort on (its assertions are on: no NDEBUG here; with NDEBUG it
// assumes them, undefined behaviour) instead of reporting: a table header whose key does not
// start at once ("[&", "[[[", "[\n"; marzer/tomlplusplus issues 294 and 301), a '}' where an
// array expects a value ("[1, }"; found by tests/fuzz/bounce_rules_fuzz), and control
// characters, which TOML never allows outside their escapes (tab is the one exception), and
// non-ASCII characters where toml++ 3.3 may ask its whitespace table, which reaches
// TOML_UNREACHABLE for U+00A1 to U+0499 and others: TOML allows them only in strings and
// comments, and a string starts only where a key or a value can. A document is config, not
// remote input, but an operator's typo must not take the daemon down. A small lexer: strings
// and comments are skipped, the brackets of values kept on a stack, and a header is a '['
// that starts a statement outside any value.
// False, with `*error` naming the line and what is wrong, for such a document.
// Threading: pure.
#pragma once

#include <string>
#include <string_view>

namespace spate {

bool CheckTomlText(std::string_view text, std::string* error);

}  // namespace spate
