// delivery/shaping.cc
#include "delivery/shaping.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>
#include <utility>

#include "core/toml_check.h"

// toml++ header-only and without exceptions, as in core/daemon/config.cc (the same macros in
// every translation unit that includes it, so its inline functions are one definition).
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include <re2/re2.h>
#include <toml++/toml.h>

namespace spate::delivery {
namespace {

constexpr double kMaxDurationSeconds = 10.0 * 365 * 86400;
constexpr int64_t kMaxCount = 1000000;
// Bounds on a hostile or mistaken document: RE2's memory per expression, and a rule count.
constexpr int64_t kMaxRegexMem = 1 << 20;
constexpr size_t kMaxRules = 4096;

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
bool IsLower(char c) {
  return c >= 'a' && c <= 'z';
}

// Lower-case ASCII, without one trailing dot: how names are compared.
std::string Canonical(std::string_view name) {
  if (!name.empty() && name.back() == '.')
    name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Names each rule of a layer by the layer (Automation::label()).
void SetOrigin(ShapingValues* values, const std::string& origin) {
  for (Automation& a : values->automation)
    a.origin = origin;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// For messages: printable ASCII only, cut at 200 octets.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 32 && u < 127) ? c : '?';
    if (out.size() >= 200) {
      out += "...";
      break;
    }
  }
  return out;
}

std::optional<TlsMode> TlsFromName(std::string_view name) {
  if (name == "Opportunistic" || name == "OpportunisticInsecure")
    return TlsMode::kOpportunistic;
  if (name == "Required")
    return TlsMode::kVerify;
  if (name == "RequiredInsecure")
    return TlsMode::kRequired;
  if (name == "Disabled")
    return TlsMode::kOff;
  return std::nullopt;
}

std::optional<double> UnitSeconds(std::string_view unit) {
  static constexpr std::pair<std::string_view, double> kUnits[] = {
      {"ms", 0.001},   {"s", 1},     {"sec", 1},     {"secs", 1},     {"second", 1},
      {"seconds", 1},  {"m", 60},    {"min", 60},    {"mins", 60},    {"minute", 60},
      {"minutes", 60}, {"h", 3600},  {"hr", 3600},   {"hrs", 3600},   {"hour", 3600},
      {"hours", 3600}, {"d", 86400}, {"day", 86400}, {"days", 86400},
  };
  for (const auto& [name, seconds] : kUnits) {
    if (name == unit)
      return seconds;
  }
  return std::nullopt;
}

std::optional<unsigned> ParseCount(std::string_view text) {
  if (text.empty() || text.size() > 7 || !std::all_of(text.begin(), text.end(), IsDigit))
    return std::nullopt;
  int64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  if (v < 1 || v > kMaxCount)
    return std::nullopt;
  return static_cast<unsigned>(v);
}

// What a key holds, and where in ShapingValues.
enum class Kind : uint8_t { kCount, kRate, kDuration, kTls };

struct KeySpec {
  std::string_view name;
  Kind kind;
  bool provider_only = false;
  std::optional<unsigned> ShapingValues::*count = nullptr;
  std::optional<Rate> ShapingValues::*rate = nullptr;
  std::optional<Seconds> ShapingValues::*duration = nullptr;
  std::optional<TlsMode> ShapingValues::*tls = nullptr;
};

KeySpec CountKey(std::string_view name, std::optional<unsigned> ShapingValues::*m,
                 bool provider_only = false) {
  KeySpec k{name, Kind::kCount, provider_only};
  k.count = m;
  return k;
}
KeySpec RateKey(std::string_view name, std::optional<Rate> ShapingValues::*m,
                bool provider_only = false) {
  KeySpec k{name, Kind::kRate, provider_only};
  k.rate = m;
  return k;
}
KeySpec DurationKey(std::string_view name, std::optional<Seconds> ShapingValues::*m) {
  KeySpec k{name, Kind::kDuration};
  k.duration = m;
  return k;
}

const std::vector<KeySpec>& Keys() {
  static const std::vector<KeySpec>* const kKeys = [] {
    KeySpec tls{"enable_tls", Kind::kTls};
    tls.tls = &ShapingValues::enable_tls;
    return new std::vector<KeySpec>{
        CountKey("connection_limit", &ShapingValues::connection_limit),
        CountKey("max_deliveries_per_connection", &ShapingValues::max_deliveries_per_connection),
        CountKey("max_recipients_per_batch", &ShapingValues::max_recipients_per_batch),
        RateKey("max_connection_rate", &ShapingValues::max_connection_rate),
        RateKey("max_message_rate", &ShapingValues::max_message_rate),
        DurationKey("idle_timeout", &ShapingValues::idle_timeout),
        DurationKey("retry_interval", &ShapingValues::retry_interval),
        DurationKey("max_retry_interval", &ShapingValues::max_retry_interval),
        DurationKey("max_age", &ShapingValues::max_age),
        tls,
        CountKey("provider_connection_limit", &ShapingValues::provider_connection_limit, true),
        RateKey("provider_max_message_rate", &ShapingValues::provider_max_message_rate, true),
    };
  }();
  return *kKeys;
}

const KeySpec* FindKey(std::string_view name) {
  for (const KeySpec& k : Keys()) {
    if (k.name == name)
      return &k;
  }
  return nullptr;
}

std::string_view KindWants(Kind kind) {
  switch (kind) {
    case Kind::kCount:
      return "must be an integer from 1 to 1000000";
    case Kind::kRate:
      return "must be a rate such as \"100/min\", \"20/s\" or \"5/h\"";
    case Kind::kDuration:
      return "must be a duration such as \"30s\", \"10m\", \"1h\" or a number of seconds";
    case Kind::kTls:
      return "must be one of Opportunistic, OpportunisticInsecure, Required, RequiredInsecure, "
             "Disabled";
  }
  return "is invalid";
}

// One key from its text (SetConfig's value).
bool SetText(ShapingValues* v, const KeySpec& k, std::string_view text) {
  switch (k.kind) {
    case Kind::kCount:
      if (auto n = ParseCount(text)) {
        v->*k.count = *n;
        return true;
      }
      return false;
    case Kind::kRate:
      if (auto r = ParseRate(text)) {
        v->*k.rate = *r;
        return true;
      }
      return false;
    case Kind::kDuration:
      if (auto d = ParseDuration(text)) {
        v->*k.duration = *d;
        return true;
      }
      return false;
    case Kind::kTls:
      if (auto t = TlsFromName(text)) {
        v->*k.tls = *t;
        return true;
      }
      return false;
  }
  return false;
}

// One key from its TOML value: counts are integers, rates and TLS names strings, durations
// strings or numbers of seconds.
bool SetNode(ShapingValues* v, const KeySpec& k, const toml::node& n) {
  switch (k.kind) {
    case Kind::kCount: {
      const toml::value<int64_t>* i = n.as_integer();
      if (i == nullptr || i->get() < 1 || i->get() > kMaxCount)
        return false;
      v->*k.count = static_cast<unsigned>(i->get());
      return true;
    }
    case Kind::kDuration: {
      double seconds;
      if (const toml::value<int64_t>* i = n.as_integer()) {
        seconds = static_cast<double>(i->get());
      } else if (const toml::value<double>* f = n.as_floating_point()) {
        seconds = f->get();
      } else {
        break;
      }
      if (!(seconds >= 0 && seconds <= kMaxDurationSeconds))  // NaN too
        return false;
      v->*k.duration = Seconds(seconds);
      return true;
    }
    case Kind::kRate:
    case Kind::kTls:
      break;
  }
  const toml::value<std::string>* s = n.as_string();
  return s != nullptr && SetText(v, k, s->get());
}

// A TOML value as SetConfig text: strings as they are, numbers in decimal.
std::optional<std::string> ValueText(const toml::node& n) {
  if (const toml::value<std::string>* s = n.as_string())
    return s->get();
  if (const toml::value<int64_t>* i = n.as_integer())
    return std::to_string(i->get());
  if (const toml::value<double>* f = n.as_floating_point()) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof(buf), f->get());
    if (r.ec != std::errc())
      return std::nullopt;
    return std::string(buf, r.ptr);
  }
  return std::nullopt;
}

uint32_t LineOf(const toml::node& n) {
  return n.source().begin.line;
}

// A table's entries in document order: toml++ keeps them sorted by name.
struct Entry {
  std::pair<uint32_t, uint32_t> at;
  std::string_view key;
  const toml::node* value;
  uint32_t line() const { return at.first; }
};

std::vector<Entry> InOrder(const toml::table& t) {
  std::vector<Entry> entries;
  entries.reserve(t.size());
  for (const auto& [k, v] : t) {
    const toml::source_position p = k.source().begin ? k.source().begin : v.source().begin;
    entries.push_back({{p.line, p.column}, k.str(), &v});
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.at < b.at; });
  return entries;
}

RE2::Options RegexOptions() {
  RE2::Options o;
  o.set_log_errors(false);  // errors go back to the caller; nothing is written to stderr
  o.set_max_mem(kMaxRegexMem);
  return o;
}

class Parser {
 public:
  Parser(std::string* error, std::vector<std::string>* warnings)
      : error_(error), warnings_(warnings) {}

  bool ok() const { return ok_; }

  bool Fail(uint32_t line, const std::string& what) {
    if (ok_)
      *error_ = "line " + std::to_string(line) + ": " + what;
    ok_ = false;
    return false;
  }

  // One warning per distinct `key` over the document, at its first place.
  void Warn(uint32_t line, std::string_view key, const std::string& where,
            std::string_view what = "is not supported; ignored") {
    if (!warned_.insert(std::string(key)).second)
      return;
    pending_.emplace_back(line, "line " + std::to_string(line) + ": key '" + Printable(key) +
                                    "' in " + where + " " + std::string(what));
  }

  // The warnings, in line order (a rule's actions are looked at after its other keys).
  void Finish() {
    std::stable_sort(pending_.begin(), pending_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    if (warnings_ == nullptr)
      return;
    for (auto& [line, text] : pending_)
      warnings_->push_back(std::move(text));
  }

  // The keys of one layer (["default"], a domain or a provider) into `out`; a provider's
  // match list into `match` (null: not a provider).
  bool Values(const toml::table& t, const std::string& where, ShapingValues* out,
              std::vector<ProviderMatch>* match, const std::string& automation_where) {
    for (const Entry& e : InOrder(t)) {
      if (!ok_)
        return false;
      if (e.key == "automation") {
        const toml::array* list = e.value->as_array();
        if (list == nullptr || !list->is_array_of_tables()) {
          return Fail(e.line(),
                      where + " automation must be an array of tables, " + automation_where);
        }
        for (const toml::node& rule : *list)
          Automations(*rule.as_table(), automation_where, &out->automation);
        continue;
      }
      if (e.key == "match" && match != nullptr) {
        Matches(*e.value, where, e.line(), match);
        continue;
      }
      const KeySpec* k = FindKey(e.key);
      if (k != nullptr && k->provider_only && match == nullptr) {
        Warn(e.line(), e.key, where, "is only for a [provider] table; ignored");
        continue;
      }
      if (k != nullptr) {
        if (!SetNode(out, *k, *e.value))
          return Fail(LineOf(*e.value),
                      where + " " + std::string(e.key) + " " + std::string(KindWants(k->kind)));
        continue;
      }
      const toml::table* sub = e.value->as_table();
      if (sub != nullptr && !sub->is_inline() && e.key != "sources") {
        // [example.com] unquoted is table "example" holding a table "com".
        return Fail(e.line(), where + " has a section '" + Printable(e.key) +
                                  "' spate does not know; a domain with dots is quoted: "
                                  "[\"example.com\"]");
      }
      Warn(e.line(), e.key, where);
    }
    return ok_;
  }

 private:
  void Matches(const toml::node& n, const std::string& where, uint32_t line,
               std::vector<ProviderMatch>* out) {
    const std::string bad = where +
                            " match must be an array of {MXSuffix = \"...\"} or "
                            "{DomainSuffix = \"...\"} tables";
    const toml::array* list = n.as_array();
    if (list == nullptr || list->empty()) {
      Fail(line, bad);
      return;
    }
    for (const toml::node& item : *list) {
      const toml::table* t = item.as_table();
      if (t == nullptr || t->size() != 1) {
        Fail(LineOf(item), bad);
        return;
      }
      const auto [k, v] = *t->begin();  // a proxy of references
      const toml::value<std::string>* s = v.as_string();
      const std::string suffix = s != nullptr ? Canonical(s->get()) : std::string();
      if (k.str() == "HostName") {
        Warn(LineOf(item), "match HostName", where);
        continue;
      }
      ProviderMatch m;
      if (k.str() == "MXSuffix") {
        m.kind = ProviderMatch::kMxSuffix;
      } else if (k.str() == "DomainSuffix") {
        m.kind = ProviderMatch::kDomainSuffix;
      } else {
        Fail(LineOf(item), where + " match: unknown kind '" + Printable(k.str()) +
                               "' (MXSuffix or DomainSuffix)");
        return;
      }
      if (suffix.empty()) {
        Fail(LineOf(item),
             where + " match " + std::string(k.str()) + " must be a non-empty string");
        return;
      }
      m.suffix = suffix;
      out->push_back(std::move(m));
    }
  }

  // One [[...automation]] table: one rule per action it lists.
  void Automations(const toml::table& t, const std::string& where, std::vector<Automation>* out) {
    const uint32_t line = LineOf(t);
    Automation rule;
    rule.line = line;
    bool has_regex = false;
    bool has_duration = false;
    const toml::node* actions = nullptr;
    for (const Entry& e : InOrder(t)) {
      if (e.key == "regex") {
        has_regex = Regex(*e.value, where, &rule.regex);
      } else if (e.key == "action") {
        actions = e.value;
      } else if (e.key == "duration") {
        ShapingValues scratch;
        if (!SetNode(&scratch, *FindKey("idle_timeout"), *e.value) ||
            scratch.idle_timeout->count() <= 0) {
          Fail(LineOf(*e.value), where +
                                     " duration must be a duration such as \"30m\" or "
                                     "\"1h\", more than 0");
        } else {
          rule.duration = *scratch.idle_timeout;
          has_duration = true;
        }
      } else if (e.key == "trigger") {
        Trigger(*e.value, where, &rule);
      } else {
        Warn(e.line(), e.key, where);
      }
      if (!ok_)
        return;
    }
    if (!has_regex) {
      Fail(line, where + " has no regex");
      return;
    }
    if (actions == nullptr) {
      Fail(line, where + " has no action");
      return;
    }
    if (!has_duration) {
      Fail(line, where + " has no duration");
      return;
    }
    if (const toml::array* list = actions->as_array()) {
      if (list->empty()) {
        Fail(LineOf(*actions), where + " action is an empty array");
        return;
      }
      for (const toml::node& a : *list) {
        if (!Action(a, where, rule, out))
          return;
      }
    } else {
      Action(*actions, where, rule, out);
    }
  }

  bool Regex(const toml::node& n, const std::string& where, std::string* out) {
    std::vector<std::string_view> sources;
    if (const toml::value<std::string>* s = n.as_string()) {
      sources.push_back(s->get());
    } else if (const toml::array* list = n.as_array(); list != nullptr && !list->empty()) {
      for (const toml::node& item : *list) {
        const toml::value<std::string>* s2 = item.as_string();
        if (s2 == nullptr)
          return Fail(LineOf(item), where + " regex must be a string or an array of strings");
        sources.push_back(s2->get());
      }
    } else {
      return Fail(LineOf(n), where + " regex must be a string or an array of strings");
    }
    for (std::string_view source : sources) {
      const RE2 re(source, RegexOptions());
      if (!re.ok())
        return Fail(LineOf(n), where + " regex \"" + Printable(source) + "\": " + re.error());
    }
    if (sources.size() == 1) {
      *out = std::string(sources[0]);
    } else {
      out->clear();
      for (std::string_view source : sources) {
        if (!out->empty())
          *out += "|";
        *out += "(?:" + std::string(source) + ")";
      }
      const RE2 all(*out, RegexOptions());
      if (!all.ok())
        return Fail(LineOf(n), where + " regex: the expressions together: " + all.error());
    }
    return true;
  }

  void Trigger(const toml::node& n, const std::string& where, Automation* rule) {
    if (const toml::value<std::string>* s = n.as_string(); s != nullptr && s->get() == "Immediate")
      return;
    const toml::table* t = n.as_table();
    if (t != nullptr && t->size() == 1) {
      const toml::value<std::string>* s = (*t)["Threshold"].as_string();
      if (s != nullptr) {
        if (std::optional<Rate> r = ParseRate(s->get())) {
          rule->threshold = r->count;
          rule->threshold_per_seconds = r->per_seconds;
          return;
        }
      }
    }
    Fail(LineOf(n), where +
                        " trigger must be \"Immediate\" or {Threshold = \"N/unit\"}, "
                        "such as {Threshold = \"5/hr\"}");
  }

  // False on an error (a refused action is a warning, and true).
  bool Action(const toml::node& n, const std::string& where, const Automation& base,
              std::vector<Automation>* out) {
    static constexpr std::string_view kKumoOnly[] = {
        "SuspendTenant", "SuspendCampaign", "BounceTenant", "BounceCampaign", "SetDomainConfig",
    };
    auto kumo_only = [](std::string_view name) {
      return std::find(std::begin(kKumoOnly), std::end(kKumoOnly), name) != std::end(kKumoOnly);
    };
    const std::string unknown = where +
                                " action must be \"Suspend\", \"Bounce\" or "
                                "{SetConfig = {name = \"...\", value = ...}}";
    Automation rule = base;
    if (const toml::value<std::string>* s = n.as_string()) {
      if (s->get() == "Suspend") {
        rule.action = Automation::Action::kSuspend;
      } else if (s->get() == "Bounce") {
        rule.action = Automation::Action::kBounce;
      } else if (kumo_only(s->get())) {
        Warn(LineOf(n), "action " + s->get(), where, "is not supported; the action is ignored");
        return true;
      } else {
        return Fail(LineOf(n), unknown);
      }
    } else if (const toml::table* t = n.as_table(); t != nullptr && t->size() == 1) {
      const auto [k, v] = *t->begin();  // a proxy of references
      if (kumo_only(k.str())) {
        Warn(LineOf(n), "action " + std::string(k.str()), where,
             "is not supported; the action is ignored");
        return true;
      }
      const toml::table* set = v.as_table();
      if (k.str() != "SetConfig" || set == nullptr)
        return Fail(LineOf(n), unknown);
      const toml::value<std::string>* name = (*set)["name"].as_string();
      const toml::node* value = set->get("value");
      if (name == nullptr || value == nullptr || set->size() != 2)
        return Fail(LineOf(n), where + " SetConfig must be {name = \"...\", value = ...}");
      const KeySpec* key = FindKey(name->get());
      if (key == nullptr || key->provider_only) {
        Warn(LineOf(n), "SetConfig " + name->get(), where,
             "is not a setting spate shapes; the action is ignored");
        return true;
      }
      const std::optional<std::string> text = ValueText(*value);
      ShapingValues scratch;
      if (!text || !scratch.Set(name->get(), *text)) {
        return Fail(LineOf(*value), where + " SetConfig " + name->get() + " value " +
                                        std::string(KindWants(key->kind)));
      }
      rule.action = Automation::Action::kSetConfig;
      rule.config_name = name->get();
      rule.config_value = *text;
    } else {
      return Fail(LineOf(n), unknown);
    }
    if (++rules_ > kMaxRules)
      return Fail(LineOf(n), "more than " + std::to_string(kMaxRules) + " automation rules");
    rule.compiled = std::make_shared<const RE2>(rule.regex, RegexOptions());  // checked above
    out->push_back(std::move(rule));
    return true;
  }

  std::string* error_;
  std::vector<std::string>* warnings_;
  std::set<std::string> warned_;
  std::vector<std::pair<uint32_t, std::string>> pending_;
  size_t rules_ = 0;
  bool ok_ = true;
};

// toml++ 3.3 can still reach TOML_UNREACHABLE on a non-ASCII character that CheckTomlText
// lets through ("2=+.\"\xce\xbc": a quote right after a bad bare value, found by
// tests/fuzz/shaping_fuzz). A shaping file needs none (domains are A-labels, xn--...), so
// non-ASCII is refused everywhere but in a line that is a comment alone.
bool CheckAscii(std::string_view text, std::string* error) {
  uint32_t line = 1;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos)
      end = text.size();
    const std::string_view l = text.substr(start, end - start);
    const size_t first = l.find_first_not_of(" \t");
    const bool comment = first != std::string_view::npos && l[first] == '#';
    if (!comment && std::any_of(l.begin(), l.end(),
                                [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
      *error = "line " + std::to_string(line) +
               ": a non-ASCII character (a shaping file is ASCII outside comment lines; a "
               "domain is written as its A-label, xn--...)";
      return false;
    }
    start = end + 1;
    ++line;
  }
  return true;
}

template <typename T>
void Take(std::optional<T>* mine, const std::optional<T>& over) {
  if (over)
    *mine = over;
}

}  // namespace

std::optional<Rate> ParseRate(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash > 10)
    return std::nullopt;
  const std::string_view digits = text.substr(0, slash);
  if (!std::all_of(digits.begin(), digits.end(), IsDigit))
    return std::nullopt;
  uint64_t n = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (n < 1 || n > std::numeric_limits<uint32_t>::max())
    return std::nullopt;
  static constexpr std::pair<std::string_view, double> kUnits[] = {
      {"s", 1},    {"sec", 1},   {"second", 1},  {"m", 60},    {"min", 60},    {"minute", 60},
      {"h", 3600}, {"hr", 3600}, {"hour", 3600}, {"d", 86400}, {"day", 86400},
  };
  const std::string_view unit = text.substr(slash + 1);
  for (const auto& [name, seconds] : kUnits) {
    if (name == unit)
      return Rate{static_cast<uint32_t>(n), seconds};
  }
  return std::nullopt;
}

std::optional<Seconds> ParseDuration(std::string_view text) {
  double total = 0;
  size_t i = 0;
  bool first = true;
  while (i < text.size()) {
    if (!first) {  // blanks between parts, never at the end
      while (i < text.size() && text[i] == ' ')
        ++i;
      if (i == text.size())
        return std::nullopt;
    }
    const size_t start = i;
    while (i < text.size() && IsDigit(text[i]))
      ++i;
    if (i == start)
      return std::nullopt;
    if (i < text.size() && text[i] == '.') {
      const size_t fraction = ++i;
      while (i < text.size() && IsDigit(text[i]))
        ++i;
      if (i == fraction)
        return std::nullopt;
    }
    double value = 0;
    const auto r = std::from_chars(text.data() + start, text.data() + i, value);
    if (r.ec != std::errc() || r.ptr != text.data() + i)
      return std::nullopt;
    size_t unit_start = i;
    while (unit_start < text.size() && text[unit_start] == ' ')
      ++unit_start;
    size_t unit_end = unit_start;
    while (unit_end < text.size() && IsLower(text[unit_end]))
      ++unit_end;
    double scale;
    if (unit_end == unit_start) {
      if (!first || unit_start != text.size() || unit_start != i)
        return std::nullopt;  // a bare number is the whole text: "90", not "1h 30"
      scale = 1;
    } else {
      const std::optional<double> unit =
          UnitSeconds(text.substr(unit_start, unit_end - unit_start));
      if (!unit)
        return std::nullopt;
      scale = *unit;
    }
    total += value * scale;
    if (!(total <= kMaxDurationSeconds))
      return std::nullopt;
    i = unit_end;
    first = false;
  }
  if (first)
    return std::nullopt;
  return Seconds(total);
}

void ShapingValues::Overlay(const ShapingValues& over) {
  Take(&connection_limit, over.connection_limit);
  Take(&max_deliveries_per_connection, over.max_deliveries_per_connection);
  Take(&max_recipients_per_batch, over.max_recipients_per_batch);
  Take(&max_connection_rate, over.max_connection_rate);
  Take(&max_message_rate, over.max_message_rate);
  Take(&idle_timeout, over.idle_timeout);
  Take(&retry_interval, over.retry_interval);
  Take(&max_retry_interval, over.max_retry_interval);
  Take(&max_age, over.max_age);
  Take(&enable_tls, over.enable_tls);
  Take(&provider_connection_limit, over.provider_connection_limit);
  Take(&provider_max_message_rate, over.provider_max_message_rate);
  if (!over.automation.empty())
    automation.insert(automation.begin(), over.automation.begin(), over.automation.end());
}

bool ShapingValues::Set(std::string_view name, std::string_view value) {
  const KeySpec* k = FindKey(name);
  return k != nullptr && !k->provider_only && SetText(this, *k, value);
}

std::optional<Shaping> Shaping::FromToml(std::string_view text, std::string* error,
                                         std::vector<std::string>* warnings) {
  error->clear();
  if (warnings != nullptr)
    warnings->clear();
  if (!CheckTomlText(text, error) || !CheckAscii(text, error))
    return std::nullopt;
  toml::parse_result parsed = toml::parse(text);
  if (!parsed) {
    const auto& e = parsed.error();
    *error = "line " + std::to_string(e.source().begin.line) + ": " + std::string(e.description());
    return std::nullopt;
  }
  Parser p(error, warnings);
  Shaping s;
  // Warnings reach *warnings only from p.Finish(), once the document is accepted.
  auto fail = [&](uint32_t line, const std::string& what) {
    p.Fail(line, what);
    return std::nullopt;
  };
  for (const Entry& e : InOrder(parsed.table())) {
    const toml::table* t = e.value->as_table();
    const std::string name = Printable(e.key);
    if (t == nullptr)
      return fail(e.line(), "top-level key '" + name +
                                "' is not a table ([\"default\"], "
                                "[provider.\"name\"] or [\"example.com\"])");
    if (e.key == "default") {
      p.Values(*t, "[\"default\"]", &s.default_, nullptr, "[[\"default\".automation]]");
      SetOrigin(&s.default_, "default");
    } else if (e.key == "provider") {
      for (const Entry& pe : InOrder(*t)) {
        const toml::table* pt = pe.value->as_table();
        const std::string pname = Printable(pe.key);
        const std::string where = "[provider.\"" + pname + "\"]";
        if (pt == nullptr)
          return fail(pe.line(), "provider '" + pname + "' is not a table: " + where);
        Provider provider;
        provider.name = std::string(pe.key);
        bool has_match = pt->contains("match");
        if (!p.Values(*pt, where, &provider.values, &provider.match,
                      "[[provider.\"" + pname + "\".automation]]"))
          break;
        if (!has_match)
          return fail(pe.line(), where + " has no match = [{MXSuffix = \"...\"}, ...]");
        SetOrigin(&provider.values, "provider." + provider.name);
        for (const ProviderMatch& m : provider.match)
          s.has_domain_suffix_ = s.has_domain_suffix_ || m.kind == ProviderMatch::kDomainSuffix;
        s.providers_.push_back(std::move(provider));
      }
    } else {
      const std::string domain = Canonical(e.key);
      const std::string where = "[\"" + name + "\"]";
      if (domain.empty())
        return fail(e.line(), "an empty domain name");
      auto it = std::lower_bound(s.domains_.begin(), s.domains_.end(), domain,
                                 [](const auto& a, const std::string& b) { return a.first < b; });
      if (it != s.domains_.end() && it->first == domain)
        return fail(e.line(), where + " is the domain " + Printable(domain) + " a second time");
      it = s.domains_.insert(it, {domain, ShapingValues{}});
      p.Values(*t, where, &it->second, nullptr, "[[\"" + name + "\".automation]]");
      SetOrigin(&it->second, domain);
    }
    if (!p.ok())
      return std::nullopt;
  }
  p.Finish();
  return s;
}

bool Automation::Matches(std::string_view reply) const {
  return compiled != nullptr && RE2::PartialMatch(reply, *compiled);
}

const ShapingValues* Shaping::DomainValues(std::string_view domain) const {
  if (domains_.empty())
    return nullptr;
  const bool canonical =
      !domain.ends_with('.') &&
      std::none_of(domain.begin(), domain.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
  if (canonical) {
    auto it = std::lower_bound(domains_.begin(), domains_.end(), domain,
                               [](const auto& a, std::string_view b) { return a.first < b; });
    return it != domains_.end() && it->first == domain ? &it->second : nullptr;
  }
  const std::string d = Canonical(domain);
  auto it = std::lower_bound(domains_.begin(), domains_.end(), d,
                             [](const auto& a, const std::string& b) { return a.first < b; });
  return it != domains_.end() && it->first == d ? &it->second : nullptr;
}

const Provider* Shaping::ProviderFor(std::string_view domain,
                                     const std::vector<std::string>& mx_hosts) const {
  const std::string d = Canonical(domain);
  std::vector<std::string> hosts;
  hosts.reserve(mx_hosts.size());
  for (const std::string& h : mx_hosts)
    hosts.push_back(Canonical(h));
  for (const Provider& p : providers_) {
    bool has_mx_rules = false;
    for (const ProviderMatch& m : p.match) {
      if (m.kind == ProviderMatch::kDomainSuffix && EndsWith(d, m.suffix))
        return &p;
      has_mx_rules = has_mx_rules || m.kind == ProviderMatch::kMxSuffix;
    }
    if (!has_mx_rules || hosts.empty())
      continue;
    const bool all = std::all_of(hosts.begin(), hosts.end(), [&](const std::string& h) {
      return std::any_of(p.match.begin(), p.match.end(), [&](const ProviderMatch& m) {
        return m.kind == ProviderMatch::kMxSuffix && EndsWith(h, m.suffix);
      });
    });
    if (all)
      return &p;
  }
  return nullptr;
}

ShapingValues Shaping::Resolve(std::string_view domain,
                               const std::vector<std::string>& mx_hosts) const {
  ShapingValues out = default_;
  if (const Provider* p = ProviderFor(domain, mx_hosts))
    out.Overlay(p->values);
  if (const ShapingValues* own = DomainValues(domain))
    out.Overlay(*own);
  return out;
}

}  // namespace spate::delivery
