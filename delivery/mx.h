// delivery/mx.h
//
// RFC 5321 §5.1 as pure functions of DNS answers: which hosts to try for a domain, in what
// order, at which addresses; or why there are none, as the reply its recipients get. The
// lookups themselves are the routing's (core/dns/resolver.h); this only decides.
//
//  - MX records by preference, lowest first; equal preferences in a random order (§5.1: the
//    load is spread); a host listed twice keeps its best preference.
//  - No MX (NODATA): the domain itself is the only host ("implicit MX", §5.1).
//  - A null MX (RFC 7505, "MX 0 ."): 556 5.1.10 at once, no connection (§3; RFC 7505 §4.2).
//  - NXDOMAIN: 550 5.1.2, at once. SERVFAIL, a timeout, an unvalidated answer: 451 4.4.3.
//  - Each host's A and AAAA, in the configured order of the families; at most max_addresses in
//    all per attempt (Postfix: 5). Addresses in prohibited networks are dropped; when that
//    leaves none: 550 5.4.4. Hosts without an address at all: 451 4.4.4; a host whose lookup
//    failed counts as "try again later" (451 4.4.3) rather than "no address".
// Threading: pure functions (the shuffle takes the caller's generator).
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/dns/resolver.h"
#include "core/net.h"
#include "delivery/routing.h"

namespace spate::delivery::mx {

// Why a domain's mail cannot go anywhere now: the reply every recipient of it gets.
using Failure = RouteFailure;

struct Hosts {
  std::vector<std::string> names;  // in the order to try them
  bool implicit = false;           // the domain itself: it has no MX
  uint32_t ttl = 0;                // of the MX answer
  std::optional<Failure> failure;  // set: no hosts
};
Hosts HostsFromMx(std::string_view domain, const dns::Answer& mx, std::mt19937_64& rng);

enum class Family : uint8_t { kIpv4First, kIpv6First, kIpv4Only, kIpv6Only };

struct AddressOptions {
  uint16_t port = 25;  // [delivery] mx_port
  Family family = Family::kIpv4First;
  size_t max_addresses = 5;
  std::vector<Network> prohibited;  // [delivery] prohibited_networks
};

// One host's address lookups, in the order HostsFromMx gave the hosts.
struct HostAnswers {
  std::string host;
  dns::Answer a;
  dns::Answer aaaa;
};

struct Target {
  std::string host;   // the MX host name (the TLS peer name, later)
  Endpoint endpoint;  // text "mx1.example.com[192.0.2.1]:25"
};

struct Plan {
  std::vector<Target> targets;     // in the order to try them; empty when failure is set
  uint32_t ttl = 0;                // the smallest TTL of the answers used
  std::optional<Failure> failure;  // set: nowhere to connect
};
Plan PlanAddresses(std::string_view domain, const Hosts& hosts,
                   const std::vector<HostAnswers>& answers, const AddressOptions& options);

}  // namespace spate::delivery::mx
