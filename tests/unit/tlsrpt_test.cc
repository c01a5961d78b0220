// delivery/tlsrpt.h: RFC 8460 aggregate reports: the JSON a report file holds, read back, and
// the Reports aggregator counting sessions, writing one file per domain per day, and carrying
// its counts over a restart.
#include "delivery/tlsrpt.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace spate::delivery::tlsrpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t Today() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() /
         86400;
}

DomainReport Sample() {
  DomainReport r;
  r.domain = "example.com";
  r.day = *DayFromName("2026-12-01");
  PolicyReport& sts = r.policies["sts"];
  sts::Policy policy;
  policy.mode = sts::Policy::Mode::kEnforce;
  policy.mx = {"mx1.example.com", "*.example.net"};
  policy.max_age_s = 86400;
  DescribeSts(policy, &sts);
  sts.successes = 1200;
  sts.failures = 3;
  sts.details[{ResultType::kCertificateExpired, "192.0.2.1", "mx1.example.com", "198.51.100.7",
               "certificate has expired"}] = 2;
  sts.details[{ResultType::kStsPolicyFetchError, "", "mta-sts.example.com", "", "timeout"}] = 1;
  PolicyReport& tlsa = r.policies["tlsa mx2.example.com"];
  tlsa.type = PolicyType::kTlsa;
  std::vector<tls::Tlsa> records = {{3, 1, 1, std::string("\x01\xab", 2)}};
  DescribeTlsa("mx2.example.com", &records, &tlsa);
  tlsa.successes = 5;
  return r;
}

std::string TempDir() {
  char dir[] = "/tmp/tlsrpt_test.XXXXXX";
  return mkdtemp(dir);
}

std::string Read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(TlsrptTest, TheReportHasRfc8460sFields) {
  const json doc =
      json::parse(Encode(Sample(), {"Example Sender", "postmaster@sender.test", "n1"}));
  EXPECT_EQ(doc["organization-name"], "Example Sender");
  EXPECT_EQ(doc["contact-info"], "postmaster@sender.test");
  EXPECT_EQ(doc["date-range"]["start-datetime"], "2026-12-01T00:00:00Z");
  EXPECT_EQ(doc["date-range"]["end-datetime"], "2026-12-01T23:59:59Z");
  EXPECT_EQ(doc["report-id"], "2026-12-01T00:00:00Z_example.com@n1");
  ASSERT_EQ(doc["policies"].size(), 2u);
  const json& sts = doc["policies"][0];
  EXPECT_EQ(sts["policy"]["policy-type"], "sts");
  EXPECT_EQ(sts["policy"]["policy-domain"], "example.com");
  EXPECT_EQ(sts["policy"]["policy-string"],
            json({"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.example.net",
                  "max_age: 86400"}));
  EXPECT_EQ(sts["policy"]["mx-host"], json({"mx1.example.com", "*.example.net"}));
  EXPECT_EQ(sts["summary"]["total-successful-session-count"], 1200);
  EXPECT_EQ(sts["summary"]["total-failure-session-count"], 3);
  ASSERT_EQ(sts["failure-details"].size(), 2u);
  const json& expired = sts["failure-details"][0];
  EXPECT_EQ(expired["result-type"], "certificate-expired");
  EXPECT_EQ(expired["sending-mta-ip"], "192.0.2.1");
  EXPECT_EQ(expired["receiving-mx-hostname"], "mx1.example.com");
  EXPECT_EQ(expired["receiving-ip"], "198.51.100.7");
  EXPECT_EQ(expired["failed-session-count"], 2);
  EXPECT_EQ(expired["additional-information"], "certificate has expired");
  EXPECT_FALSE(sts["failure-details"][1].contains("receiving-ip")) << "empty fields are left out";
  const json& tlsa = doc["policies"][1];
  EXPECT_EQ(tlsa["policy"]["policy-type"], "tlsa");
  EXPECT_EQ(tlsa["policy"]["policy-string"], json({"3 1 1 01ab"}));
  EXPECT_EQ(tlsa["policy"]["mx-host"], json({"mx2.example.com"}));
  EXPECT_FALSE(tlsa.contains("failure-details"));
}

TEST(TlsrptTest, WhatEncodeWritesDecodesToItself) {
  const DomainReport r = Sample();
  std::string error;
  std::optional<DomainReport> back = Decode(Encode(r, {"o", "c", "n"}), &error);
  ASSERT_TRUE(back.has_value()) << error;
  EXPECT_EQ(*back, r);
}

TEST(TlsrptTest, AnythingElseIsRefusedWithAReason) {
  std::string error;
  for (const char* text :
       {"", "[]", "{}", "not json", R"({"date-range":{}})",
        R"({"date-range":{"start-datetime":"2026-12-01T01:00:00Z"},"policies":[]})",
        R"({"date-range":{"start-datetime":"2026-12-01T00:00:00Z"},"policies":[]})",
        R"({"date-range":{"start-datetime":"2026-12-01T00:00:00Z"},
                               "policies":[{"policy":{"policy-type":"dane","policy-domain":"a"},
                                            "summary":{"total-successful-session-count":1,
                                                       "total-failure-session-count":0}}]})",
        R"({"date-range":{"start-datetime":"2026-12-01T00:00:00Z"},
                               "policies":[{"policy":{"policy-type":"sts","policy-domain":"a"},
                                            "summary":{"total-successful-session-count":-1,
                                                       "total-failure-session-count":0}}]})"}) {
    error.clear();
    EXPECT_FALSE(Decode(text, &error).has_value()) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST(TlsrptTest, DaysAreUtcDates) {
  EXPECT_EQ(DayName(0), "1970-01-01");
  EXPECT_EQ(DayName(*DayFromName("2028-02-29")), "2028-02-29");
  EXPECT_FALSE(DayFromName("2026-02-30").has_value());
  EXPECT_FALSE(DayFromName("2026-1-01").has_value());
  EXPECT_FALSE(DayFromName("2026-13-01").has_value());
  EXPECT_FALSE(DayFromName("20x6-12-01").has_value());
}

TEST(TlsrptTest, CertificateProblemsGetTheirResultTypes) {
  using P = tls::TlsSession::CertProblem;
  EXPECT_STREQ(ResultTypeName(FromCertProblem(P::kHostMismatch)), "certificate-host-mismatch");
  EXPECT_STREQ(ResultTypeName(FromCertProblem(P::kExpired)), "certificate-expired");
  EXPECT_STREQ(ResultTypeName(FromCertProblem(P::kNotTrusted)), "certificate-not-trusted");
  EXPECT_STREQ(ResultTypeName(FromCertProblem(P::kOther)), "validation-failure");
  for (int i = 0; i < kResultTypeCount; ++i) {
    const auto type = static_cast<ResultType>(i);
    EXPECT_EQ(ResultTypeFromName(ResultTypeName(type)), type);
  }
}

TEST(TlsrptTest, SessionsAreCountedWrittenPerDomainAndReadBackAfterARestart) {
  const std::string dir = TempDir();
  Reports::Options o;
  o.directory = dir;
  o.meta = {"org", "contact", "node"};
  int described = 0;
  auto describe = [&](PolicyReport* r) {
    ++described;
    r->policy_string = {"version: STSv1"};
  };
  {
    Reports reports(o);
    reports.Success("a.test", PolicyType::kSts, "", describe);
    reports.Success("a.test", PolicyType::kSts, "", describe);
    Failure f{ResultType::kCertificateNotTrusted, "127.0.0.1", "mx.a.test", "127.0.0.2", "x"};
    reports.Fail("a.test", PolicyType::kSts, "", describe, f);
    reports.Fail("a.test", PolicyType::kSts, "", describe, f);
    reports.Fail("b.test", PolicyType::kTlsa, "mx.b.test", nullptr,
                 {ResultType::kDnssecInvalid, "", "mx.b.test", "", "bogus"});
    EXPECT_EQ(described, 1) << "once per policy";
    EXPECT_EQ(reports.Flush(), 2u);
    EXPECT_EQ(reports.Flush(), 0u) << "nothing changed";
  }
  const fs::path today = fs::path(dir) / DayName(Today());
  json a = json::parse(Read(today / "a.test.json"));
  EXPECT_EQ(a["policies"][0]["summary"]["total-successful-session-count"], 2);
  EXPECT_EQ(a["policies"][0]["summary"]["total-failure-session-count"], 2);
  EXPECT_EQ(a["policies"][0]["failure-details"][0]["failed-session-count"], 2);
  json b = json::parse(Read(today / "b.test.json"));
  EXPECT_EQ(b["policies"][0]["policy"]["policy-type"], "tlsa");
  EXPECT_EQ(b["policies"][0]["failure-details"][0]["result-type"], "dnssec-invalid");
  {
    // A restart: today's counts go on from the files.
    Reports reports(o);
    EXPECT_EQ(reports.Load(), 2u);
    reports.Success("a.test", PolicyType::kSts, "", describe);
    std::optional<DomainReport> r = reports.Get("a.test");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->policies.at("sts").successes, 3u);
    EXPECT_EQ(r->policies.at("sts").failures, 2u);
    EXPECT_EQ(described, 1) << "a policy read back is not described again";
  }
  // The destructor wrote the last count.
  a = json::parse(Read(today / "a.test.json"));
  EXPECT_EQ(a["policies"][0]["summary"]["total-successful-session-count"], 3);
  fs::remove_all(dir);
}

TEST(TlsrptTest, ANewDayWritesTheOldDaysLastCountsAndStartsAgain) {
  const std::string dir = TempDir();
  int64_t day = *DayFromName("2026-12-01");
  Reports::Options o;
  o.directory = dir;
  o.keep_days = 3650;
  o.today = [&day] { return day; };
  Reports reports(o);
  reports.Success("a.test", PolicyType::kSts, "", nullptr);
  EXPECT_EQ(reports.Flush(), 1u);
  reports.Success("a.test", PolicyType::kSts, "", nullptr);  // unwritten when the day ends
  ++day;
  reports.Success("a.test", PolicyType::kSts, "", nullptr);
  EXPECT_EQ(reports.Flush(), 2u) << "the old day's last counts, and the new day's";
  json first = json::parse(Read(fs::path(dir) / "2026-12-01" / "a.test.json"));
  json second = json::parse(Read(fs::path(dir) / "2026-12-02" / "a.test.json"));
  EXPECT_EQ(first["policies"][0]["summary"]["total-successful-session-count"], 2);
  EXPECT_EQ(second["policies"][0]["summary"]["total-successful-session-count"], 1);
  EXPECT_EQ(second["date-range"]["start-datetime"], "2026-12-02T00:00:00Z");
  fs::remove_all(dir);
}

TEST(TlsrptTest, FailureDetailsAreBoundedAndOldDaysPruned) {
  const std::string dir = TempDir();
  const fs::path old = fs::path(dir) / DayName(Today() - 40);
  fs::create_directories(old);
  std::ofstream(old / "x.test.json") << "{}";
  const fs::path recent = fs::path(dir) / DayName(Today() - 3);
  fs::create_directories(recent);
  Reports::Options o;
  o.directory = dir;
  Reports reports(o);
  for (int i = 0; i < 500; ++i) {
    reports.Fail("c.test", PolicyType::kSts, "", nullptr,
                 {ResultType::kValidationFailure, "", "mx" + std::to_string(i) + ".c.test", "",
                  std::string(1000, 'x')});
  }
  std::optional<DomainReport> r = reports.Get("c.test");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->policies.at("sts").failures, 500u) << "every failure is counted";
  EXPECT_EQ(r->policies.at("sts").details.size(), kMaxDetails) << "details are bounded";
  EXPECT_LE(r->policies.at("sts").details.begin()->first.detail.size(), 200u);
  reports.Flush();
  EXPECT_FALSE(fs::exists(old)) << "past keep_days (30)";
  EXPECT_TRUE(fs::exists(recent));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace spate::delivery::tlsrpt
