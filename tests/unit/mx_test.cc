// delivery/mx: RFC 5321 §5.1 from DNS answers (no network: the answers are made here).
#include "delivery/mx.h"

#include <set>
#include <string>
#include <vector>

#include <arpa/inet.h>

#include <gtest/gtest.h>

namespace spate::delivery::mx {
namespace {

dns::Answer MxAnswer(std::vector<dns::MxRecord> records, uint32_t ttl = 3600) {
  dns::Answer a;
  a.status = dns::Status::kOk;
  a.ttl = ttl;
  a.mx = std::move(records);
  return a;
}

dns::Answer Status(dns::Status s) {
  dns::Answer a;
  a.status = s;
  return a;
}

dns::Answer Addresses(std::vector<std::string> texts, uint32_t ttl = 300) {
  dns::Answer a;
  a.status = dns::Status::kOk;
  a.ttl = ttl;
  for (const std::string& t : texts) {
    dns::Address addr;
    if (t.find(':') != std::string::npos) {
      addr.family = AF_INET6;
      inet_pton(AF_INET6, t.c_str(), &addr.v6);
    } else {
      addr.family = AF_INET;
      inet_pton(AF_INET, t.c_str(), &addr.v4);
    }
    a.addresses.push_back(addr);
  }
  return a;
}

std::vector<std::string> Texts(const Plan& p) {
  std::vector<std::string> out;
  for (const Target& t : p.targets)
    out.push_back(t.endpoint.text);
  return out;
}

TEST(MxHostsTest, ByPreferenceLowestFirst) {
  std::mt19937_64 rng(1);
  Hosts h =
      HostsFromMx("example.com", MxAnswer({{20, "b.example.com"}, {10, "a.example.com"}}), rng);
  ASSERT_FALSE(h.failure.has_value());
  EXPECT_EQ(h.names, (std::vector<std::string>{"a.example.com", "b.example.com"}));
  EXPECT_FALSE(h.implicit);
  EXPECT_EQ(h.ttl, 3600u);
}

// §5.1: hosts of equal preference are tried in a random order, so the load spreads; the
// preference order itself never changes.
TEST(MxHostsTest, EqualPreferencesAreShuffledTheOrderOfPreferencesKept) {
  std::set<std::vector<std::string>> seen;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    std::mt19937_64 rng(seed);
    Hosts h = HostsFromMx(
        "example.com", MxAnswer({{10, "a1"}, {10, "a2"}, {10, "a3"}, {5, "first"}, {30, "last"}}),
        rng);
    ASSERT_EQ(h.names.size(), 5u);
    EXPECT_EQ(h.names.front(), "first");
    EXPECT_EQ(h.names.back(), "last");
    seen.insert({h.names[1], h.names[2], h.names[3]});
  }
  EXPECT_EQ(seen.size(), 6u) << "every order of the three equal hosts comes up";
}

TEST(MxHostsTest, AHostListedTwiceKeepsItsBestPreference) {
  std::mt19937_64 rng(1);
  Hosts h = HostsFromMx("example.com", MxAnswer({{30, "x"}, {20, "y"}, {10, "x"}}), rng);
  EXPECT_EQ(h.names, (std::vector<std::string>{"x", "y"}));
}

TEST(MxHostsTest, NoMxMeansTheDomainItself) {
  std::mt19937_64 rng(1);
  Hosts h = HostsFromMx("example.com", Status(dns::Status::kNoData), rng);
  ASSERT_FALSE(h.failure.has_value());
  EXPECT_EQ(h.names, std::vector<std::string>{"example.com"});
  EXPECT_TRUE(h.implicit);
}

TEST(MxHostsTest, NullMxNxDomainAndLookupFailures) {
  std::mt19937_64 rng(1);
  Hosts null_mx = HostsFromMx("nomail.example", MxAnswer({{0, ""}}), rng);
  ASSERT_TRUE(null_mx.failure.has_value());
  EXPECT_EQ(null_mx.failure->code, 556);  // RFC 7505 §4.2
  EXPECT_EQ(null_mx.failure->enhanced, "5.1.10");
  EXPECT_TRUE(null_mx.names.empty());

  Hosts nx = HostsFromMx("gone.example", Status(dns::Status::kNxDomain), rng);
  ASSERT_TRUE(nx.failure.has_value());
  EXPECT_EQ(nx.failure->code, 550);
  EXPECT_EQ(nx.failure->enhanced, "5.1.2");
  EXPECT_TRUE(nx.failure->permanent());

  for (dns::Status s :
       {dns::Status::kServFail, dns::Status::kTimeout, dns::Status::kBogus, dns::Status::kError}) {
    Hosts h = HostsFromMx("flaky.example", Status(s), rng);
    ASSERT_TRUE(h.failure.has_value()) << dns::StatusName(s);
    EXPECT_EQ(h.failure->code, 451);
    EXPECT_EQ(h.failure->enhanced, "4.4.3");
    EXPECT_FALSE(h.failure->permanent());
    EXPECT_NE(h.failure->text.find(dns::StatusName(s)), std::string::npos) << h.failure->text;
  }
  // A null MX beside real ones is ignored (RFC 7505 §3 forbids the mix; the real ones win).
  Hosts mixed = HostsFromMx("odd.example", MxAnswer({{0, ""}, {10, "mx.odd.example"}}), rng);
  EXPECT_FALSE(mixed.failure.has_value());
  EXPECT_EQ(mixed.names, std::vector<std::string>{"mx.odd.example"});
}

Hosts Two() {
  Hosts h;
  h.names = {"mx1.example.com", "mx2.example.com"};
  h.ttl = 3600;
  return h;
}

TEST(MxPlanTest, EachHostsAddressesInTheFamiliesOrderAtTheMxPort) {
  const std::vector<HostAnswers> answers = {
      {"mx1.example.com", Addresses({"192.0.2.1"}), Addresses({"2001:db8::1"})},
      {"mx2.example.com", Addresses({"192.0.2.2", "192.0.2.3"}), Status(dns::Status::kNoData)}};
  AddressOptions o;
  o.port = 2525;
  Plan v4 = PlanAddresses("example.com", Two(), answers, o);
  ASSERT_FALSE(v4.failure.has_value());
  EXPECT_EQ(Texts(v4), (std::vector<std::string>{
                           "mx1.example.com[192.0.2.1]:2525", "mx1.example.com[2001:db8::1]:2525",
                           "mx2.example.com[192.0.2.2]:2525", "mx2.example.com[192.0.2.3]:2525"}));
  EXPECT_EQ(v4.targets[1].endpoint.addr.ss_family, AF_INET6);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6&>(v4.targets[1].endpoint.addr).sin6_port),
            2525);
  EXPECT_EQ(v4.ttl, 300u) << "the smallest TTL of what was used";
  o.family = Family::kIpv6First;
  EXPECT_EQ(Texts(PlanAddresses("example.com", Two(), answers, o)).front(),
            "mx1.example.com[2001:db8::1]:2525");
  o.family = Family::kIpv4Only;
  EXPECT_EQ(PlanAddresses("example.com", Two(), answers, o).targets.size(), 3u);
  o.family = Family::kIpv6Only;
  EXPECT_EQ(Texts(PlanAddresses("example.com", Two(), answers, o)),
            std::vector<std::string>{"mx1.example.com[2001:db8::1]:2525"});
}

TEST(MxPlanTest, AtMostMaxAddressesPerAttempt) {
  Hosts h;
  h.names = {"big.example.com"};
  const std::vector<HostAnswers> answers = {
      {"big.example.com",
       Addresses({"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"}),
       Addresses({"2001:db8::1"})}};
  AddressOptions o;  // 5, as Postfix
  EXPECT_EQ(PlanAddresses("example.com", h, answers, o).targets.size(), 5u);
  o.max_addresses = 2;
  EXPECT_EQ(PlanAddresses("example.com", h, answers, o).targets.size(), 2u);
}

TEST(MxPlanTest, ProhibitedAddressesAreNeverTargets) {
  AddressOptions o;
  for (const char* n : {"0.0.0.0/8", "127.0.0.0/8", "::1/128", "::/128"})
    o.prohibited.push_back(*ParseNetwork(n));
  const std::vector<HostAnswers> some = {
      {"mx1.example.com", Addresses({"127.0.0.1"}), Addresses({"::1"})},
      {"mx2.example.com", Addresses({"192.0.2.2"}), Status(dns::Status::kNoData)}};
  EXPECT_EQ(Texts(PlanAddresses("example.com", Two(), some, o)),
            std::vector<std::string>{"mx2.example.com[192.0.2.2]:25"});
  const std::vector<HostAnswers> only = {
      {"mx1.example.com", Addresses({"127.0.0.1"}), Addresses({"::"})},
      {"mx2.example.com", Addresses({"0.0.0.0"}), Status(dns::Status::kNoData)}};
  Plan p = PlanAddresses("example.com", Two(), only, o);
  ASSERT_TRUE(p.failure.has_value());
  EXPECT_EQ(p.failure->code, 550);
  EXPECT_EQ(p.failure->enhanced, "5.4.4");
  EXPECT_TRUE(p.targets.empty());
}

TEST(MxPlanTest, NoAddressIsDeferredAndAFailedLookupSaysSo) {
  const std::vector<HostAnswers> none = {
      {"mx1.example.com", Status(dns::Status::kNxDomain), Status(dns::Status::kNxDomain)},
      {"mx2.example.com", Status(dns::Status::kNoData), Status(dns::Status::kNoData)}};
  Plan p = PlanAddresses("example.com", Two(), none, AddressOptions{});
  ASSERT_TRUE(p.failure.has_value());
  EXPECT_EQ(p.failure->code, 451);
  EXPECT_EQ(p.failure->enhanced, "4.4.4");
  const std::vector<HostAnswers> failed = {
      {"mx1.example.com", Status(dns::Status::kTimeout), Status(dns::Status::kTimeout)},
      {"mx2.example.com", Status(dns::Status::kNoData), Status(dns::Status::kNoData)}};
  p = PlanAddresses("example.com", Two(), failed, AddressOptions{});
  ASSERT_TRUE(p.failure.has_value());
  EXPECT_EQ(p.failure->enhanced, "4.4.3");
  EXPECT_NE(p.failure->text.find("mx1.example.com"), std::string::npos) << p.failure->text;
  // One host failing does not stop the others.
  const std::vector<HostAnswers> half = {
      {"mx1.example.com", Status(dns::Status::kServFail), Status(dns::Status::kServFail)},
      {"mx2.example.com", Addresses({"192.0.2.2"}), Status(dns::Status::kNoData)}};
  EXPECT_EQ(Texts(PlanAddresses("example.com", Two(), half, AddressOptions{})),
            std::vector<std::string>{"mx2.example.com[192.0.2.2]:25"});
}

TEST(MxPlanTest, AFailureOfTheMxLookupIsThePlans) {
  Hosts h;
  h.failure = Failure{556, "5.1.10", "null MX"};
  Plan p = PlanAddresses("example.com", h, {}, AddressOptions{});
  EXPECT_EQ(p.failure, h.failure);
}

}  // namespace
}  // namespace spate::delivery::mx
