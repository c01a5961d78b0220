// delivery/routing.h
//
// Routing says where a destination domain's mail goes: a Route is the hosts to try, in order.
// It is asked once per destination (and again when a destination comes back after it was
// forgotten); the answer comes through a callback so that MX resolution (RFC 5321 §5, DNS on
// the reactor) can plug in here without the engine changing. StaticRouting answers at once from
// the configuration: [routes] per domain, else the smarthost, else no route.
// Threading: one Routing per shard, used on that shard. A StaticRouting may be shared by the
// shards while nobody calls Replace(); the daemon gives each shard its own, and a reload
// (SIGHUP) replaces each on its shard.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/net.h"
#include "core/task.h"
#include "core/tls/dane.h"

namespace spate::delivery {

namespace sts {
struct Policy;
}

// Why a domain's mail can go nowhere now: the reply its recipients get (a 5xx fails them, a 4xx
// defers them).
struct RouteFailure {
  int code = 451;
  std::string enhanced;  // "4.4.3"
  std::string text;
  bool permanent() const { return code >= 500; }

  friend bool operator==(const RouteFailure&, const RouteFailure&) = default;
};

struct Route {
  std::string name;             // for logs and synthetic replies: "127.0.0.1:2526"
  std::vector<Endpoint> hosts;  // tried in order; empty only with a failure
  // Parallel to hosts: the name each address was found for (the MX host; the configured host
  // of a static route), sent as SNI and verified in the certificate (tls = "verify").
  std::vector<std::string> host_names;
  // The site (MX rollup): the MX host names, sorted, joined by ','. Domains with the same site
  // share one queue and one connection pool. Empty (static routes, the smarthost): the domain
  // is a site of its own.
  std::string site;
  std::optional<RouteFailure> failure;  // set: nowhere to go (an MX lookup said why)
  // The domain's MTA-STS policy (RFC 8461 §5), applied: "enforce" (hosts are the policy's
  // matching MX hosts only, and TLS must verify for the MX name) or "testing" (as without one;
  // its failures are only reported). Empty: none.
  std::string_view mta_sts;
  std::shared_ptr<const sts::Policy> sts_policy;  // the policy itself, when mta_sts is set
  // DANE (RFC 7672 §2.2), parallel to hosts: null, no TLSA for that host (or its MX or address
  // records were not DNSSEC-validated); else the host's TLSA records, validated: TLS is
  // mandatory, and the peer must match one of the usable ones (none usable: TLS without
  // authentication, §2.2). Set on any host: `dane`, and MTA-STS is not applied (RFC 8461 §2).
  std::vector<std::shared_ptr<const std::vector<tls::Tlsa>>> tlsa;
  bool dane = false;
};
// Null: no route (the destination's mail is deferred with "no route").
using RouteRef = std::shared_ptr<const Route>;

class Routing {
 public:
  using Done = UniqueFunction<void(RouteRef route)>;
  virtual ~Routing() = default;
  // `done` runs exactly once, possibly before Resolve() returns.
  virtual void Resolve(std::string_view domain, Done done) = 0;
  // The answer when it is known now (a static route, a fresh cache entry): the engine asks
  // this first for every job, so the common case makes no callback. Nothing: ask Resolve().
  virtual std::optional<RouteRef> TryResolve(std::string_view /*domain*/) { return std::nullopt; }
};

class StaticRouting final : public Routing {
 public:
  // `routes`: lower-case domain -> host; `smarthost`: for every other domain.
  StaticRouting(const std::map<std::string, Endpoint>& routes, std::optional<Endpoint> smarthost);
  void Resolve(std::string_view domain, Done done) override;
  std::optional<RouteRef> TryResolve(std::string_view domain) override { return Find(domain); }
  // The same, at once: the domain's route, else the smarthost, else null.
  RouteRef Find(std::string_view domain) const;
  // A reload: the new configuration's routes. A route that did not change stays the same
  // object (its site sees no new addresses).
  void Replace(const std::map<std::string, Endpoint>& routes, std::optional<Endpoint> smarthost);
  size_t size() const { return routes_.size(); }

 private:
  std::map<std::string, RouteRef, std::less<>> routes_;
  RouteRef smarthost_;
};

}  // namespace spate::delivery
