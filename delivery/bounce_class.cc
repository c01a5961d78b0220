// delivery/bounce_class.cc
#include "delivery/bounce_class.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/toml_check.h"

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
  if (!CheckTomlText(text, error))
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

namespace {

// Addresses in a reply say nothing of why it failed, and must not decide it: the text echoes
// the recipient ("550 5.1.1 <ssl@example.com>: User unknown" is no TLS failure, and
// <virus-lab@...> no virus). Every word with an '@' in it becomes x's, '@' and length kept.
void MaskAddresses(char* buf, size_t n) {
  constexpr std::string_view kDelimiters = " <>()[],;:\"'";
  for (size_t i = 0; i < n;) {
    while (i < n && kDelimiters.find(buf[i]) != std::string_view::npos)
      ++i;
    size_t end = i;
    bool address = false;
    for (; end < n && kDelimiters.find(buf[end]) == std::string_view::npos; ++end)
      address = address || buf[end] == '@';
    for (size_t k = i; address && k < end; ++k) {
      if (buf[k] != '@')
        buf[k] = 'x';
    }
    i = end;
  }
}

}  // namespace

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
  MaskAddresses(buf.data(), n);
  return Match(std::string_view(buf.data(), n));
}

BounceClass Classifier::Classify(std::string_view line) const {
  std::array<char, kMaxInput> buf;
  const size_t n = std::min(line.size(), kMaxInput);
  for (size_t i = 0; i < n; ++i) {
    const auto u = static_cast<unsigned char>(line[i]);
    buf[i] = (u < 32 || u == 127) ? ' ' : line[i];
  }
  MaskAddresses(buf.data(), n);
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
