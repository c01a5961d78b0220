// core/proxy/proxy_protocol.h: PROXY protocol v1 and v2 headers, whole, cut anywhere, and
// hostile.
#include "core/proxy/proxy_protocol.h"

#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

namespace spate::proxy {
namespace {

std::string Ip(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a)->sin_addr, buf, sizeof buf);
  else if (a.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr, buf, sizeof buf);
  return buf;
}

int Port(const sockaddr_storage& a) {
  return a.ss_family == AF_INET ? ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port)
                                : ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port);
}

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string V2(uint8_t ver_cmd, uint8_t fam, const std::string& block) {
  return kSig +
         std::string{static_cast<char>(ver_cmd), static_cast<char>(fam),
                     static_cast<char>(block.size() >> 8), static_cast<char>(block.size() & 0xff)} +
         block;
}

// Every prefix of a complete header needs more; the whole says done, with what follows left.
void ExpectWholeAndCut(const std::string& header, Header* out) {
  std::string error;
  for (size_t n = 0; n < header.size(); ++n)
    ASSERT_EQ(Parse(header.substr(0, n), out, &error), Status::kNeedMore) << n << " " << error;
  ASSERT_EQ(Parse(header + "EHLO x\r\n", out, &error), Status::kDone) << error;
  EXPECT_EQ(out->length, header.size());
}

TEST(ProxyProtocolTest, V1Tcp4AndTcp6) {
  Header h;
  ExpectWholeAndCut("PROXY TCP4 192.0.2.10 127.0.0.1 56324 25\r\n", &h);
  EXPECT_EQ(h.version, 1);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(Ip(h.source), "192.0.2.10");
  EXPECT_EQ(Port(h.source), 56324);
  EXPECT_EQ(Ip(h.destination), "127.0.0.1");
  EXPECT_EQ(Port(h.destination), 25);
  ExpectWholeAndCut("PROXY TCP6 2001:db8::7 ::1 1 587\r\n", &h);
  EXPECT_EQ(Ip(h.source), "2001:db8::7");
  EXPECT_EQ(Port(h.destination), 587);
  ExpectWholeAndCut("PROXY UNKNOWN ffff::1 ::1 1 2\r\n", &h);
  EXPECT_TRUE(h.local) << "UNKNOWN: the connection's own addresses";
}

TEST(ProxyProtocolTest, V2ProxyOverIpv4AndIpv6WithTlvsAndLocal) {
  Header h;
  // 203.0.113.5:40000 -> 127.0.0.1:2525, then a TLV (PP2_TYPE_UNIQUE_ID) that is skipped.
  std::string v4 =
      std::string("\xcb\x00\x71\x05\x7f\x00\x00\x01\x9c\x40\x09\xdd", 12) + std::string(
                                                                                "\x05\x00\x03"
                                                                                "abc",
                                                                                6);
  ExpectWholeAndCut(V2(0x21, 0x11, v4), &h);
  EXPECT_EQ(h.version, 2);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(Ip(h.source), "203.0.113.5");
  EXPECT_EQ(Port(h.source), 40000);
  EXPECT_EQ(Port(h.destination), 2525);
  std::string v6(36, '\0');
  v6[0] = '\x20', v6[1] = '\x01', v6[2] = '\x0d', v6[3] = '\xb8', v6[15] = '\x09';
  v6[31] = '\x01';
  v6[32] = '\x30', v6[33] = '\x39', v6[35] = '\x19';
  ExpectWholeAndCut(V2(0x21, 0x21, v6), &h);
  EXPECT_EQ(Ip(h.source), "2001:db8::9");
  EXPECT_EQ(Port(h.source), 12345);
  EXPECT_EQ(Ip(h.destination), "::1");
  // LOCAL (a health check) and an UNSPEC or UNIX family: no client address.
  ExpectWholeAndCut(V2(0x20, 0x00, ""), &h);
  EXPECT_TRUE(h.local);
  ExpectWholeAndCut(V2(0x21, 0x31, std::string(216, 'x')), &h);
  EXPECT_TRUE(h.local);
}

TEST(ProxyProtocolTest, AnythingElseIsRefusedAtOnce) {
  Header h;
  std::string error;
  for (const std::string& bad : {
           std::string("EHLO client.test\r\n"),  // a client talking SMTP to a proxied port
           std::string("E"), std::string("PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n"),
           std::string("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"),
           std::string("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"),
           std::string("PROXY TCP4 ::1 1.2.3.4 1 2\r\n"),
           std::string("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"),
           std::string("PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n"),
           std::string("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n"),
           std::string("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r\n"),
           std::string("PROXY UNKNOWN\n x\r\n"),       // the fuzzer's: a bare LF before the CRLF
           "PROXY TCP4 " + std::string(120, '1'),      // no CRLF within 107 octets
           V2(0x11, 0x11, std::string(12, '\0')),      // version 1 in a v2 header
           V2(0x22, 0x11, std::string(12, '\0')),      // command 2
           V2(0x21, 0x11, std::string(11, '\0')),      // an IPv4 block too short
           V2(0x21, 0x21, std::string(35, '\0')),      // an IPv6 block too short
           kSig + std::string("\x21\x11\x10\x00", 4),  // 4096 octets of block: over the bound
       }) {
    error.clear();
    EXPECT_EQ(Parse(bad, &h, &error), Status::kInvalid) << bad;
    EXPECT_FALSE(error.empty());
  }
}

}  // namespace
}  // namespace spate::proxy
