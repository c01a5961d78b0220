// core/dns: the rdata parsers against hostile input, and the Resolver on a real io_uring
// reactor against a real DNS server on loopback (tests/dns/dnsserver.py, python3-dnslib).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/dns/resolver.h"
#include "core/dns/wire.h"
#include "core/reactor.h"

namespace spate::dns {
namespace {

using namespace std::chrono_literals;

std::string Wire(std::initializer_list<std::string_view> labels) {
  std::string out;
  for (std::string_view l : labels) {
    out.push_back(static_cast<char>(l.size()));
    out.append(l);
  }
  out.push_back('\0');
  return out;
}

TEST(DnsWireTest, MxPreferenceAndExchangeInLowerCase) {
  const std::string rdata = std::string("\x00\x0a", 2) + Wire({"MX1", "Example", "COM"});
  std::optional<MxRecord> mx = ParseMx(rdata);
  ASSERT_TRUE(mx.has_value());
  EXPECT_EQ(mx->preference, 10);
  EXPECT_EQ(mx->host, "mx1.example.com");
}

TEST(DnsWireTest, NullMxIsTheRoot) {
  // RFC 7505: "MX 0 ." says the domain takes no mail.
  std::optional<MxRecord> mx = ParseMx(std::string("\x00\x00\x00", 3));
  ASSERT_TRUE(mx.has_value());
  EXPECT_EQ(mx->preference, 0);
  EXPECT_EQ(mx->host, "");
}

TEST(DnsWireTest, HostileRdataIsRefusedWhole) {
  const std::string pref("\x00\x01", 2);
  std::vector<std::string> bad = {
      "",    // nothing
      pref,  // no name
      pref + std::string("\x03"
                         "abc",
                         4),              // ends inside the name
      pref + std::string("\xc0\x0c", 2),  // a compression pointer
      pref + std::string("\x40") + std::string(64, 'a') + std::string(1, '\0'),  // label > 63
      pref + Wire({"a b", "test"}),       // a space in a label
      pref + Wire({"a\nb", "test"}),      // a line end in a label
      pref + Wire({"ok", "test"}) + "x",  // something after the name
  };
  std::string long_name = pref;  // 5 x 63-octet labels: over 255 octets
  for (int i = 0; i < 5; ++i)
    long_name += std::string(1, 63) + std::string(63, 'a');
  long_name.push_back('\0');
  bad.push_back(long_name);
  for (const std::string& rdata : bad)
    EXPECT_FALSE(ParseMx(rdata).has_value()) << testing::PrintToString(rdata);
}

// RFC 1035 §2.3.4: 255 octets in wire form, the final zero included, and not one more.
TEST(DnsWireTest, ANameOf255OctetsAndNotOneMore) {
  auto name = [](size_t last) {
    std::string out("\x00\x01", 2);
    for (int i = 0; i < 3; ++i)
      out += std::string(1, 63) + std::string(63, 'a');
    out += std::string(1, static_cast<char>(last)) + std::string(last, 'b');
    out.push_back('\0');
    return out;
  };
  std::optional<MxRecord> max = ParseMx(name(61));  // 3 x 64 + 62 + 1 = 255
  ASSERT_TRUE(max.has_value());
  EXPECT_EQ(max->host.size(), 253u);
  EXPECT_FALSE(ParseMx(name(62)).has_value());  // 256
}

TEST(DnsWireTest, TxtStringsAreJoinedAndALengthPastTheEndIsRefused) {
  EXPECT_EQ(ParseTxt(std::string("\x03"
                                 "abc"
                                 "\x02"
                                 "de",
                                 7)),
            "abcde");
  EXPECT_EQ(ParseTxt(std::string("\x00", 1)), "");
  EXPECT_EQ(ParseTxt(""), "");
  EXPECT_FALSE(ParseTxt(std::string("\x04"
                                    "abc",
                                    4))
                   .has_value());
  EXPECT_FALSE(ParseTxt(std::string("\x01"
                                    "a"
                                    "\x05"
                                    "b",
                                    4))
                   .has_value());
}

TEST(DnsWireTest, AddressesHaveTheirExactSize) {
  EXPECT_TRUE(ParseA(std::string("\x7f\x00\x00\x02", 4)).has_value());
  EXPECT_FALSE(ParseA(std::string("\x7f\x00\x00", 3)).has_value());
  EXPECT_FALSE(ParseA(std::string(5, '\0')).has_value());
  EXPECT_TRUE(ParseAaaa(std::string(16, '\0')).has_value());
  EXPECT_FALSE(ParseAaaa(std::string(15, '\0')).has_value());
}

// A real DNS server for one test: tests/dns/dnsserver.py on a free loopback port, answering
// from a zone file the test writes (and may rewrite). Its queries are counted from its output.
class DnsServer {
 public:
  explicit DnsServer(const std::string& zone_json) {
    char dir[] = "/tmp/dns_test.XXXXXX";
    dir_ = mkdtemp(dir);
    zone_ = dir_ + "/zone.json";
    log_ = dir_ + "/queries.log";
    SetZone(zone_json);
    int out[2];
    if (pipe(out) != 0)
      return;
    pid_ = fork();
    if (pid_ == 0) {
      FILE* log = std::fopen(log_.c_str(), "w");
      dup2(fileno(log), STDOUT_FILENO);
      execl("/usr/bin/python3", "python3", SPATE_DNS_SERVER, zone_.c_str(), nullptr);
      _exit(127);
    }
    close(out[0]);
    close(out[1]);
    // The port, once the server has printed it.
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (port_ == 0 && std::chrono::steady_clock::now() < end) {
      std::ifstream in(log_);
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("port=", 0) == 0)
          port_ = std::stoi(line.substr(5));
      }
      if (port_ == 0)
        usleep(20000);
    }
  }
  ~DnsServer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::remove(zone_.c_str());
    std::remove(log_.c_str());
    rmdir(dir_.c_str());
  }
  void SetZone(const std::string& json) {
    const std::string tmp = zone_ + ".tmp";
    std::ofstream(tmp) << json;
    std::rename(tmp.c_str(), zone_.c_str());
  }
  int port() const { return port_; }
  // Queries the server got for `name` (lower case, with the final dot) and `type` ("MX").
  int Queries(const std::string& name, const std::string& type) const {
    std::ifstream in(log_);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      if (line == "query " + name + " " + type)
        ++n;
    }
    return n;
  }

 private:
  std::string dir_;
  std::string zone_;
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

const char* kZone = R"({
  "records": [
    ["mail.test.", "MX", 3600, "10 MX1.Mail.Test."],
    ["mail.test.", "MX", 3600, "20 mx2.mail.test."],
    ["mx1.mail.test.", "A", 3600, "127.0.0.2"],
    ["mx1.mail.test.", "AAAA", 3600, "::1"],
    ["nomail.test.", "MX", 3600, "0 ."],
    ["_mta-sts.mail.test.", "TXT", 300, "\"v=STSv1; \" \"id=20261201T1;\""],
    ["_mta-sts.mail.test.", "TXT", 300, "\"something else\""],
    ["_25._tcp.mx1.mail.test.", "TLSA", 300, "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]
  ],
  "servfail": ["broken.test."],
  "drop": ["slow.test."],
  "authentic": ["mail.test."]
})";

// Both backends: libunbound (false) and, with trust_ad, queries of spate's own (true).
class ResolverTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ASSERT_GT(server_.port(), 0) << "the DNS server did not start (python3-dnslib?)";
    auto r = Reactor::Create(64);
    ASSERT_TRUE(r.has_value());
    reactor_ = std::move(r).value();
  }

  std::unique_ptr<Resolver> Make(Seconds timeout = Seconds(5), unsigned max_inflight = 16) {
    Resolver::Options o;
    o.nameservers = {"127.0.0.1:" + std::to_string(server_.port())};
    o.timeout = timeout;
    o.max_inflight = max_inflight;
    o.trust_ad = GetParam();
    std::string error;
    auto resolver = Resolver::Create(*reactor_, o, &stats_, &error);
    EXPECT_TRUE(resolver.has_value()) << error;
    return resolver ? std::move(resolver).value() : nullptr;
  }

  // One lookup, with the loop turned until it is answered (or a real-time bound).
  Answer Ask(Resolver& r, std::string_view name, Type type) {
    std::optional<Answer> got;
    r.Lookup(name, type, [&](Answer&& a) { got = std::move(a); });
    const auto end = std::chrono::steady_clock::now() + 15s;
    while (!got && std::chrono::steady_clock::now() < end)
      reactor_->RunOnce(reactor_->now() + 10ms);
    EXPECT_TRUE(got.has_value()) << "no answer for " << name;
    return got ? std::move(*got) : Answer{};
  }

  DnsServer server_{kZone};
  std::unique_ptr<Reactor> reactor_;
  ResolverStats stats_;
};

std::string Text(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family == AF_INET)
    inet_ntop(AF_INET, &a.v4, buf, sizeof buf);
  else
    inet_ntop(AF_INET6, &a.v6, buf, sizeof buf);
  return buf;
}

TEST_P(ResolverTest, MxAndAddressesAndTheirTtl) {
  auto r = Make();
  ASSERT_NE(r, nullptr);
  Answer mx = Ask(*r, "mail.test", Type::kMx);
  ASSERT_EQ(mx.status, Status::kOk) << mx.error;
  ASSERT_EQ(mx.mx.size(), 2u);
  std::sort(mx.mx.begin(), mx.mx.end(),
            [](const MxRecord& a, const MxRecord& b) { return a.preference < b.preference; });
  EXPECT_EQ(mx.mx[0], (MxRecord{10, "mx1.mail.test"}));
  EXPECT_EQ(mx.mx[1], (MxRecord{20, "mx2.mail.test"}));
  EXPECT_GT(mx.ttl, 3000u);
  Answer a = Ask(*r, "mx1.mail.test", Type::kA);
  ASSERT_EQ(a.status, Status::kOk);
  ASSERT_EQ(a.addresses.size(), 1u);
  EXPECT_EQ(Text(a.addresses[0]), "127.0.0.2");
  Answer aaaa = Ask(*r, "mx1.mail.test", Type::kAaaa);
  ASSERT_EQ(aaaa.status, Status::kOk);
  ASSERT_EQ(aaaa.addresses.size(), 1u);
  EXPECT_EQ(Text(aaaa.addresses[0]), "::1");
  EXPECT_EQ(stats_.lookups[static_cast<int>(Type::kMx)][static_cast<int>(Status::kOk)].Get(), 1u);
}

// MTA-STS's TXT (each record's strings joined, RFC 8461 §3.1) and DANE's TLSA (raw rdata).
TEST_P(ResolverTest, TxtRecordsJoinTheirStringsAndTlsaComesRaw) {
  auto r = Make();
  ASSERT_NE(r, nullptr);
  Answer txt = Ask(*r, "_mta-sts.mail.test", Type::kTxt);
  ASSERT_EQ(txt.status, Status::kOk) << txt.error;
  std::sort(txt.txt.begin(), txt.txt.end());
  EXPECT_EQ(txt.txt, (std::vector<std::string>{"something else", "v=STSv1; id=20261201T1;"}));
  EXPECT_FALSE(txt.secure) << "no DNSSEC here";
  Answer tlsa = Ask(*r, "_25._tcp.mx1.mail.test", Type::kTlsa);
  ASSERT_EQ(tlsa.status, Status::kOk) << tlsa.error;
  ASSERT_EQ(tlsa.rdata.size(), 1u);
  ASSERT_EQ(tlsa.rdata[0].size(), 3u + 32u);
  EXPECT_EQ(tlsa.rdata[0].substr(0, 4), std::string("\x03\x01\x01\x01", 4));
  EXPECT_EQ(Ask(*r, "_25._tcp.mx2.mail.test", Type::kTlsa).status, Status::kNxDomain);
  EXPECT_EQ(stats_.lookups[static_cast<int>(Type::kTxt)][static_cast<int>(Status::kOk)].Get(), 1u);
}

TEST_P(ResolverTest, NullMxNxDomainNoDataServFail) {
  auto r = Make();
  ASSERT_NE(r, nullptr);
  Answer null_mx = Ask(*r, "nomail.test", Type::kMx);
  ASSERT_EQ(null_mx.status, Status::kOk);
  ASSERT_EQ(null_mx.mx.size(), 1u);
  EXPECT_EQ(null_mx.mx[0], (MxRecord{0, ""}));
  EXPECT_EQ(Ask(*r, "nowhere.test", Type::kMx).status, Status::kNxDomain);
  EXPECT_EQ(Ask(*r, "mx1.mail.test", Type::kMx).status, Status::kNoData);
  EXPECT_EQ(Ask(*r, "broken.test", Type::kMx).status, Status::kServFail);
}

TEST_P(ResolverTest, ASilentServerIsATimeoutOfOurs) {
  auto r = Make(Seconds(0.5));
  ASSERT_NE(r, nullptr);
  const auto start = std::chrono::steady_clock::now();
  Answer a = Ask(*r, "slow.test", Type::kMx);
  EXPECT_EQ(a.status, Status::kTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s)
      << "the timeout is ours, not libunbound's";
  EXPECT_EQ(stats_.timeouts.Get(), 1u);
  EXPECT_EQ(r->inflight(), 0u);
  // The resolver goes on.
  EXPECT_EQ(Ask(*r, "mail.test", Type::kMx).status, Status::kOk);
}

TEST_P(ResolverTest, AnswersAreCachedForTheirTtl) {
  auto r = Make();
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(Ask(*r, "mail.test", Type::kMx).status, Status::kOk);
  ASSERT_EQ(Ask(*r, "mail.test", Type::kMx).status, Status::kOk);
  // With trust_ad the local resolver's cache is the only one (spate keeps routes, not answers).
  EXPECT_EQ(server_.Queries("mail.test.", "MX"), GetParam() ? 2 : 1)
      << "libunbound's second came from its cache";
}

// The server sets AD for mail.test. With trust_ad that makes the answer secure; libunbound,
// without trust anchors, validates nothing and drops the bit, whatever the upstream says.
TEST_P(ResolverTest, TheAdBitCountsWithTrustAdOnly) {
  auto r = Make();
  ASSERT_NE(r, nullptr);
  Answer mx = Ask(*r, "mail.test", Type::kMx);
  ASSERT_EQ(mx.status, Status::kOk) << mx.error;
  EXPECT_EQ(mx.secure, GetParam());
  Answer a = Ask(*r, "mx1.mail.test", Type::kA);
  ASSERT_EQ(a.status, Status::kOk) << a.error;
  EXPECT_FALSE(a.secure) << "no AD bit, not secure";
}

TEST(ResolverTrustAdTest, ExcludesTrustAnchorsAndTakesIpv4ServersOnly) {
  auto reactor = Reactor::Create(8);
  ASSERT_TRUE(reactor.has_value());
  Resolver::Options o;
  o.trust_ad = true;
  o.trust_anchor_file = "/usr/share/dns/root.key";
  std::string error;
  EXPECT_FALSE(Resolver::Create(**reactor, o, nullptr, &error).has_value());
  EXPECT_NE(error.find("trust_anchor_file"), std::string::npos) << error;
  o.trust_anchor_file.clear();
  o.nameservers = {"[::1]:53"};
  EXPECT_FALSE(Resolver::Create(**reactor, o, nullptr, &error).has_value());
  EXPECT_NE(error.find("[::1]:53"), std::string::npos) << error;
}

TEST_P(ResolverTest, AtMostMaxInflightAtOnceTheRestInOrder) {
  auto r = Make(Seconds(5), 1);
  ASSERT_NE(r, nullptr);
  std::vector<std::string> order;
  for (const char* name : {"mail.test", "nomail.test", "nowhere.test"})
    r->Lookup(name, Type::kMx, [&order, name](Answer&&) { order.emplace_back(name); });
  EXPECT_EQ(r->inflight(), 1u);
  EXPECT_EQ(r->waiting(), 2u);
  const auto end = std::chrono::steady_clock::now() + 15s;
  while (order.size() < 3 && std::chrono::steady_clock::now() < end)
    reactor_->RunOnce(reactor_->now() + 10ms);
  EXPECT_EQ(order, (std::vector<std::string>{"mail.test", "nomail.test", "nowhere.test"}));
}

INSTANTIATE_TEST_SUITE_P(Backends, ResolverTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "TrustAd" : "Libunbound";
                         });

TEST_P(ResolverTest, ABadNameserverIsAnErrorAtCreate) {
  Resolver::Options o;
  o.nameservers = {"127.0.0.1"};
  o.trust_ad = GetParam();
  std::string error;
  auto r = Resolver::Create(*reactor_, o, nullptr, &error);
  EXPECT_FALSE(r.has_value());
  EXPECT_NE(error.find("127.0.0.1"), std::string::npos) << error;
}

}  // namespace
}  // namespace spate::dns
