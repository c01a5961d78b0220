#include "core/proxy/proxy_protocol.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace spate::proxy {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr size_t kV1Max = 107;  // §2.1: the longest line, CRLF included
// §2.2: the v2 signature.
constexpr char kV2SigBytes[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                  '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr std::string_view kV2Sig(kV2SigBytes, 12);

Status Invalid(std::string* error, const char* why) {
  *error = why;
  return Status::kInvalid;
}

// A decimal port, 0..65535, without leading zeros (§2.1).
bool ParsePort(std::string_view s, uint16_t* port) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0'))
    return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535)
    return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

bool ParseAddress(int family, std::string_view text, uint16_t port, sockaddr_storage* out) {
  const std::string s(text);
  *out = {};
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    return inet_pton(AF_INET, s.c_str(), &sin->sin_addr) == 1;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  return inet_pton(AF_INET6, s.c_str(), &sin6->sin6_addr) == 1;
}

Status ParseV1(std::string_view input, Header* h, std::string* error) {
  // The line ends at its first CR, which must be followed by LF; no LF comes before it.
  const std::string_view head = input.substr(0, kV1Max);
  const size_t cr = head.find('\r');
  const size_t lf = head.find('\n');
  if (lf != std::string_view::npos && (cr == std::string_view::npos || lf < cr))
    return Invalid(error, "PROXY v1: a bare LF");
  if (cr == std::string_view::npos || cr + 1 >= head.size()) {
    if (input.size() >= kV1Max)
      return Invalid(error, "PROXY v1: no CRLF within 107 octets");
    return Status::kNeedMore;
  }
  if (head[cr + 1] != '\n')
    return Invalid(error, "PROXY v1: a bare CR");
  const size_t crlf = cr;
  std::string_view line = input.substr(kV1Prefix.size(), crlf - kV1Prefix.size());
  h->version = 1;
  h->length = crlf + 2;
  // "UNKNOWN" and anything after it (§2.1): the receiver uses the connection's addresses.
  if (line.substr(0, 7) == "UNKNOWN") {
    h->local = true;
    return Status::kDone;
  }
  std::string_view fields[5];
  for (int i = 0; i < 5; ++i) {
    const size_t sp = line.find(' ');
    if ((sp == std::string_view::npos) != (i == 4))
      return Invalid(error, "PROXY v1: not 'PROXY TCP4|TCP6 src dst sport dport'");
    fields[i] = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  }
  int family;
  if (fields[0] == "TCP4")
    family = AF_INET;
  else if (fields[0] == "TCP6")
    family = AF_INET6;
  else
    return Invalid(error, "PROXY v1: the protocol is not TCP4, TCP6 or UNKNOWN");
  uint16_t sport = 0;
  uint16_t dport = 0;
  if (!ParsePort(fields[3], &sport) || !ParsePort(fields[4], &dport))
    return Invalid(error, "PROXY v1: a port is not 0..65535");
  if (!ParseAddress(family, fields[1], sport, &h->source) ||
      !ParseAddress(family, fields[2], dport, &h->destination))
    return Invalid(error, "PROXY v1: an address is not of its protocol");
  return Status::kDone;
}

Status ParseV2(std::string_view input, Header* h, std::string* error) {
  if (input.size() < 16)
    return Status::kNeedMore;
  const auto ver_cmd = static_cast<uint8_t>(input[12]);
  const auto fam = static_cast<uint8_t>(input[13]);
  const size_t len =
      (static_cast<size_t>(static_cast<uint8_t>(input[14])) << 8) | static_cast<uint8_t>(input[15]);
  if ((ver_cmd >> 4) != 2)
    return Invalid(error, "PROXY v2: not version 2");
  const int command = ver_cmd & 0xf;
  if (command != 0 && command != 1)
    return Invalid(error, "PROXY v2: the command is neither LOCAL nor PROXY");
  if (16 + len > kMaxHeader)
    return Invalid(error, "PROXY v2: the header is too long");
  if (input.size() < 16 + len)
    return Status::kNeedMore;
  h->version = 2;
  h->length = 16 + len;
  const std::string_view block = input.substr(16, len);
  // LOCAL: the balancer's own connection (a health check); the block is to be ignored.
  // UNSPEC, UNIX and UDP: nothing we can use as a client address either (§2.2).
  if (command == 0 || (fam != 0x11 && fam != 0x21)) {
    h->local = true;
    return Status::kDone;
  }
  if (fam == 0x11) {  // TCP over IPv4: src(4) dst(4) sport(2) dport(2)
    if (block.size() < 12)
      return Invalid(error, "PROXY v2: the IPv4 address block is short");
    auto* src = reinterpret_cast<sockaddr_in*>(&h->source);
    auto* dst = reinterpret_cast<sockaddr_in*>(&h->destination);
    src->sin_family = dst->sin_family = AF_INET;
    std::memcpy(&src->sin_addr, block.data(), 4);
    std::memcpy(&dst->sin_addr, block.data() + 4, 4);
    std::memcpy(&src->sin_port, block.data() + 8, 2);  // network order, as it is
    std::memcpy(&dst->sin_port, block.data() + 10, 2);
    return Status::kDone;
  }
  if (block.size() < 36)  // TCP over IPv6: src(16) dst(16) sport(2) dport(2)
    return Invalid(error, "PROXY v2: the IPv6 address block is short");
  auto* src = reinterpret_cast<sockaddr_in6*>(&h->source);
  auto* dst = reinterpret_cast<sockaddr_in6*>(&h->destination);
  src->sin6_family = dst->sin6_family = AF_INET6;
  std::memcpy(&src->sin6_addr, block.data(), 16);
  std::memcpy(&dst->sin6_addr, block.data() + 16, 16);
  std::memcpy(&src->sin6_port, block.data() + 32, 2);
  std::memcpy(&dst->sin6_port, block.data() + 34, 2);
  return Status::kDone;
}

}  // namespace

Status Parse(std::string_view input, Header* header, std::string* error) {
  *header = Header{};
  // Which version: by the first octets; anything that cannot begin either is refused at once
  // (a client talking SMTP to a port that expects the header).
  if (input.empty())
    return Status::kNeedMore;
  const size_t n1 = std::min(input.size(), kV1Prefix.size());
  const size_t n2 = std::min(input.size(), kV2Sig.size());
  if (input.substr(0, n1) == kV1Prefix.substr(0, n1)) {
    if (input.size() < kV1Prefix.size())
      return Status::kNeedMore;
    return ParseV1(input, header, error);
  }
  if (input.substr(0, n2) == kV2Sig.substr(0, n2)) {
    if (input.size() < kV2Sig.size())
      return Status::kNeedMore;
    return ParseV2(input, header, error);
  }
  return Invalid(error, "no PROXY protocol header");
}

}  // namespace spate::proxy
