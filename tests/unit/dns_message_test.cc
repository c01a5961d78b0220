// core/dns/message.h: the queries spate sends with [dns] trust_ad, and the replies it reads,
// built here octet by octet, with compression, CNAME chains and hostile shapes.
#include <optional>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "core/dns/message.h"
#include "core/dns/wire.h"

namespace spate::dns {
namespace {

std::string U16(uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}
std::string U32(uint32_t v) {
  return U16(static_cast<uint16_t>(v >> 16)) + U16(v & 0xffff);
}

std::string Name(std::string_view text) {
  std::string out;
  while (!text.empty()) {
    const size_t dot = text.find('.');
    const std::string_view label = text.substr(0, dot);
    out.push_back(static_cast<char>(label.size()));
    out.append(label);
    text = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  }
  out.push_back('\0');
  return out;
}

std::string Ptr(uint16_t offset) {
  return U16(static_cast<uint16_t>(0xc000 | offset));
}

// A reply header and the question `qname` `qtype` (at offset 12).
std::string Head(uint16_t flags, uint16_t an, uint16_t ns, std::string_view qname, uint16_t qtype) {
  return U16(0x1234) + U16(flags) + U16(1) + U16(an) + U16(ns) + U16(0) + Name(qname) + U16(qtype) +
         U16(1);
}

std::string Rr(const std::string& owner, uint16_t type, uint32_t ttl, const std::string& rdata) {
  return owner + U16(type) + U16(1) + U32(ttl) + U16(static_cast<uint16_t>(rdata.size())) + rdata;
}

TEST(DnsMessageTest, AQueryAsksForAdAndDnssecRecordsOverEdns) {
  const std::string q = BuildQuery(0xbeef, "Mail.Test.", kRrMx);
  const std::string want = U16(0xbeef) + U16(0x0120) + U16(1) + U16(0) + U16(0) + U16(1) +
                           Name("mail.test") + U16(kRrMx) + U16(1) +
                           // OPT: root, type 41, payload 1232, rcode/version 0, DO, no rdata
                           std::string(1, '\0') + U16(41) + U16(1232) + U16(0) + U16(0x8000) +
                           U16(0);
  EXPECT_EQ(q, want);
  EXPECT_EQ(BuildQuery(1, "a..test", kRrA), "") << "an empty label";
  EXPECT_EQ(BuildQuery(1, std::string(64, 'a') + ".test", kRrA), "") << "a label over 63";
  std::string long_name;
  for (int i = 0; i < 64; ++i)
    long_name += "abc.";
  EXPECT_EQ(BuildQuery(1, long_name, kRrA), "") << "over 255 octets";
}

TEST(DnsMessageTest, CompressedMxComesUncompressedWithTheLeastTtlAndTheAdBit) {
  // mail.test MX 10 mx1.<ptr to mail.test>; MX 20 <ptr to the first exchange>
  std::string p = Head(0x81a0, 2, 0, "mail.test", kRrMx);
  const size_t first_rdata = p.size() + 2 + 10;
  p += Rr(Ptr(12), kRrMx, 300, U16(10) + "\x03mx1" + Ptr(12));
  p += Rr(Ptr(12), kRrMx, 200, U16(20) + Ptr(static_cast<uint16_t>(first_rdata + 2)));
  std::optional<Reply> r = ParseReply(p, "MAIL.test", kRrMx);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->authentic);
  EXPECT_FALSE(r->truncated);
  EXPECT_EQ(r->rcode, 0);
  EXPECT_EQ(r->id, 0x1234);
  EXPECT_EQ(r->ttl, 200u);
  ASSERT_EQ(r->rdata.size(), 2u);
  EXPECT_EQ(ParseMx(r->rdata[0]), (MxRecord{10, "mx1.mail.test"}));
  EXPECT_EQ(ParseMx(r->rdata[1]), (MxRecord{20, "mx1.mail.test"}));
}

TEST(DnsMessageTest, TheCnameChainIsFollowedInAnyOrder) {
  // www.test CNAME a.test CNAME b.test, given out of order: b.test's A, then the CNAMEs.
  std::string p = Head(0x8180, 4, 0, "www.test", kRrA);
  p += Rr(Name("b.test"), kRrA, 60, std::string("\x7f\x00\x00\x02", 4));
  p += Rr(Name("other.test"), kRrA, 60, std::string("\x7f\x00\x00\x09", 4));  // off the chain
  p += Rr(Name("a.test"), kRrCname, 30, Name("b.test"));
  p += Rr(Ptr(12), kRrCname, 300, Name("a.test"));
  std::optional<Reply> r = ParseReply(p, "www.test", kRrA);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->rdata.size(), 1u);
  EXPECT_EQ(r->rdata[0], std::string("\x7f\x00\x00\x02", 4));
  EXPECT_EQ(r->ttl, 30u) << "the least along the chain";
  EXPECT_FALSE(r->authentic);
}

TEST(DnsMessageTest, NegativeAnswersCarryTheSoaMinimum) {
  const std::string soa =
      Name("ns.test") + Name("host.test") + U32(1) + U32(2) + U32(3) + U32(4) + U32(45);
  std::string nx = Head(0x8183, 0, 1, "gone.test", kRrMx) + Rr(Name("test"), kRrSoa, 600, soa);
  std::optional<Reply> r = ParseReply(nx, "gone.test", kRrMx);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->rcode, 3);
  EXPECT_EQ(r->negative_ttl, 45u);
  std::string nodata = Head(0x8180, 0, 1, "a.test", kRrMx) + Rr(Name("test"), kRrSoa, 20, soa);
  r = ParseReply(nodata, "a.test", kRrMx);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->rdata.empty());
  EXPECT_EQ(r->negative_ttl, 20u) << "the SOA's own TTL when it is less";
}

TEST(DnsMessageTest, HostileRepliesAreRefusedWhole) {
  const std::string good = Head(0x8180, 1, 0, "a.test", kRrA) + Rr(Ptr(12), kRrA, 1, "1234");
  ASSERT_TRUE(ParseReply(good, "a.test", kRrA).has_value());
  for (size_t cut = 0; cut < good.size(); ++cut)
    EXPECT_FALSE(ParseReply(good.substr(0, cut), "a.test", kRrA).has_value()) << cut;
  EXPECT_FALSE(ParseReply(good, "b.test", kRrA).has_value()) << "another question";
  EXPECT_FALSE(ParseReply(good, "a.test", kRrMx).has_value()) << "another type";
  std::string query = good;
  query[2] = 0x01;  // QR clear
  EXPECT_FALSE(ParseReply(query, "a.test", kRrA).has_value()) << "not a response";
  // A pointer to itself, and one pointing forward.
  std::string loop = Head(0x8180, 1, 0, "a.test", kRrA);
  loop += Ptr(static_cast<uint16_t>(loop.size())) + U16(kRrA) + U16(1) + U32(1) + U16(4) + "1234";
  EXPECT_FALSE(ParseReply(loop, "a.test", kRrA).has_value());
  std::string forward = Head(0x8180, 1, 0, "a.test", kRrA);
  forward += Ptr(static_cast<uint16_t>(forward.size() + 2)) + Name("a.test") + U16(kRrA) + U16(1) +
             U32(1) + U16(4) + "1234";
  EXPECT_FALSE(ParseReply(forward, "a.test", kRrA).has_value());
  // An MX whose exchange runs past its rdata length.
  std::string mx = Head(0x8180, 1, 0, "a.test", kRrMx);
  mx += Ptr(12) + U16(kRrMx) + U16(1) + U32(1) + U16(4) + U16(10) + Name("x.test");
  EXPECT_FALSE(ParseReply(mx, "a.test", kRrMx).has_value());
  // A CNAME loop ends (each link once) with nothing of the type.
  std::string cloop = Head(0x8180, 2, 0, "a.test", kRrA);
  cloop += Rr(Name("a.test"), kRrCname, 1, Name("b.test"));
  cloop += Rr(Name("b.test"), kRrCname, 1, Name("a.test"));
  std::optional<Reply> r = ParseReply(cloop, "a.test", kRrA);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->rdata.empty());
}

TEST(DnsMessageTest, ATruncatedReplySaysSoWithoutItsRecords) {
  const std::string tc = Head(0x8380, 5, 0, "a.test", kRrTxt);  // TC, counts past the end
  std::optional<Reply> r = ParseReply(tc, "a.test", kRrTxt);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->truncated);
  EXPECT_TRUE(r->rdata.empty());
}

}  // namespace
}  // namespace spate::dns
