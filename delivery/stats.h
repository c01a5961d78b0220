// delivery/stats.h
//
// Delivery's hot counters on one shard: per destination domain, delivered / deferred / failed,
// recipients queued and connections open; the same per site (delivery/pool.h: the domains that
// share an MX host set and one connection pool), whose connections are counted there only. The
// owning shard is the only writer (core/counter.h); the metrics exporter reads them at scrape time
// from its own thread.
//
// Their number is bounded: after `max_domains` distinct domains, the rest are counted under
// "other", so a million-domain campaign cannot blow up the label cardinality. An entry outlives
// its destination (counters never go back); adding one takes a mutex (rare, cold), counting on
// an existing one takes none.
// Threading: writers on the owning shard only; readers (ForEachDomain) on any thread.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/counter.h"
#include "delivery/bounce_class.h"

namespace spate::delivery {

// Accepted -> 2xx, seconds: from at once to a day (a retry schedule's reach).
inline constexpr double kDeliveryLatencyBounds[] = {0.1, 0.5, 1,    5,     15,    60,
                                                    300, 900, 3600, 14400, 86400, 432000};

struct DomainStats {
  std::string domain;  // or, in a site's entry, the site's name
  Counter delivered;
  Counter deferred;
  Counter failed;
  Gauge queued;       // recipients waiting on this shard for the domain
  Gauge connections;  // open outbound connections
  Gauge in_flight;    // recipients in transactions now (domains and sites)
  // Failures for good by bounce class (expirations are MessageExpired); domains only.
  std::array<Counter, kBounceClassCount> bounces;
  // Deferrals by bounce class, and the time from acceptance to a 2xx; domains only.
  std::array<Counter, kBounceClassCount> deferrals;
  Histogram delivery_latency{kDeliveryLatencyBounds};
  // Sites only (issue 11): the limits in force now (shaping, moved by automation; rates in
  // thousandths per second, 0 for none), whether it is suspended, how often it was, and the
  // recipients waiting in its ready queue by MT-PRIORITY (index priority + 9). Also whether its
  // server refused commands pipelined behind an end of data (1: each transaction then waits for
  // the end-of-data reply, two round trips a message instead of one).
  Gauge connection_limit;
  Gauge deliveries_per_connection;
  Gauge recipients_per_batch;
  Gauge message_rate_milli;
  Gauge connection_rate_milli;
  Gauge suspended;
  Counter suspensions;
  Gauge pipeline_next_refused;
  std::array<Gauge, 19> queued_by_priority;
  // Domains only (issue 14): jobs routed by the destination's TLS policy
  // [kTlsPolicy*][kTlsResult*]: ok (routed under it), mismatch (no MX host matches an enforced
  // policy: deferred), tempfail (a TLS handshake the policy asked to verify failed).
  std::array<std::array<Counter, 3>, 4> tls_policy;
};
inline constexpr size_t kTlsPolicyNone = 0, kTlsPolicyStsTesting = 1, kTlsPolicyStsEnforce = 2,
                        kTlsPolicyDane = 3;
inline constexpr size_t kTlsResultOk = 0, kTlsResultMismatch = 1, kTlsResultTempfail = 2;
inline constexpr const char* kTlsPolicyNames[] = {"none", "mta-sts-testing", "mta-sts-enforce",
                                                  "dane"};
inline constexpr const char* kTlsResultNames[] = {"ok", "mismatch", "tempfail"};

// One automation rule on one site: in force now (1, also while it recovers), and fired.
struct RuleStats {
  std::string site;
  std::string rule;  // Automation::label()
  Gauge active;
  Counter fired;
};

// The acceptance times of the recipients queued per domain, shared by every shard (a
// recipient is counted in on the shard that owns its domain and out on the one that owns its
// site): the age of each domain's oldest queued recipient, at scrape time. Counted by the
// minute of acceptance, so a queue of a million costs a few thousand map entries; the oldest is
// the first acceptance of its minute (exact for one burst; at most a minute too old). Bounded like
// the domain labels: past `max_domains` domains the rest are "other". A striped mutex: two
// shards rarely wait on each other.
// Threading: any thread.
class QueueAges {
 public:
  explicit QueueAges(size_t max_domains) : max_domains_(max_domains) {}
  // `n` recipients of `domain` accepted at `received_ms` (unix ms; 0: unknown, not counted)
  // joined (+) or left (-) the queue.
  void Add(std::string_view domain, int64_t received_ms, int64_t n);
  // Each domain with recipients queued, and the acceptance time (ms) of its oldest.
  void ForEachOldest(const std::function<void(const std::string&, int64_t)>& fn) const;

 private:
  static constexpr size_t kStripes = 16;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // A domain and its "other" (past the bound) are in the stripe of the domain's hash, so a
  // recipient leaves the entry it joined.
  struct Minute {
    int64_t count = 0;
    int64_t first_ms = 0;  // the earliest acceptance counted into it
  };
  struct Stripe {
    mutable std::mutex mu;
    std::unordered_map<std::string, std::map<int64_t, Minute>, Hash, std::equal_to<>> domains;
  };
  size_t max_domains_;
  std::atomic<size_t> domains_{0};
  std::array<Stripe, kStripes> stripes_;
};

class Stats {
 public:
  explicit Stats(size_t max_domains) : max_domains_(max_domains) {}

  // Owning shard only. The entry for `domain` (lower case), or for "other" past the bound.
  DomainStats& ForDomain(std::string_view domain) { return domains_.For(domain, max_domains_); }
  // The same for a site, and for a campaign ([server] campaign_header), each with its own
  // bound of max_domains.
  DomainStats& ForSite(std::string_view site) { return sites_.For(site, max_domains_); }
  DomainStats& ForCampaign(std::string_view campaign) {
    return campaigns_.For(campaign, max_domains_);
  }

  // Any thread.
  void ForEachDomain(const std::function<void(const DomainStats&)>& fn) const {
    domains_.ForEach(fn);
  }
  void ForEachSite(const std::function<void(const DomainStats&)>& fn) const { sites_.ForEach(fn); }
  void ForEachCampaign(const std::function<void(const DomainStats&)>& fn) const {
    campaigns_.ForEach(fn);
  }

  // Owning shard only: the entry of `rule` on `site`, made when the rule first fires (bounded
  // by max_domains; past it, rules are counted under the site "other").
  RuleStats& ForRule(std::string_view site, std::string_view rule);
  // Any thread.
  void ForEachRule(const std::function<void(const RuleStats&)>& fn) const;

  // Outbound TLS. A handshake done, by version and cipher (once per connection: a mutex is
  // cheap there); any thread may read the table.
  void CountTls(const std::string& version, const std::string& cipher);
  void ForEachTls(const std::function<void(const std::string& version, const std::string& cipher,
                                           uint64_t sessions)>& fn) const;
  Counter expired;          // recipients that reached max_age deferred (failed, counted there too)
  Counter dsns;             // delivery status notifications stored to go back to senders
  Counter dsns_failed;      // mail from <> (our DSNs among it) that failed for good: dropped
  Counter tls_failures;     // handshakes that failed (or timed out)
  Counter tls_fallbacks;    // opportunistic sites sent in the clear after one
  Counter tls_unavailable;  // TLS required but not offered or refused: no transaction

 private:
  struct Table {
    DomainStats& For(std::string_view name, size_t max);
    void ForEach(const std::function<void(const DomainStats&)>& fn) const;

    struct Hash {
      using is_transparent = void;
      size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    // Owning shard only; looked up by string_view, with no copy (once per recipient outcome).
    std::unordered_map<std::string, DomainStats*, Hash, std::equal_to<>> index;
    mutable std::mutex mu;            // guards entries' growth
    std::deque<DomainStats> entries;  // stable addresses
  };

  size_t max_domains_;
  mutable std::mutex tls_mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> tls_;  // guarded by tls_mu_
  Table domains_;
  Table sites_;
  mutable std::mutex rules_mu_;
  std::map<std::pair<std::string, std::string>, RuleStats*, std::less<>> rule_index_;  // shard
  std::deque<RuleStats> rules_;  // guarded by rules_mu_; stable addresses
  Table campaigns_;
};

}  // namespace spate::delivery
