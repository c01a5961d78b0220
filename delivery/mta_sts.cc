// delivery/mta_sts.cc: MTA-STS records, policies and MX matching (RFC 8461). See mta_sts.h.
#include "delivery/mta_sts.h"

#include <charconv>
#include <system_error>
#include <utility>

#include "core/smtp/ascii.h"

namespace spate::delivery::sts {
namespace {

constexpr char Lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

bool IsAlnum(char c) {
  return IsAlpha(c) || IsDigit(c);
}

bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}

std::string_view TrimWsp(std::string_view s) {
  while (!s.empty() && IsWsp(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && IsWsp(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string_view DropTrailingDot(std::string_view s) {
  if (!s.empty() && s.back() == '.') {
    s.remove_suffix(1);
  }
  return s;
}

using smtp::EqualsNoCase;  // ASCII case folding (core/smtp/ascii.h)

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = Lower(c);
  }
  return out;
}

// sts-id (RFC 8461 §3.1): 1*32(ALPHA / DIGIT).
bool IsStsId(std::string_view id) {
  if (id.empty() || id.size() > 32) {
    return false;
  }
  for (char c : id) {
    if (!IsAlnum(c)) {
      return false;
    }
  }
  return true;
}

// sts-ext-name and sts-policy-ext-name (RFC 8461 §3.1, §3.2):
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
bool IsExtName(std::string_view name) {
  if (name.empty() || name.size() > 32 || !IsAlnum(name.front())) {
    return false;
  }
  for (char c : name) {
    if (!IsAlnum(c) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

// sts-ext-value (RFC 8461 §3.1): 1*(%x21-3A / %x3C / %x3E-7E), printable ASCII but '=' and ';'.
bool IsExtValue(std::string_view value) {
  if (value.empty()) {
    return false;
  }
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x21 || c > 0x7e || c == '=' || c == ';') {
      return false;
    }
  }
  return true;
}

// sts-policy-mx-value (RFC 8461 §3.2): ["*."] Domain, Domain as RFC 5321 §4.1.2 (labels of
// letters, digits and '-'; '_' too, which real MX names carry). At most 253 octets.
bool IsMxPattern(std::string_view p) {
  if (p.size() >= 2 && p[0] == '*' && p[1] == '.') {
    p.remove_prefix(2);
  }
  if (p.empty() || p.size() > 253) {
    return false;
  }
  size_t label = 0;
  for (char c : p) {
    if (c == '.') {
      if (label == 0) {
        return false;
      }
      label = 0;
    } else if (IsAlnum(c) || c == '-' || c == '_') {
      if (++label > 63) {
        return false;
      }
    } else {
      return false;
    }
  }
  return label != 0;
}

// A non-negative decimal of any length; past `limit` it saturates at `limit`.
bool ParseClampedDecimal(std::string_view s, int64_t limit, int64_t* out) {
  if (s.empty()) {
    return false;
  }
  int64_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) {
      return false;
    }
    if (v <= limit) {  // stops growing once over the limit: no overflow
      v = v * 10 + (c - '0');
    }
  }
  *out = v > limit ? limit : v;
  return true;
}

// A canonical int64 ("0", "-12", "345"; no '+', no leading zero, no "-0"), as std::to_string
// writes it: DecodePolicy() accepts only what EncodePolicy() writes.
bool ParseCanonicalInt64(std::string_view s, int64_t* out) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
    return false;
  }
  if (std::to_string(v) != s) {
    return false;
  }
  *out = v;
  return true;
}

std::optional<Policy::Mode> ModeFromName(std::string_view name) {
  if (name == "enforce") {
    return Policy::Mode::kEnforce;
  }
  if (name == "testing") {
    return Policy::Mode::kTesting;
  }
  if (name == "none") {
    return Policy::Mode::kNone;
  }
  return std::nullopt;
}

// Whether a TXT record is an STSv1 candidate for PickStsTxt(): "v=STSv1", then ';', WSP or the
// end (so that "v=STSv10;" is a record of some other kind).
bool StartsAsStsV1(std::string_view txt) {
  constexpr std::string_view kV = "v=STSv1";
  if (txt.substr(0, kV.size()) != kV) {
    return false;
  }
  return txt.size() == kV.size() || txt[kV.size()] == ';' || IsWsp(txt[kV.size()]);
}

void SetError(std::string* error, std::string what) {
  if (error != nullptr) {
    *error = std::move(what);
  }
}

}  // namespace

std::optional<std::string> ParseStsTxt(std::string_view txt) {
  // sts-text-record = sts-version 1*(*WSP %x3B *WSP sts-field) [%x3B] (RFC 8461 §3.1). WSP at
  // either end is tolerated too: some zone editors add it, and it is unambiguous.
  txt = TrimWsp(txt);
  if (!txt.empty() && txt.back() == ';') {
    txt.remove_suffix(1);
  }
  std::optional<std::string> id;
  bool first = true;
  while (true) {
    const size_t semi = txt.find(';');
    const std::string_view field = TrimWsp(txt.substr(0, semi));
    if (first) {
      if (field != "v=STSv1") {  // %s"v=STSv1": exact, case-sensitive, and first
        return std::nullopt;
      }
      first = false;
    } else {
      const size_t eq = field.find('=');
      if (eq == std::string_view::npos) {
        return std::nullopt;  // an empty field (";;") or one with no '='
      }
      const std::string_view name = field.substr(0, eq);
      const std::string_view value = field.substr(eq + 1);
      if (name == "id") {  // %s"id=": case-sensitive; "ID=" is an extension
        if (id || !IsStsId(value)) {
          return std::nullopt;
        }
        id.emplace(value);
      } else if (!IsExtName(name) || !IsExtValue(value)) {
        return std::nullopt;
      }
    }
    if (semi == std::string_view::npos) {
      break;
    }
    txt.remove_prefix(semi + 1);
  }
  return id;  // nullopt without an id: it is required (§3.1)
}

std::optional<std::string> PickStsTxt(const std::vector<std::string>& records) {
  const std::string* candidate = nullptr;
  for (const std::string& r : records) {
    if (StartsAsStsV1(r)) {
      if (candidate != nullptr) {
        return std::nullopt;  // more than one: no policy record (§3.1)
      }
      candidate = &r;
    }
  }
  if (candidate == nullptr) {
    return std::nullopt;
  }
  return ParseStsTxt(*candidate);
}

std::string_view ModeName(Policy::Mode mode) {
  switch (mode) {
    case Policy::Mode::kEnforce:
      return "enforce";
    case Policy::Mode::kTesting:
      return "testing";
    case Policy::Mode::kNone:
      return "none";
  }
  return "none";
}

bool ParsePolicy(std::string_view text, Policy* out, std::string* error) {
  if (text.size() > kMaxPolicyBytes) {
    SetError(error, "policy larger than " + std::to_string(kMaxPolicyBytes) + " octets");
    return false;
  }
  Policy p;
  bool have_version = false;
  bool have_mode = false;
  bool have_max_age = false;
  size_t line_no = 0;
  while (!text.empty()) {
    // sts-policy-term = LF / CRLF (RFC 8461 §3.2).
    const size_t lf = text.find('\n');
    std::string_view line = text.substr(0, lf);
    text.remove_prefix(lf == std::string_view::npos ? text.size() : lf + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    const std::string where = "line " + std::to_string(line_no) + ": ";
    if (TrimWsp(line).empty()) {
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      SetError(error, where + "no ':'");
      return false;
    }
    // sts-policy-field-delim = ":" *WSP; keys are case-sensitive and hold no WSP.
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = TrimWsp(line.substr(colon + 1));
    if (!IsExtName(key)) {
      SetError(error, where + "bad field name");
      return false;
    }
    if (key == "version") {
      if (have_version) {
        SetError(error, where + "repeated version");
        return false;
      }
      if (value != "STSv1") {
        SetError(error, where + "version is not STSv1");
        return false;
      }
      have_version = true;
    } else if (key == "mode") {
      const std::optional<Policy::Mode> mode = ModeFromName(value);
      if (have_mode) {
        SetError(error, where + "repeated mode");
        return false;
      }
      if (!mode) {
        SetError(error, where + "mode is not enforce, testing or none");
        return false;
      }
      p.mode = *mode;
      have_mode = true;
    } else if (key == "max_age") {
      if (have_max_age) {
        SetError(error, where + "repeated max_age");
        return false;
      }
      if (!ParseClampedDecimal(value, kMaxAgeLimitS, &p.max_age_s)) {
        SetError(error, where + "bad max_age (not a non-negative integer)");
        return false;
      }
      have_max_age = true;
    } else if (key == "mx") {
      const std::string_view pattern = DropTrailingDot(value);
      if (!IsMxPattern(pattern)) {
        SetError(error, where + "bad mx pattern");
        return false;
      }
      p.mx.push_back(ToLower(pattern));
    }
    // Any other field is an extension and MUST be ignored (§3.2).
  }
  if (!have_version) {
    SetError(error, "no version field");
    return false;
  }
  if (!have_mode) {
    SetError(error, "no mode field");
    return false;
  }
  if (!have_max_age) {
    SetError(error, "no max_age field");
    return false;
  }
  if (p.mx.empty() && p.mode != Policy::Mode::kNone) {
    SetError(error, "no mx field (required unless mode is none)");
    return false;
  }
  *out = std::move(p);
  return true;
}

bool MxMatches(std::string_view pattern, std::string_view host) {
  pattern = DropTrailingDot(pattern);
  host = DropTrailingDot(host);
  if (pattern.empty() || host.empty()) {
    return false;
  }
  if (pattern.size() >= 2 && pattern[0] == '*' && pattern[1] == '.') {
    // The wildcard stands for exactly one left-most label (RFC 8461 §4.1): drop the host's
    // first label, which must be non-empty, and compare the rest.
    const size_t dot = host.find('.');
    if (dot == 0 || dot == std::string_view::npos) {
      return false;
    }
    return EqualsNoCase(pattern.substr(2), host.substr(dot + 1));
  }
  return EqualsNoCase(pattern, host);
}

bool PolicyAllows(const Policy& policy, std::string_view mx_host) {
  for (const std::string& pattern : policy.mx) {
    if (MxMatches(pattern, mx_host)) {
      return true;
    }
  }
  return false;
}

std::string PolicyHost(std::string_view domain) {
  std::string host = "mta-sts.";
  host += DropTrailingDot(domain);
  return host;
}

std::string PolicyUrl(std::string_view domain) {
  std::string url = "https://";
  url += PolicyHost(domain);
  url += kPolicyPath;
  return url;
}

std::string EncodePolicy(const Policy& policy, std::string_view id, int64_t fetched_ms) {
  std::string s = "spate-mta-sts 1\n";
  s += "id ";
  s += id;
  s += "\nfetched_ms " + std::to_string(fetched_ms) + "\n";
  s += "mode ";
  s += ModeName(policy.mode);
  s += "\nmax_age " + std::to_string(policy.max_age_s) + "\n";
  for (const std::string& mx : policy.mx) {
    s += "mx " + mx + "\n";
  }
  s += "end\n";
  return s;
}

bool DecodePolicy(std::string_view text, Policy* policy, std::string* id, int64_t* fetched_ms) {
  // Takes the next line, which must be `<key> <value>` (or `key` alone when value is null).
  auto next = [&text](std::string_view key, std::string_view* value) {
    const size_t lf = text.find('\n');
    if (lf == std::string_view::npos) {
      return false;  // every line, "end" included, ends in LF: a torn write is refused
    }
    const std::string_view line = text.substr(0, lf);
    if (value == nullptr) {
      if (line != key) {
        return false;
      }
    } else {
      if (line.size() <= key.size() + 1 || line.substr(0, key.size()) != key ||
          line[key.size()] != ' ') {
        return false;
      }
      *value = line.substr(key.size() + 1);
    }
    text.remove_prefix(lf + 1);
    return true;
  };
  std::string_view v;
  if (!next("spate-mta-sts 1", nullptr)) {
    return false;
  }
  if (!next("id", &v) || !IsStsId(v)) {
    return false;
  }
  const std::string_view got_id = v;
  int64_t got_fetched = 0;
  if (!next("fetched_ms", &v) || !ParseCanonicalInt64(v, &got_fetched)) {
    return false;
  }
  Policy p;
  std::optional<Policy::Mode> mode;
  if (!next("mode", &v) || !(mode = ModeFromName(v))) {
    return false;
  }
  p.mode = *mode;
  if (!next("max_age", &v) || !ParseCanonicalInt64(v, &p.max_age_s) || p.max_age_s < 0 ||
      p.max_age_s > kMaxAgeLimitS) {
    return false;
  }
  while (next("mx", &v)) {
    if (!IsMxPattern(v) || ToLower(v) != v) {
      return false;
    }
    p.mx.emplace_back(v);
  }
  if (!next("end", nullptr) || !text.empty()) {
    return false;
  }
  if (p.mx.empty() && p.mode != Policy::Mode::kNone) {
    return false;  // ParsePolicy() never returns such a policy
  }
  *policy = std::move(p);
  *id = std::string(got_id);
  *fetched_ms = got_fetched;
  return true;
}

}  // namespace spate::delivery::sts
