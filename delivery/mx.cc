#include "delivery/mx.h"

#include <algorithm>
#include <cstring>

#include <arpa/inet.h>

namespace spate::delivery::mx {
namespace {

Failure Temporary(std::string enhanced, std::string text) {
  return Failure{451, std::move(enhanced), std::move(text)};
}

// A DNS failure that may pass: SERVFAIL, a timeout, an unvalidated or broken answer.
Failure LookupFailed(std::string_view what, std::string_view name, const dns::Answer& answer) {
  std::string text = std::string(what) + " lookup for " + std::string(name) +
                     " failed: " + dns::StatusName(answer.status);
  if (!answer.error.empty())
    text += " (" + answer.error + ")";
  // RFC 3463 X.4.3 "directory server failure".
  return Temporary("4.4.3", std::move(text));
}

bool Temporary(dns::Status s) {
  return s == dns::Status::kServFail || s == dns::Status::kTimeout || s == dns::Status::kBogus ||
         s == dns::Status::kError;
}

Endpoint ToEndpoint(const std::string& host, const dns::Address& a, uint16_t port) {
  Endpoint e;
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&e.addr);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr = a.v4;
    e.len = sizeof(sockaddr_in);
    inet_ntop(AF_INET, &a.v4, buf, sizeof buf);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&e.addr);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = a.v6;
    e.len = sizeof(sockaddr_in6);
    inet_ntop(AF_INET6, &a.v6, buf, sizeof buf);
  }
  e.text = host + "[" + buf + "]:" + std::to_string(port);
  return e;
}

}  // namespace

Hosts HostsFromMx(std::string_view domain, const dns::Answer& mx, std::mt19937_64& rng) {
  Hosts out;
  out.ttl = mx.ttl;
  switch (mx.status) {
    case dns::Status::kOk:
      break;
    case dns::Status::kNoData:
      // §5.1: no MX, so the domain itself is the host (its A and AAAA).
      out.names.emplace_back(domain);
      out.implicit = true;
      return out;
    case dns::Status::kNxDomain:
      // RFC 3463 X.1.2 "bad destination system address": the domain does not exist.
      out.failure = Failure{550, "5.1.2", "domain " + std::string(domain) + " does not exist"};
      return out;
    default:
      out.failure = LookupFailed("MX", domain, mx);
      return out;
  }
  std::vector<dns::MxRecord> records;
  bool null_mx = false;
  for (const dns::MxRecord& r : mx.mx) {
    if (r.host.empty()) {
      null_mx = true;  // "MX 0 ." (RFC 7505): alone, the domain takes no mail
      continue;
    }
    auto same = std::find_if(records.begin(), records.end(),
                             [&](const dns::MxRecord& x) { return x.host == r.host; });
    if (same == records.end()) {
      records.push_back(r);
    } else {
      same->preference = std::min(same->preference, r.preference);
    }
  }
  if (records.empty()) {
    if (null_mx) {
      // RFC 7505 §4.2 (and RFC 3463 X.1.10, RFC 7505 §4.3): no mail for this domain.
      out.failure = Failure{556, "5.1.10",
                            "domain " + std::string(domain) + " does not accept mail (null MX)"};
    } else {
      out.failure = LookupFailed("MX", domain, mx);
    }
    return out;
  }
  // Random first, then a stable sort by preference: the hosts of one preference stay shuffled.
  std::shuffle(records.begin(), records.end(), rng);
  std::stable_sort(
      records.begin(), records.end(),
      [](const dns::MxRecord& a, const dns::MxRecord& b) { return a.preference < b.preference; });
  for (dns::MxRecord& r : records)
    out.names.push_back(std::move(r.host));
  return out;
}

Plan PlanAddresses(std::string_view domain, const Hosts& hosts,
                   const std::vector<HostAnswers>& answers, const AddressOptions& options) {
  Plan plan;
  plan.ttl = hosts.ttl;
  if (hosts.failure) {
    plan.failure = hosts.failure;
    return plan;
  }
  bool lookup_failed = false;
  std::optional<Failure> first_failure;
  size_t prohibited = 0;
  for (const HostAnswers& h : answers) {
    const dns::Answer* order[2] = {&h.a, &h.aaaa};
    size_t families = 2;
    switch (options.family) {
      case Family::kIpv4First:
        break;
      case Family::kIpv6First:
        std::swap(order[0], order[1]);
        break;
      case Family::kIpv4Only:
        families = 1;
        break;
      case Family::kIpv6Only:
        order[0] = &h.aaaa;
        families = 1;
        break;
    }
    for (size_t f = 0; f < families; ++f) {
      const dns::Answer& ans = *order[f];
      if (ans.status == dns::Status::kOk) {
        plan.ttl = plan.ttl == 0 ? ans.ttl : std::min(plan.ttl, ans.ttl);
      } else if (Temporary(ans.status)) {
        lookup_failed = true;
        if (!first_failure)
          first_failure = LookupFailed(order[f] == &h.a ? "A" : "AAAA", h.host, ans);
        continue;
      }
      for (const dns::Address& a : ans.addresses) {
        if (plan.targets.size() >= options.max_addresses)
          break;
        Target t{h.host, ToEndpoint(h.host, a, options.port)};
        const bool banned =
            std::any_of(options.prohibited.begin(), options.prohibited.end(),
                        [&](const Network& n) { return n.Contains(t.endpoint.addr); });
        if (banned) {
          ++prohibited;
          continue;
        }
        plan.targets.push_back(std::move(t));
      }
    }
  }
  if (!plan.targets.empty())
    return plan;
  if (lookup_failed) {
    plan.failure = first_failure;
  } else if (prohibited != 0) {
    // RFC 3463 X.4.4 "unable to route": every address is one we never connect to.
    plan.failure = Failure{550, "5.4.4",
                           "the mail exchangers of " + std::string(domain) +
                               " have only prohibited addresses (loopback, unspecified...)"};
  } else {
    // X.4.4: no address to route to (perhaps not yet: the records may come).
    plan.failure =
        Temporary("4.4.4", "no address for the mail exchangers of " + std::string(domain));
  }
  return plan;
}

}  // namespace spate::delivery::mx
