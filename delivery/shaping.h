// delivery/shaping.h
//
// The traffic shaping file (issue 11): per-destination limits in KumoMTA's shaping.toml shape,
// so that an operator's existing file carries over. spate ships deploy/shaping.toml.
//
//   ["default"]                        # or [default]: every destination
//   connection_limit = 10
//   max_message_rate = "100/s"
//   [provider."google"]                # a mailbox provider, found by its MX hosts or domain
//   match = [{MXSuffix = ".google.com"}, {DomainSuffix = ".gmail.com"}]
//   provider_connection_limit = 50     # shared by every site of the provider
//   [[provider."google".automation]]   # adaptive backoff on a reply
//   regex = "4\\.7\\.28"
//   action = {SetConfig = {name = "max_message_rate", value = "20/min"}}
//   duration = "1h"
//   ["example.com"]                    # one destination domain, exact
//   connection_limit = 2
//
// Layering (Resolve): ["default"] < the first provider, in file order, that matches < the
// domain's own table. KumoMTA applies every matching provider; spate takes the first, so that
// one site has one provider whose provider-wide limits it shares.
// Matching, as KumoMTA's (policy shaping.rs suffix_matches): names are compared lower-case
// without a trailing dot, and a suffix is a plain string suffix, so ".google.com" matches
// "aspmx.l.google.com" but not "google.com", and "google.com" would match "notgoogle.com".
//  - DomainSuffix: the destination domain ends with it;
//  - MXSuffix: there is at least one MX host and *every* MX host ends with one of the
//    provider's MXSuffix values (a vanity domain that mixes providers is no provider's).
//
// enable_tls onto delivery/options.h TlsMode (spate has no "opportunistic and verified"):
//   Opportunistic, OpportunisticInsecure -> kOpportunistic (certificate not checked; KumoMTA's
//                                            Opportunistic checks it when TLS is used)
//   Required -> kVerify; RequiredInsecure -> kRequired; Disabled -> kOff.
//
// Keys spate does not support (KumoMTA has many: smtp_port, prohibited_hosts, mx_rollup,
// sources, ...) are warnings, one per distinct key at its first line, never errors. Errors
// (malformed TOML, a value of the wrong type or out of range, a bad rate, duration, enable_tls
// name, regex or action) refuse the whole document and name the line and key. A document is
// ASCII but for lines that are comments alone (toml++ 3.3 is unsafe on some non-ASCII input).
// Threading: a Shaping is immutable once made; its const methods may be called from any
// thread at once. Nothing here blocks or resolves names: callers pass the MX hosts.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "delivery/options.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace spate::delivery {

// "100/min": `count` per `per_seconds`. count 0 is unset.
struct Rate {
  uint32_t count = 0;
  double per_seconds = 0;

  bool operator==(const Rate&) const = default;
};
// Strict "N/unit": N from 1 to 2^32-1 in decimal digits, no blanks; unit one of s, sec,
// second, m, min, minute, h, hr, hour, d, day. nullopt for anything else.
std::optional<Rate> ParseRate(std::string_view text);

// The daemon's duration format, and KumoMTA's common spellings: one or more <number><unit>
// ("300ms", "5s", "10m", "1h", "2d", "1h30m", "1.5h"), a blank allowed before a unit and
// between parts ("2 hours", "1h 30m"); units ms, s, sec(s), second(s), m, min(s), minute(s),
// h, hr(s), hour(s), d, day(s); a bare number is seconds. nullopt for anything else, a
// negative or a value over 10 years.
std::optional<Seconds> ParseDuration(std::string_view text);

// An adaptive backoff rule: a reply that matches `regex` applies `action` to the site for
// `duration` (issue 11 item 2; applying it is the scheduler's business, not this file's).
struct Automation {
  enum class Action : uint8_t { kSuspend, kSetConfig, kBounce };

  // RE2 source, checked here to compile (as RE2 with default options). KumoMTA's list of
  // expressions ("regex = [a, b]") becomes one alternation "(?:a)|(?:b)".
  std::string regex;
  Action action = Action::kSuspend;
  // kSetConfig: a shaping key and its value as text ("20/min", "5", "1h", "Required"); the key
  // is one ShapingValues::Set takes and the value is checked by it.
  std::string config_name;
  std::string config_value;
  Seconds duration{};
  // trigger = {Threshold = "N/hr"}: fire once `threshold` matches fell within
  // `threshold_per_seconds`. Immediate (or no trigger): 0, fire on the first match.
  uint32_t threshold = 0;
  double threshold_per_seconds = 0;
  uint32_t line = 0;  // where the rule starts in the file, for logs
  // The layer it came from: "default", "provider.NAME" or the domain.
  std::string origin;
  // `regex`, compiled once when the file is read (RE2 matches from any thread at once).
  std::shared_ptr<const re2::RE2> compiled;

  // "provider.yahoo:47": names the rule in logs, records and metric labels.
  std::string label() const { return origin + ":" + std::to_string(line); }
  // Whether a reply ("421 4.7.0 [TS01] ...", as smtp::Reply::ToString() has it) matches.
  bool Matches(std::string_view reply) const;

  bool operator==(const Automation& o) const {  // `compiled` follows from `regex`
    return regex == o.regex && action == o.action && config_name == o.config_name &&
           config_value == o.config_value && duration == o.duration && threshold == o.threshold &&
           threshold_per_seconds == o.threshold_per_seconds && line == o.line && origin == o.origin;
  }
};

// One layer of settings; every key optional (unset: the layer below, then delivery::Options).
struct ShapingValues {
  std::optional<unsigned> connection_limit;
  std::optional<unsigned> max_deliveries_per_connection;
  std::optional<unsigned> max_recipients_per_batch;
  std::optional<Rate> max_connection_rate;
  std::optional<Rate> max_message_rate;  // GCRA
  std::optional<Seconds> idle_timeout;
  std::optional<Seconds> retry_interval;
  std::optional<Seconds> max_retry_interval;
  std::optional<Seconds> max_age;
  std::optional<TlsMode> enable_tls;
  // Only in a [provider] table: one limit shared by every site of the provider.
  std::optional<unsigned> provider_connection_limit;
  std::optional<Rate> provider_max_message_rate;
  // In the order they are tried: the most specific layer's first.
  std::vector<Automation> automation;

  // `over`'s set fields win; automation: `over`'s rules first, then these.
  void Overlay(const ShapingValues& over);
  // SetConfig's effect: sets one key (not provider_* nor automation) from its text as a
  // SetConfig value carries it. False, leaving this unchanged, for another name or a bad value.
  bool Set(std::string_view name, std::string_view value);

  bool operator==(const ShapingValues&) const = default;
};

struct ProviderMatch {
  enum Kind : uint8_t { kMxSuffix, kDomainSuffix };
  Kind kind;
  std::string suffix;  // lower-case, no trailing dot

  bool operator==(const ProviderMatch&) const = default;
};

struct Provider {
  std::string name;
  // In file order; empty only when every entry was a HostName, which spate ignores (with a
  // warning): such a provider never matches.
  std::vector<ProviderMatch> match;
  ShapingValues values;
};

class Shaping {
 public:
  // Parses a shaping document. nullopt with *error ("line N: ...", naming the table and key)
  // for one that is refused; otherwise *error is empty and *warnings (cleared first) says what
  // was ignored. `warnings` may be null.
  static std::optional<Shaping> FromToml(std::string_view text, std::string* error,
                                         std::vector<std::string>* warnings);

  // The effective settings for `domain` whose MX hosts are `mx_hosts` (both compared
  // lower-case, a trailing dot dropped): default < ProviderFor() < the domain's own table.
  ShapingValues Resolve(std::string_view domain, const std::vector<std::string>& mx_hosts) const;
  // The first provider, in file order, that matches (see the file comment); null for none.
  // Lives as long as this Shaping.
  const Provider* ProviderFor(std::string_view domain,
                              const std::vector<std::string>& mx_hosts) const;

  const std::vector<Provider>& providers() const { return providers_; }
  const ShapingValues& defaults() const { return default_; }
  // The domain's own table (lower-case, exact); null for none. No allocation when `domain`
  // is lower-case without a trailing dot (the engine asks this for every job).
  const ShapingValues* DomainValues(std::string_view domain) const;
  // Some provider matches by DomainSuffix: then a domain's provider is not its MX hosts' alone.
  bool has_domain_suffix() const { return has_domain_suffix_; }

 private:
  ShapingValues default_;
  std::vector<Provider> providers_;                             // file order
  std::vector<std::pair<std::string, ShapingValues>> domains_;  // sorted by name
  bool has_domain_suffix_ = false;
};

}  // namespace spate::delivery
