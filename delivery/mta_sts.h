// delivery/mta_sts.h
//
// The sans-I/O parts of MTA-STS (RFC 8461) for outbound delivery: the `_mta-sts` TXT record,
// the policy file fetched over HTTPS, MX pattern matching, and the text a policy is cached in
// across restarts. No sockets, clocks or files: the caller resolves the TXT record, fetches the
// policy (core/http/client.h parses the response), keeps the cache and compares times.
//
// Discovery (RFC 8461 §3, §5.1): PickStsTxt() over the TXT records of `_mta-sts.<domain>` gives
// the policy id; if it differs from the cached policy's, fetch PolicyUrl(domain) (no redirects,
// §3.3) and ParsePolicy() the body; then a candidate MX host is valid if PolicyAllows() it (§4.1).
//
// Choices where the RFC leaves room (an ambiguous or malformed policy is refused, so that it is
// reported rather than half applied):
//  - a policy repeating `version`, `mode` or `max_age` is refused;
//  - blank lines in a policy are skipped; any other line without ':' is refused;
//  - `max_age` above 31557600 (§3.2) is clamped to it, however many digits it has;
//  - an `mx` value that is not `["*."] Domain` (letters, digits, '-', '_' labels) is refused.
// Threading: free functions on values; any thread. Nothing here blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spate::delivery::sts {

// RFC 8461 §3.2: max_age is at most a year (31557600 seconds); larger values are clamped.
inline constexpr int64_t kMaxAgeLimitS = 31557600;
// The largest policy body ParsePolicy() reads (spate's bound on a fetch, RFC 8461 §3.3).
inline constexpr size_t kMaxPolicyBytes = 64 << 10;

// RFC 8461 §3.1. `txt` is one TXT record, its character-strings concatenated by the caller:
// "v=STSv1; id=20160831085700Z;". Returns the id (1..32 letters and digits), or nullopt when the
// record is not a valid STSv1 record: `v=STSv1` first and exact (case-sensitive), fields
// separated by ';' with optional WSP around, exactly one `id`, extension fields `name=value` of
// the §3.1 syntax ignored, a trailing ';' optional.
std::optional<std::string> ParseStsTxt(std::string_view txt);

// RFC 8461 §3.1: of the TXT records at `_mta-sts.<domain>`, those starting with "v=STSv1" (then
// ';', WSP or the end) are the candidates; there must be exactly one and it must be valid, else
// the domain has no policy record (nullopt). Records of other kinds are ignored.
std::optional<std::string> PickStsTxt(const std::vector<std::string>& records);

struct Policy {
  enum class Mode { kEnforce, kTesting, kNone };

  Mode mode = Mode::kNone;
  std::vector<std::string>
      mx;                 // patterns, lower-cased, in file order: "mx1.example.com", "*.x.org"
  int64_t max_age_s = 0;  // 0..kMaxAgeLimitS

  bool operator==(const Policy&) const = default;
};

// "enforce", "testing", "none".
std::string_view ModeName(Policy::Mode mode);

// RFC 8461 §3.2: the policy body, lines `key: value` ended by LF or CRLF; keys case-sensitive,
// values trimmed of WSP. Requires `version: STSv1` (anywhere), `mode: enforce|testing|none`,
// `max_age: <digits>`, and at least one `mx: <pattern>` unless the mode is none; unknown keys
// are ignored. A body over kMaxPolicyBytes is refused. On success fills *out; on failure leaves
// it alone and, when `error` is not null, says what is wrong ("line 3: bad max_age"), for logs.
bool ParsePolicy(std::string_view text, Policy* out, std::string* error);

// RFC 8461 §4.1: compared case-insensitively, a trailing dot on the host (or pattern) ignored.
// "*.example.com" matches exactly one more left-most label: "mx1.example.com" but neither
// "a.b.example.com" nor "example.com". Any other pattern matches only the same name.
bool MxMatches(std::string_view pattern, std::string_view host);

// Whether any of the policy's mx patterns matches the MX host (RFC 8461 §4.1). Says nothing of
// the mode: the caller enforces only kEnforce, reports kTesting, ignores kNone (§5).
bool PolicyAllows(const Policy& policy, std::string_view mx_host);

// RFC 8461 §3.3: "mta-sts.<domain>" and "https://mta-sts.<domain>/.well-known/mta-sts.txt",
// a trailing dot of the domain dropped.
std::string PolicyHost(std::string_view domain);
std::string PolicyUrl(std::string_view domain);
// The path PolicyUrl() names on PolicyHost(), for core/http/client.h FormatGet().
inline constexpr std::string_view kPolicyPath = "/.well-known/mta-sts.txt";

// The cache entry kept across restarts (RFC 8461 §5.1 keeps a policy until max_age after it was
// fetched): a few lines of text,
//   spate-mta-sts 1 / id <id> / fetched_ms <n> / mode <m> / max_age <n> / mx <p>... / end
// DecodePolicy() accepts exactly what EncodePolicy() writes for a policy ParsePolicy() returned
// and an id ParseStsTxt() returned (so Encode(Decode(s)) == s), and refuses anything else:
// garbage, a torn write (no "end"), a bad id, mode, number or pattern. On failure the outputs
// are left alone. `id` and `fetched_ms` may not be null.
std::string EncodePolicy(const Policy& policy, std::string_view id, int64_t fetched_ms);
bool DecodePolicy(std::string_view text, Policy* policy, std::string* id, int64_t* fetched_ms);

}  // namespace spate::delivery::sts
