// tests/fuzz/shaping_fuzz.cc
//
// Fuzzes the shaping file parser (delivery/shaping.h, Shaping::FromToml) with an arbitrary
// document: TOML that may be malformed, values of any type, bad rates, durations and regexes,
// KumoMTA keys spate does not know.
//
// Input: the document, whole.
//
// Invariants (a violation traps):
//  - a refused document says why (a non-empty error starting "line ") and leaves no
//    warnings; an accepted one has no error;
//  - parsing the same document again gives the same verdict, error and warnings;
//  - an accepted document resolves a few fixed domains (with and without MX hosts) and the
//    document's first line as a domain, the same each time and from both parses; a provider
//    found has at least one match and is one of providers(); every rate resolved is set
//    (count >= 1, a period > 0) and every automation rule has a regex and a duration > 0.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "delivery/shaping.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

void CheckRate(const std::optional<delivery::Rate>& r) {
  if (r) {
    FUZZ_CHECK(r->count >= 1);
    FUZZ_CHECK(r->per_seconds > 0);
  }
}

void CheckResolve(const delivery::Shaping& a, const delivery::Shaping& b, std::string_view domain,
                  const std::vector<std::string>& mx) {
  const delivery::ShapingValues v = a.Resolve(domain, mx);
  FUZZ_CHECK(v == a.Resolve(domain, mx));
  FUZZ_CHECK(v == b.Resolve(domain, mx));
  CheckRate(v.max_connection_rate);
  CheckRate(v.max_message_rate);
  CheckRate(v.provider_max_message_rate);
  for (const delivery::Automation& rule : v.automation) {
    FUZZ_CHECK(rule.duration.count() > 0);
    FUZZ_CHECK((rule.action == delivery::Automation::Action::kSetConfig) ==
               !rule.config_name.empty());
  }
  const delivery::Provider* p = a.ProviderFor(domain, mx);
  const delivery::Provider* q = b.ProviderFor(domain, mx);
  FUZZ_CHECK((p == nullptr) == (q == nullptr));
  if (p != nullptr) {
    FUZZ_CHECK(!p->match.empty());
    FUZZ_CHECK(p->name == q->name);
    FUZZ_CHECK(p >= a.providers().data() && p < a.providers().data() + a.providers().size());
  }
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate;
  using namespace spate::fuzz;
  const std::string_view doc = AsView(data, size);
  std::string error;
  std::vector<std::string> warnings;
  const std::optional<delivery::Shaping> s = delivery::Shaping::FromToml(doc, &error, &warnings);
  FUZZ_CHECK(s.has_value() == error.empty());
  if (!s) {
    FUZZ_CHECK(error.rfind("line ", 0) == 0);
    FUZZ_CHECK(warnings.empty());
  }
  std::string again_error;
  std::vector<std::string> again_warnings;
  const std::optional<delivery::Shaping> again =
      delivery::Shaping::FromToml(doc, &again_error, &again_warnings);
  FUZZ_CHECK(again.has_value() == s.has_value());
  FUZZ_CHECK(again_error == error);
  FUZZ_CHECK(again_warnings == warnings);
  if (!s)
    return 0;
  FUZZ_CHECK(again->providers().size() == s->providers().size());
  const std::vector<std::string> kNoMx;
  const std::vector<std::string> kGoogle = {"gmail-smtp-in.l.google.com",
                                            "alt1.gmail-smtp-in.l.google.com"};
  const std::vector<std::string> kMixed = {"mta5.am0.yahoodns.net", "mx.example.com."};
  static constexpr std::string_view kDomains[] = {
      "gmail.com", "example.com", "EXAMPLE.COM.", "default", "", "."};
  for (std::string_view d : kDomains) {
    CheckResolve(*s, *again, d, kNoMx);
    CheckResolve(*s, *again, d, kGoogle);
    CheckResolve(*s, *again, d, kMixed);
  }
  const std::string_view first_line = doc.substr(0, doc.find('\n'));
  CheckResolve(*s, *again, first_line, kNoMx);
  CheckResolve(*s, *again, first_line, {std::string(first_line)});
  return 0;
}
