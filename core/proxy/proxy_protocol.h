// core/proxy/proxy_protocol.h
//
// The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt, 2020-03-05): the header
// a TCP load balancer sends first on each connection it opens to a backend, naming the client
// it accepted. spate reads it on the submission ports when [server] proxy_protocol is on, from
// [server] proxy_networks only, so that relay control, per-client limits, AUTH lockout and
// Received: see the real client.
//
// Sans-I/O and stateless: Parse() is given everything read so far and says whether a header
// is complete (and how long), needs more, or cannot be one. Every input is hostile; a header
// is at most kMaxHeader octets.
// Threading: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace spate::proxy {

// v1: 107 octets at most (§2.1); v2: 16 and the address block, which we bound here (TLVs a
// balancer adds, such as HAProxy's unique-id and SSL ones, fit in well under this).
inline constexpr size_t kMaxHeader = 4096;

enum class Status { kNeedMore, kDone, kInvalid };

struct Header {
  int version = 0;    // 1 or 2
  size_t length = 0;  // octets of the header: what follows is the client's
  // The balancer's own connection (v2 LOCAL, a health check; v1 UNKNOWN; v2 UNSPEC or a
  // family other than TCP over IPv4/IPv6): no client address, use the connection's.
  bool local = false;
  sockaddr_storage source{};       // the client, when !local
  sockaddr_storage destination{};  // the address it connected to, when !local
};

// Parses the header at the start of `input`. kInvalid with `*error` saying why.
Status Parse(std::string_view input, Header* header, std::string* error);

}  // namespace spate::proxy
