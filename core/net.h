// core/net.h
//
// Network address types of the runtime: an Endpoint ("host:port" resolved at start-up) and a
// Network (a CIDR block) with its membership test.
// Threading: value types; parsing may block (a host name in an Endpoint is resolved).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <sys/socket.h>

#include "core/result.h"

namespace spate {

struct Endpoint {
  std::string text;  // as configured, "host:port"
  sockaddr_storage addr{};
  socklen_t len = 0;
};

// An IP network, "192.0.2.0/24" or "2001:db8::/32" (a bare address is a /32 or /128).
struct Network {
  std::string text;                 // as configured
  int family = 0;                   // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};  // the address with its host bits cleared; IPv4 in the first 4
  unsigned prefix_len = 0;

  // An IPv4-mapped IPv6 address (::ffff:192.0.2.1, from a dual-stack listener) counts as IPv4.
  bool Contains(const sockaddr_storage& addr) const;
};
Result<Network> ParseNetwork(std::string_view text);

}  // namespace spate
