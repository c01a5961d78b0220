// delivery/bounce_class.cc
#include "delivery/bounce_class.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>
#include <vector>

#include "core/check.h"

// toml++ header-only and without exceptions, as in core/daemon/config.cc (the same macros in
// every translation unit that includes it, so its inline functions are one definition).
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include <re2/re2.h>
#include <re2/set.h>
#include <toml++/toml.h>

namespace spate::delivery {
namespace {

constexpr std::array<std::string_view, kBounceClassCount> kNames = {
    "InvalidRecipient",     "BadDomain",      "InactiveMailbox",
    "QuotaIssues",          "SpamBlock",      "SpamContent",
    "VirusRelated",         "ContentRelated", "PolicyRelated",
    "AuthenticationFailed", "RelayingIssues", "RoutingErrors",
    "ProtocolErrors",       "InvalidSender",  "BadConnection",
    "NoAnswerFromHost",     "MessageExpired", "TooManyRecipients",
    "BadConfiguration",     "Uncategorized",
};

// Bounds on a rules document, so that a hostile or mistaken one costs bounded memory: RE2's
// own limit per expression and for the set (its DFA cache included), and a cap on the count.
constexpr int64_t kMaxMemPerRule = 1 << 20;
constexpr int64_t kMaxMemSet = 64 << 20;
constexpr size_t kMaxRules = 4096;

RE2::Options RuleOptions(int64_t max_mem) {
  RE2::Options o;
  o.set_case_sensitive(false);
  o.set_log_errors(false);  // errors go back to the caller; nothing is written to stderr
  o.set_max_mem(max_mem);
  return o;
}

std::string Quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 32 && u < 127) ? c : '?';
    if (out.size() > 200) {
      out += "...";
      break;
    }
  }
  return out + "\"";
}

// A document position, for ordering: toml++ keeps a table's keys sorted by name, and the rules
// are in the order they were written.
std::pair<uint32_t, uint32_t> Position(const toml::key& k, const toml::node& v) {
  const toml::source_position p = k.source().begin ? k.source().begin : v.source().begin;
  return {p.line, p.column};
}

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
bool CheckBeforeToml(std::string_view text, std::string* error) {
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
  char prev = '\n';  // the character before, outside strings
  for (size_t i = 0; i < text.size(); prev = text[i++]) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      in_header = false;
      statement_start = open.empty();
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
    } else if (!in_header && (c == '[' || c == '{')) {
      open += c;
      statement_start = false;
    } else if (!in_header && c == '}' && !open.empty() && open.back() == '[') {
      *error = "line " + std::to_string(line) + ": a '}' inside an array";
      return false;
    } else if (!in_header && (c == ']' || c == '}')) {
      if (!open.empty())
        open.pop_back();
      statement_start = false;
    } else if (c != ' ' && c != '\t' && c != '\r') {
      statement_start = false;
    }
  }
  return true;
}

}  // namespace

std::string_view BounceClassName(BounceClass c) {
  const auto i = static_cast<size_t>(c);
  return i < kNames.size() ? kNames[i] : kNames.back();
}

std::optional<BounceClass> BounceClassFromName(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name)
      return static_cast<BounceClass>(i);
  }
  return std::nullopt;
}

struct Classifier::Impl {
  Impl() : set(RuleOptions(kMaxMemSet), RE2::UNANCHORED) {}

  RE2::Set set;
  // One per rule, in rule order: its class, and the expression alone for the fallback below.
  std::vector<BounceClass> classes;
  std::vector<std::unique_ptr<RE2>> each;
};

Classifier::Classifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;
Classifier::~Classifier() = default;

size_t Classifier::rules() const {
  return impl_->classes.size();
}

std::optional<Classifier> Classifier::FromToml(std::string_view text, std::string* error) {
  error->clear();
  if (!CheckBeforeToml(text, error))
    return std::nullopt;
  toml::parse_result parsed = toml::parse(text);
  if (!parsed) {
    const auto& e = parsed.error();
    *error = "line " + std::to_string(e.source().begin.line) + ": " + std::string(e.description());
    return std::nullopt;
  }
  const toml::table& root = parsed.table();
  for (const auto& [k, v] : root) {
    if (k.str() != "rules") {
      *error = "unknown key " + Quoted(k.str()) + " (a rules document has only [rules])";
      return std::nullopt;
    }
  }
  const toml::table* rules = root["rules"].as_table();
  if (rules == nullptr) {
    *error = "no [rules] table";
    return std::nullopt;
  }
  struct Entry {
    std::pair<uint32_t, uint32_t> at;
    std::string_view name;
    const toml::node* value;
  };
  std::vector<Entry> entries;
  for (const auto& [k, v] : *rules)
    entries.push_back({Position(k, v), k.str(), &v});
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.at < b.at; });

  auto impl = std::make_unique<Impl>();
  for (const Entry& e : entries) {
    const std::optional<BounceClass> c = BounceClassFromName(e.name);
    if (!c) {
      *error = "rules: unknown class " + Quoted(e.name);
      return std::nullopt;
    }
    const toml::array* list = e.value->as_array();
    if (list == nullptr) {
      *error = "rules." + std::string(e.name) + ": not an array of expressions";
      return std::nullopt;
    }
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string where = "rules." + std::string(e.name) + "[" + std::to_string(i) + "]";
      const std::optional<std::string_view> pattern = (*list)[i].value<std::string_view>();
      if (!pattern) {
        *error = where + ": not a string";
        return std::nullopt;
      }
      if (impl->classes.size() == kMaxRules) {
        *error = where + ": more than " + std::to_string(kMaxRules) + " expressions";
        return std::nullopt;
      }
      auto re = std::make_unique<RE2>(*pattern, RuleOptions(kMaxMemPerRule));
      std::string why;
      if (!re->ok() || impl->set.Add(*pattern, &why) < 0) {
        *error = where + " " + Quoted(*pattern) + ": " + (re->ok() ? why : re->error());
        return std::nullopt;
      }
      impl->classes.push_back(*c);
      impl->each.push_back(std::move(re));
    }
  }
  if (!impl->set.Compile()) {
    *error = "rules: the expressions together are too large for RE2";
    return std::nullopt;
  }
  return Classifier(std::move(impl));
}

const Classifier& Classifier::Default() {
  static const Classifier* const kDefault = [] {
    std::string error;
    std::optional<Classifier> c = FromToml(DefaultBounceRules(), &error);
    SPATE_CHECK(c.has_value());  // tests/unit/bounce_class_test.cc compiles it too
    return new Classifier(std::move(*c));
  }();
  return *kDefault;
}

BounceClass Classifier::Classify(uint16_t code, std::string_view enhanced,
                                 std::string_view text) const {
  // "CODE ENHANCED text", made safe and cut to kMaxInput on the stack: classifying is on the
  // path of every failure, and allocates nothing.
  std::array<char, kMaxInput> buf;
  size_t n = 0;
  auto put = [&](std::string_view s) {
    for (char c : s) {
      if (n == buf.size())
        return;
      const auto u = static_cast<unsigned char>(c);
      buf[n++] = (u < 32 || u == 127) ? ' ' : c;
    }
  };
  if (code != 0) {
    char digits[8];
    const auto r = std::to_chars(digits, digits + sizeof(digits), code);
    put(std::string_view(digits, static_cast<size_t>(r.ptr - digits)));
    put(" ");
  }
  if (!enhanced.empty()) {
    put(enhanced);
    put(" ");
  }
  put(text);
  return Match(std::string_view(buf.data(), n));
}

BounceClass Classifier::Classify(std::string_view line) const {
  std::array<char, kMaxInput> buf;
  const size_t n = std::min(line.size(), kMaxInput);
  for (size_t i = 0; i < n; ++i) {
    const auto u = static_cast<unsigned char>(line[i]);
    buf[i] = (u < 32 || u == 127) ? ' ' : line[i];
  }
  return Match(std::string_view(buf.data(), n));
}

BounceClass Classifier::Match(std::string_view line) const {
  if (impl_->classes.empty())
    return BounceClass::kUncategorized;
  thread_local std::vector<int> hits;  // kept: no allocation per match once it has grown
  hits.clear();
  RE2::Set::ErrorInfo info{RE2::Set::kNoError};
  if (impl_->set.Match(line, &hits, &info)) {
    const int first = *std::min_element(hits.begin(), hits.end());
    return impl_->classes[static_cast<size_t>(first)];
  }
  if (info.kind == RE2::Set::kNoError)
    return BounceClass::kUncategorized;
  // The set's DFA ran out of its memory (an unusual rule set on an unusual line): each rule
  // alone, in order, still in linear time.
  for (size_t i = 0; i < impl_->each.size(); ++i) {
    if (RE2::PartialMatch(line, *impl_->each[i]))
      return impl_->classes[i];
  }
  return BounceClass::kUncategorized;
}

}  // namespace spate::delivery
