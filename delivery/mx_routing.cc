#include "delivery/mx_routing.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "core/log.h"

namespace spate::delivery {

std::string SiteName(std::vector<std::string> mx_hosts) {
  for (std::string& h : mx_hosts)  // DNS names compare without case (RFC 4343)
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : static_cast<char>(c);
    });
  std::sort(mx_hosts.begin(), mx_hosts.end());
  mx_hosts.erase(std::unique(mx_hosts.begin(), mx_hosts.end()), mx_hosts.end());
  std::string name;
  for (const std::string& h : mx_hosts) {
    if (!name.empty())
      name += ',';
    name += h;
  }
  return name;
}

struct MxRouting::Pending {
  std::vector<Done> waiters;
  mx::Hosts hosts;
  std::vector<mx::HostAnswers> answers;
  size_t outstanding = 0;  // address (and TLSA) lookups not answered yet
  bool mx_secure = false;  // the MX answer was DNSSEC-validated: DANE applies (RFC 7672 §2.2.1)
  std::vector<dns::Answer> tlsa;  // by host, when mx_secure
  // MTA-STS: the policy, once known (policy_known), and the route waiting for it.
  bool policy_known = false;
  StsPolicyRef policy;
  std::shared_ptr<Route> route;
  uint32_t ttl = 0;
};

MxRouting::MxRouting(Reactor& reactor, const StaticRouting& statics,
                     std::unique_ptr<dns::Resolver> resolver, Options options, uint64_t seed,
                     MxRoutingStats* stats)
    : reactor_(reactor),
      statics_(statics),
      resolver_(std::move(resolver)),
      options_(std::move(options)),
      rng_(seed),
      stats_(stats) {}

// The policies go first (their fetches use the resolver), then the resolver: the lookups it
// still has out never call back.
MxRouting::~MxRouting() {
  sts_.reset();
  resolver_.reset();
}

std::optional<RouteRef> MxRouting::TryResolve(std::string_view domain) {
  if (RouteRef r = statics_.Find(domain))
    return r;
  auto it = cache_.find(domain);
  if (it == cache_.end() || reactor_.now() >= it->second.expires)
    return std::nullopt;
  if (stats_ != nullptr)
    stats_->cache_hits.Add();
  return it->second.route;
}

void MxRouting::Resolve(std::string_view domain, Done done) {
  if (std::optional<RouteRef> known = TryResolve(domain)) {
    done(std::move(*known));
    return;
  }
  std::string key(domain);
  if (auto it = cache_.find(key); it != cache_.end())
    cache_.erase(it);  // expired
  if (auto it = pending_.find(key); it != pending_.end()) {
    it->second->waiters.push_back(std::move(done));
    return;
  }
  auto p = std::make_unique<Pending>();
  p->waiters.push_back(std::move(done));
  p->policy_known = sts_ == nullptr;
  pending_.emplace(key, std::move(p));
  resolver_->Lookup(key, dns::Type::kMx,
                    [this, key](dns::Answer&& mx) { OnMx(key, std::move(mx)); });
  if (sts_ != nullptr)
    sts_->Policy(key, [this, key](StsPolicyRef policy) { OnPolicy(key, std::move(policy)); });
}

void MxRouting::OnPolicy(const std::string& domain, StsPolicyRef policy) {
  auto it = pending_.find(domain);
  if (it == pending_.end())
    return;
  Pending& p = *it->second;
  p.policy_known = true;
  p.policy = std::move(policy);
  if (p.route != nullptr)
    Complete(domain, std::move(p.route), p.ttl);
}

void MxRouting::Complete(const std::string& domain, std::shared_ptr<Route> route, uint32_t ttl) {
  auto it = pending_.find(domain);
  if (it == pending_.end())
    return;
  Pending& p = *it->second;
  if (!p.policy_known) {
    p.route = std::move(route);  // OnPolicy() goes on
    p.ttl = ttl;
    return;
  }
  const sts::Policy* policy = p.policy.get();
  // DANE wins over MTA-STS where both are published (RFC 8461 §2).
  if (policy != nullptr && !route->failure && !route->dane) {
    if (policy->mode == sts::Policy::Mode::kTesting) {
      route->mta_sts = "testing";
      route->sts_policy = p.policy;
    } else if (policy->mode == sts::Policy::Mode::kEnforce) {
      // RFC 8461 §4.1: only the MX hosts the policy names; §5: none of them, no delivery.
      route->mta_sts = "enforce";
      route->sts_policy = p.policy;
      std::vector<Endpoint> hosts;
      std::vector<std::string> names;
      for (size_t i = 0; i < route->hosts.size(); ++i) {
        const std::string& name = i < route->host_names.size() ? route->host_names[i] : "";
        if (sts::PolicyAllows(*policy, name)) {
          hosts.push_back(route->hosts[i]);
          names.push_back(name);
        } else if (reports_ != nullptr) {
          // A host the policy does not name is never tried: a failed session for TLSRPT.
          reports_->Fail(
              domain, tlsrpt::PolicyType::kSts, "",
              [policy](tlsrpt::PolicyReport* r) { tlsrpt::DescribeSts(*policy, r); },
              tlsrpt::Failure{tlsrpt::ResultType::kValidationFailure, "", name,
                              tlsrpt::IpOf(route->hosts[i].addr),
                              "the MX host does not match the policy's mx patterns"});
        }
      }
      if (hosts.empty()) {
        route->hosts.clear();
        route->host_names.clear();
        route->failure = RouteFailure{
            451, "4.7.5",
            "MTA-STS: no MX host of " + domain + " matches its policy (RFC 8461 §4.1)"};
      } else {
        route->hosts = std::move(hosts);
        route->site = SiteName(names);
        route->host_names = std::move(names);
      }
    }
  }
  Finish(domain, std::move(route), ttl);
}

void MxRouting::OnMx(const std::string& domain, dns::Answer&& mx) {
  auto it = pending_.find(domain);
  if (it == pending_.end())
    return;
  Pending& p = *it->second;
  p.mx_secure = options_.dane && mx.secure && mx.status == dns::Status::kOk;
  p.hosts = mx::HostsFromMx(domain, mx, rng_);
  if (p.hosts.failure) {
    auto r = std::make_shared<Route>();
    r->name = domain;
    r->failure = p.hosts.failure;
    Complete(domain, std::move(r), 0);
    return;
  }
  if (p.hosts.names.size() > options_.max_hosts)
    p.hosts.names.resize(options_.max_hosts);
  const mx::Family family = options_.addresses.family;
  const bool want_v4 = family != mx::Family::kIpv6Only;
  const bool want_v6 = family != mx::Family::kIpv4Only;
  p.answers.resize(p.hosts.names.size());
  for (size_t i = 0; i < p.hosts.names.size(); ++i) {
    p.answers[i].host = p.hosts.names[i];
    p.answers[i].a.status = dns::Status::kNoData;
    p.answers[i].aaaa.status = dns::Status::kNoData;
    p.outstanding += (want_v4 ? 1 : 0) + (want_v6 ? 1 : 0) + (p.mx_secure ? 1 : 0);
  }
  if (p.mx_secure)
    p.tlsa.resize(p.hosts.names.size());
  // Copies of the names: the answers may come in any order, and Pending may go before.
  const std::vector<std::string> names = p.hosts.names;
  for (size_t i = 0; i < names.size(); ++i) {
    if (want_v4) {
      resolver_->Lookup(names[i], dns::Type::kA, [this, domain, i](dns::Answer&& a) {
        OnAddress(domain, i, false, std::move(a));
      });
    }
    if (want_v6) {
      resolver_->Lookup(names[i], dns::Type::kAaaa, [this, domain, i](dns::Answer&& a) {
        OnAddress(domain, i, true, std::move(a));
      });
    }
    if (p.mx_secure) {
      // RFC 7672 §2.2.3: the TLSA base is the MX host name, the port the SMTP one.
      resolver_->Lookup("_" + std::to_string(options_.addresses.port) + "._tcp." + names[i],
                        dns::Type::kTlsa,
                        [this, domain, i](dns::Answer&& a) { OnTlsa(domain, i, std::move(a)); });
    }
  }
}

void MxRouting::OnTlsa(const std::string& domain, size_t host, dns::Answer&& answer) {
  auto it = pending_.find(domain);
  if (it == pending_.end())
    return;
  Pending& p = *it->second;
  p.tlsa[host] = std::move(answer);
  if (--p.outstanding == 0)
    Plan(domain);
}

void MxRouting::OnAddress(const std::string& domain, size_t host, bool v6, dns::Answer&& answer) {
  auto it = pending_.find(domain);
  if (it == pending_.end())
    return;
  Pending& p = *it->second;
  (v6 ? p.answers[host].aaaa : p.answers[host].a) = std::move(answer);
  if (--p.outstanding == 0)
    Plan(domain);
}

void MxRouting::Plan(const std::string& domain) {
  auto it = pending_.find(domain);
  if (it == pending_.end())
    return;
  Pending& p = *it->second;
  // DANE per MX host (RFC 7672 §2.2): a validated TLSA RRset makes TLS mandatory; a TLSA lookup
  // that failed (bogus, SERVFAIL, a timeout) makes the host unusable, never plaintext; none
  // (a validated denial), or an unvalidated answer, leaves the host as it was.
  std::vector<std::shared_ptr<const std::vector<tls::Tlsa>>> tlsa_of(p.hosts.names.size());
  std::vector<bool> unusable(p.hosts.names.size(), false);
  bool any_dane = false;
  if (p.mx_secure) {
    for (size_t i = 0; i < p.hosts.names.size(); ++i) {
      const dns::Answer& t = p.tlsa[i];
      const bool address_secure = p.answers[i].a.secure || p.answers[i].aaaa.secure;
      if (t.status == dns::Status::kOk && t.secure && address_secure) {
        auto records = std::make_shared<std::vector<tls::Tlsa>>();
        for (const std::string& rdata : t.rdata) {
          if (std::optional<tls::Tlsa> r = tls::ParseTlsaRdata(rdata); r && tls::Usable(*r))
            records->push_back(std::move(*r));
        }
        tlsa_of[i] = std::move(records);
        any_dane = true;
      } else if (t.status == dns::Status::kBogus || t.status == dns::Status::kServFail ||
                 t.status == dns::Status::kTimeout || t.status == dns::Status::kError) {
        unusable[i] = true;
        SPATE_LOG(kWarn, "dane: %s: the TLSA lookup of %s failed (%s%s%s): the host is not used",
                  domain.c_str(), p.hosts.names[i].c_str(), dns::StatusName(t.status),
                  t.error.empty() ? "" : ": ", t.error.c_str());
        if (reports_ != nullptr) {
          const std::string& host = p.hosts.names[i];
          reports_->Fail(
              domain, tlsrpt::PolicyType::kTlsa, host,
              [&host](tlsrpt::PolicyReport* r) { tlsrpt::DescribeTlsa(host, nullptr, r); },
              tlsrpt::Failure{tlsrpt::ResultType::kDnssecInvalid, "", host, "",
                              std::string("TLSA lookup: ") + dns::StatusName(t.status)});
        }
      }
    }
  }
  mx::Plan plan = mx::PlanAddresses(domain, p.hosts, p.answers, options_.addresses);
  auto r = std::make_shared<Route>();
  r->name = domain;
  if (plan.failure) {
    r->failure = plan.failure;
  } else {
    for (mx::Target& t : plan.targets) {
      const auto at = std::find(p.hosts.names.begin(), p.hosts.names.end(), t.host);
      const size_t i = static_cast<size_t>(at - p.hosts.names.begin());
      if (i < unusable.size() && unusable[i])
        continue;
      r->hosts.push_back(std::move(t.endpoint));
      r->host_names.push_back(std::move(t.host));
      r->tlsa.push_back(i < tlsa_of.size() ? tlsa_of[i] : nullptr);
    }
    r->dane = any_dane;
    r->site = SiteName(p.hosts.names);
    if (r->hosts.empty()) {
      r->failure = RouteFailure{
          451, "4.7.5",
          "DANE: the TLSA lookups of every MX host of " + domain + " failed (RFC 7672 §2.2)"};
    }
  }
  Complete(domain, std::move(r), plan.ttl);
}

void MxRouting::Finish(const std::string& domain, RouteRef route, uint32_t ttl) {
  auto it = pending_.find(domain);
  if (it == pending_.end())
    return;
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  if (stats_ != nullptr)
    (route->failure ? stats_->failed : stats_->resolved).Add();
  // A temporary failure is kept briefly; a route, or a permanent answer, for its TTL within the
  // bounds.
  Seconds keep = options_.negative_ttl;
  if (!route->failure || route->failure->permanent()) {
    keep = std::clamp(Seconds(static_cast<double>(ttl)), options_.min_ttl, options_.max_ttl);
  }
  if (keep.count() > 0 && options_.max_cached > 0) {
    while (cache_.size() >= options_.max_cached && !cache_order_.empty()) {
      cache_.erase(cache_order_.front());
      cache_order_.pop_front();
    }
    cache_[domain] =
        Cached{route, reactor_.now() + std::chrono::duration_cast<Reactor::Clock::duration>(keep)};
    cache_order_.push_back(domain);
    // A domain cached again is listed again: the list is rebuilt before it outgrows the cache
    // (the order is only a rough one for the bound).
    if (cache_order_.size() > 2 * options_.max_cached + 16) {
      cache_order_.clear();
      for (const auto& [name, entry] : cache_)
        cache_order_.push_back(name);
    }
  }
  for (Done& d : p->waiters)
    d(route);
}

}  // namespace spate::delivery
