// delivery/mx_routing.h
//
// MxRouting is a shard's Routing for the Internet (RFC 5321 §5): [routes] and the smarthost
// first (StaticRouting), else the domain's MX records and their hosts' A and AAAA through the
// shard's dns::Resolver, decided by delivery/mx.h. A route (or why there is none) is cached per
// domain for the TTL of the answers it came from, kept between min_ttl and max_ttl; a
// temporary failure for negative_ttl; at most max_cached domains (the oldest entry goes). Two
// destinations asking for one domain at once share one set of lookups.
// Threading: one per shard, on its reactor thread; it owns the shard's Resolver.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/counter.h"
#include "core/dns/resolver.h"
#include "core/reactor.h"
#include "delivery/mta_sts_policies.h"
#include "delivery/mx.h"
#include "delivery/routing.h"
#include "delivery/tlsrpt.h"

namespace spate::delivery {

// One shard's routing figures, for the metrics (single writer: the shard).
struct MxRoutingStats {
  Counter cache_hits;  // routes answered from the cache
  Counter resolved;    // routes found by DNS
  Counter failed;      // domains DNS gave no route for (permanent or temporary)
};

// A site's name (KumoMTA's site_name): the MX host names, sorted, without repeats, joined by
// ','. Domains whose MX host sets are equal get the same name, whatever their preferences.
std::string SiteName(std::vector<std::string> mx_hosts);

class MxRouting final : public Routing {
 public:
  struct Options {
    mx::AddressOptions addresses;
    Seconds min_ttl{30};
    Seconds max_ttl{3600};
    Seconds negative_ttl{30};
    size_t max_cached = 100000;
    size_t max_hosts = 10;  // MX hosts whose addresses are looked up, best first
    // DANE (RFC 7672): TLSA records of the MX hosts of a DNSSEC-validated MX answer (the
    // resolver needs trust anchors: [dns] trust_anchor_file).
    bool dane = true;
  };

  // `statics` is shared by the shards (immutable); `resolver` is this shard's, owned here.
  MxRouting(Reactor& reactor, const StaticRouting& statics, std::unique_ptr<dns::Resolver> resolver,
            Options options, uint64_t seed, MxRoutingStats* stats = nullptr);
  ~MxRouting() override;

  // MTA-STS (mta_sts_policies.h): every route waits for its domain's policy, which filters its
  // hosts and sets its TLS requirement. Set before the first Resolve(); owned here, gone before
  // the resolver.
  void SetTlsPolicySource(std::unique_ptr<TlsPolicySource> source) { sts_ = std::move(source); }
  // TLSRPT (RFC 8460): the policy failures routing finds (a failed TLSA lookup, no MX host
  // an MTA-STS policy allows) are counted there. Null: not reported.
  void SetTlsReports(tlsrpt::Reports* reports) { reports_ = reports; }
  dns::Resolver& resolver() { return *resolver_; }

  void Resolve(std::string_view domain, Done done) override;
  std::optional<RouteRef> TryResolve(std::string_view domain) override;

  size_t cached() const { return cache_.size(); }

 private:
  struct Pending;
  void OnMx(const std::string& domain, dns::Answer&& mx);
  void OnAddress(const std::string& domain, size_t host, bool v6, dns::Answer&& answer);
  void OnTlsa(const std::string& domain, size_t host, dns::Answer&& answer);
  // Every lookup of the domain is in: its route.
  void Plan(const std::string& domain);
  void Finish(const std::string& domain, RouteRef route, uint32_t ttl);
  // Once both the route and the policy are known: the policy applied, then Finish().
  void Complete(const std::string& domain, std::shared_ptr<Route> route, uint32_t ttl);
  void OnPolicy(const std::string& domain, StsPolicyRef policy);

  Reactor& reactor_;
  const StaticRouting& statics_;
  std::unique_ptr<dns::Resolver> resolver_;
  Options options_;
  std::mt19937_64 rng_;
  struct Cached {
    RouteRef route;
    Reactor::Clock::time_point expires;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Cached, Hash, std::equal_to<>> cache_;
  std::deque<std::string> cache_order_;  // insertion order, for the bound
  std::unordered_map<std::string, std::unique_ptr<Pending>> pending_;
  MxRoutingStats* stats_;
  tlsrpt::Reports* reports_ = nullptr;
  std::unique_ptr<TlsPolicySource> sts_;
};

}  // namespace spate::delivery
