// delivery/mta_sts_policies.h
//
// MTA-STS (RFC 8461) on a shard: what policy holds for a destination domain, decided before its
// route is made (mx_routing.h asks), so that the route's MX hosts and TLS requirement are the
// domain's own before any site rollup.
//
//   1. The TXT record at _mta-sts.<domain> (RFC 8461 §3.1), through the shard's resolver (its
//      cache: the record's TTL). None, or none valid: the cached policy while it lasts (§5.1),
//      else no policy.
//   2. Its id equal to the cached policy's: that policy. A new id while a policy is cached: the
//      cached one now, and the new one fetched in the background (§5.1), in force once it is.
//      With none cached the route waits for the fetch (§3.3):
//      https://mta-sts.<domain>/.well-known/mta-sts.txt, the certificate verified for that name
//      against the trust store (Options::https), no redirects (only a 200 counts), text/plain,
//      at most 64 KiB within Options::fetch_timeout. Fetched: cached for its max_age (§3.2),
//      in memory for every shard (StsCache) and in the spool's state by the daemon, so that a
//      restart keeps it. A fetch that fails leaves the cached one in force (§5.1).
// One fetch per domain and shard at a time; a domain asked again meanwhile waits for it.
// mode "none" is a policy that asks for nothing.
// Threading: StsPolicies on its shard; StsCache any thread (a mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/counter.h"
#include "core/dns/resolver.h"
#include "core/reactor.h"
#include "core/task.h"
#include "core/tls/tls.h"
#include "delivery/mta_sts.h"
#include "delivery/tlsrpt.h"

namespace spate::delivery {

using StsPolicyRef = std::shared_ptr<const sts::Policy>;

// The policies in force, shared by the shards; what changes goes to `persist` (the daemon's:
// the spool's state), called under no lock of ours.
class StsCache {
 public:
  struct Entry {
    StsPolicyRef policy;
    std::string id;
    int64_t fetched_ms = 0;
    int64_t expires_ms() const { return fetched_ms + policy->max_age_s * 1000; }
  };
  using Persist = std::function<void(const std::string& domain, const std::string& encoded)>;

  explicit StsCache(Persist persist = {}) : persist_(std::move(persist)) {}
  // The entry of `domain` unless it has expired at `now_ms`.
  std::optional<Entry> Get(std::string_view domain, int64_t now_ms) const;
  void Put(const std::string& domain, Entry entry);
  // At start: one kept entry (sts::EncodePolicy's form); false when it does not decode.
  bool Load(const std::string& domain, std::string_view encoded);
  size_t size() const;

 private:
  Persist persist_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

// Per shard, written by it, read by scrapes.
struct StsStats {
  Counter fetches_ok;
  Counter fetches_failed;
};

// What mx_routing.h asks of a source of TLS policies.
class TlsPolicySource {
 public:
  virtual ~TlsPolicySource() = default;
  // The MTA-STS policy in force for `domain` (null: none); `done` once, on the shard, maybe
  // before Policy() returns.
  virtual void Policy(std::string_view domain, UniqueFunction<void(StsPolicyRef)> done) = 0;
};

class StsPolicies final : public TlsPolicySource {
 public:
  struct Options {
    // The trust store of the fetches (certificates verified for mta-sts.<domain>).
    const tls::TlsContext* https = nullptr;
    uint16_t port = 443;  // RFC 8461 §3.3; another for tests
    Seconds fetch_timeout{10};
    // TLSRPT (RFC 8460 §4.3.2.2): failed fetches are counted there. Null: not reported.
    tlsrpt::Reports* reports = nullptr;
  };

  // `resolver` and `cache` borrowed; the resolver must outlive this (mx_routing.h keeps both).
  StsPolicies(Reactor& reactor, dns::Resolver& resolver, StsCache& cache, Options options,
              StsStats* stats = nullptr);
  ~StsPolicies() override;  // fetches still out are aborted, their waiters never called

  void Policy(std::string_view domain, UniqueFunction<void(StsPolicyRef)> done) override;

 private:
  class Fetch;
  struct Waiting {
    std::vector<UniqueFunction<void(StsPolicyRef)>> waiters;
    std::optional<StsCache::Entry> cached;
    std::string id;  // the TXT record's
    Fetch* fetch = nullptr;
  };
  void OnTxt(const std::string& domain, dns::Answer&& txt);
  void OnAddress(const std::string& domain, dns::Answer&& a);
  // The fetch of `domain` ended: `body` the policy text, or `error`.
  void Fetched(const std::string& domain, bool ok, std::string body, std::string error);
  void Finish(const std::string& domain, StsPolicyRef policy);

  Reactor& reactor_;
  dns::Resolver& resolver_;
  StsCache& cache_;
  Options options_;
  StsStats* stats_;
  std::unordered_map<std::string, Waiting> waiting_;
  // Background fetches of a new id (step 2), by domain: the fetch and the id it is for.
  std::unordered_map<std::string, std::pair<Fetch*, std::string>> refreshing_;
  // Looks up mta-sts.<domain>, then fetches its policy (Fetched() says how it went).
  void StartFetch(const std::string& domain);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spate::delivery
