// tests/fuzz/mta_sts_fuzz.cc
//
// Fuzzes the MTA-STS parsers (delivery/mta_sts.h): the same hostile bytes as a policy body
// (ParsePolicy), as a TXT record (ParseStsTxt, PickStsTxt), as a cache entry (DecodePolicy), and
// their first two lines as an MX pattern and host (MxMatches).
//
// Input: the bytes, whole.
//
// Invariants (a violation traps):
//  - ParsePolicy gives the same verdict twice; a refusal has an error and leaves the output
//    alone; an acceptance has a mode, max_age within 0..31557600, an mx pattern unless the
//    mode is none, patterns lower-case and matching themselves (upper-cased, with a trailing
//    dot) as MX hosts; EncodePolicy of it decodes to the same policy, id and time, and
//    re-encodes to the same text;
//  - a TXT id is 1..32 letters and digits; PickStsTxt of the one record agrees with
//    ParseStsTxt, and of the record twice finds none;
//  - a cache entry DecodePolicy accepts re-encodes to exactly its input;
//  - MxMatches ignores case and a trailing dot on the host.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "delivery/mta_sts.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

namespace sts = delivery::sts;

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    }
  }
  return out;
}

bool IsStsId(std::string_view id) {
  if (id.empty() || id.size() > 32) {
    return false;
  }
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
      return false;
    }
  }
  return true;
}

void CheckPolicy(std::string_view input) {
  sts::Policy p;
  p.max_age_s = -7;  // a sentinel for "left alone"
  std::string error;
  const bool ok = sts::ParsePolicy(input, &p, &error);
  sts::Policy again;
  std::string error_again;
  FUZZ_CHECK(sts::ParsePolicy(input, &again, &error_again) == ok);
  FUZZ_CHECK(error_again == error);
  if (!ok) {
    FUZZ_CHECK(!error.empty());
    FUZZ_CHECK(p.max_age_s == -7 && p.mx.empty());
    return;
  }
  FUZZ_CHECK(error.empty());
  FUZZ_CHECK(again == p);
  FUZZ_CHECK(p.max_age_s >= 0 && p.max_age_s <= sts::kMaxAgeLimitS);
  FUZZ_CHECK(!p.mx.empty() || p.mode == sts::Policy::Mode::kNone);
  for (const std::string& mx : p.mx) {
    FUZZ_CHECK(!mx.empty());
    FUZZ_CHECK(mx.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") == mx.npos);
    if (mx[0] != '*') {
      FUZZ_CHECK(sts::MxMatches(mx, mx));
      FUZZ_CHECK(sts::PolicyAllows(p, Upper(mx) + "."));
    } else {
      FUZZ_CHECK(sts::PolicyAllows(p, "mx" + mx.substr(1)));
      FUZZ_CHECK(!sts::MxMatches(mx, mx.substr(2)));
    }
  }
  const std::string encoded = sts::EncodePolicy(p, "fuzz0ID", 1234567890123);
  sts::Policy decoded;
  std::string id;
  int64_t fetched = 0;
  FUZZ_CHECK(sts::DecodePolicy(encoded, &decoded, &id, &fetched));
  FUZZ_CHECK(decoded == p);
  FUZZ_CHECK(id == "fuzz0ID");
  FUZZ_CHECK(fetched == 1234567890123);
  FUZZ_CHECK(sts::EncodePolicy(decoded, id, fetched) == encoded);
}

void CheckTxt(std::string_view input) {
  const std::optional<std::string> id = sts::ParseStsTxt(input);
  if (id) {
    FUZZ_CHECK(IsStsId(*id));
  }
  const std::string record(input);
  const std::optional<std::string> picked = sts::PickStsTxt({record});
  if (picked) {
    FUZZ_CHECK(picked == id);
    FUZZ_CHECK(!sts::PickStsTxt({record, record}));
    FUZZ_CHECK(sts::PickStsTxt({"v=spf1 -all", record}) == picked);
  }
}

void CheckCache(std::string_view input) {
  sts::Policy p;
  std::string id = "untouched";
  int64_t fetched = -1;
  if (sts::DecodePolicy(input, &p, &id, &fetched)) {
    FUZZ_CHECK(IsStsId(id));
    FUZZ_CHECK(sts::EncodePolicy(p, id, fetched) == input);
  } else {
    FUZZ_CHECK(id == "untouched" && fetched == -1);
  }
}

void CheckMatch(std::string_view input) {
  const size_t lf = input.find('\n');
  const std::string_view pattern = input.substr(0, lf);
  const std::string_view host = lf == input.npos ? std::string_view() : input.substr(lf + 1);
  const bool m = sts::MxMatches(pattern, host);
  FUZZ_CHECK(sts::MxMatches(Upper(pattern), host) == m);
  FUZZ_CHECK(sts::MxMatches(pattern, Upper(host)) == m);
  if (host.empty() || host.back() != '.') {
    FUZZ_CHECK(sts::MxMatches(pattern, std::string(host) + ".") == m);
  }
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = spate::fuzz::AsView(data, size);
  spate::fuzz::CheckPolicy(input);
  spate::fuzz::CheckTxt(input);
  spate::fuzz::CheckCache(input);
  spate::fuzz::CheckMatch(input);
  return 0;
}
