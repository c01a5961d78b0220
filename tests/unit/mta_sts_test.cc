// tests/unit/mta_sts_test.cc: MTA-STS (delivery/mta_sts.h, RFC 8461) and the HTTP/1.1 response
// parser of its policy fetch (core/http/client.h).
//
// Records, policies and patterns are table-driven; every response is fed whole, octet by octet
// and in random splits, and must give the same outcome each time before its fields are checked.
#include "delivery/mta_sts.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "core/http/client.h"

namespace spate::delivery::sts {
namespace {

using Mode = Policy::Mode;

// --- TXT record (RFC 8461 §3.1) ---

TEST(StsTxtTest, ValidRecordGivesItsId) {
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=20160831085700Z;"), "20160831085700Z");
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=20160831085700Z"), "20160831085700Z");  // no trailing ';'
  EXPECT_EQ(ParseStsTxt("v=STSv1;id=abc123"), "abc123");
}

TEST(StsTxtTest, ExtensionFieldsAreIgnored) {
  EXPECT_EQ(ParseStsTxt("v=STSv1; ext=foo; id=x1; other_ext.2=a:b/c;"), "x1");
  // A field name is case-sensitive: "ID=" is an extension, so there is no id.
  EXPECT_EQ(ParseStsTxt("v=STSv1; ID=x1;"), std::nullopt);
  // An extension must still have the §3.1 syntax.
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=x1; novalue;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=x1; bad=sp ace;"), std::nullopt);
}

TEST(StsTxtTest, WhitespaceAroundSeparators) {
  EXPECT_EQ(ParseStsTxt("v=STSv1 ;\tid=abc ; "), "abc");
  EXPECT_EQ(ParseStsTxt("  v=STSv1;  id=abc  "), "abc");
  // No whitespace inside a field.
  EXPECT_EQ(ParseStsTxt("v=STSv1; id = abc;"), std::nullopt);
}

TEST(StsTxtTest, VersionMustComeFirstAndBeExact) {
  EXPECT_EQ(ParseStsTxt("id=abc;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("id=abc; v=STSv1;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("v=STSv2; id=abc;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("v=stsv1; id=abc;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("v=STSv10; id=abc;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt(""), std::nullopt);
}

TEST(StsTxtTest, IdIsRequiredAndOneToThirtyTwoAlphanumerics) {
  EXPECT_EQ(ParseStsTxt("v=STSv1;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=;"), std::nullopt);
  const std::string id32(32, 'a');
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=" + id32 + ";"), id32);
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=" + id32 + "b;"), std::nullopt);  // 33
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=2016-08-31;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=abc_def;"), std::nullopt);
  EXPECT_EQ(ParseStsTxt("v=STSv1; id=a; id=b;"), std::nullopt);  // which one?
  EXPECT_EQ(ParseStsTxt("v=STSv1;; id=abc;"), std::nullopt);     // an empty field
}

TEST(StsTxtTest, PickNeedsExactlyOneStsRecord) {
  EXPECT_EQ(PickStsTxt({"v=STSv1; id=one;"}), "one");
  EXPECT_EQ(PickStsTxt({"v=spf1 -all", "v=STSv1; id=one;", "google-site-verification=x"}), "one");
  // Two STSv1 records: no policy record, even when both are valid and equal.
  EXPECT_EQ(PickStsTxt({"v=STSv1; id=one;", "v=STSv1; id=two;"}), std::nullopt);
  EXPECT_EQ(PickStsTxt({"v=STSv1; id=one;", "v=STSv1; id=one;"}), std::nullopt);
  // The single candidate must be valid; an invalid one is not skipped for another.
  EXPECT_EQ(PickStsTxt({"v=STSv1; id=bad-id;"}), std::nullopt);
  EXPECT_EQ(PickStsTxt({"v=STSv1; id=bad-id;", "v=STSv1; id=good;"}), std::nullopt);
  // Records of other versions are not candidates.
  EXPECT_EQ(PickStsTxt({"v=STSv2; id=two;", "v=STSv1; id=one;"}), "one");
  EXPECT_EQ(PickStsTxt({}), std::nullopt);
  EXPECT_EQ(PickStsTxt({"v=spf1 -all"}), std::nullopt);
}

// --- Policy (RFC 8461 §3.2) ---

Policy MustParse(std::string_view text) {
  Policy p;
  std::string error;
  EXPECT_TRUE(ParsePolicy(text, &p, &error)) << error << "\n" << text;
  EXPECT_EQ(error, "");
  return p;
}

std::string ParseError(std::string_view text) {
  Policy p;
  p.max_age_s = 12345;  // a sentinel: a refused policy leaves *out alone
  std::string error;
  EXPECT_FALSE(ParsePolicy(text, &p, &error)) << text;
  EXPECT_EQ(p.max_age_s, 12345);
  EXPECT_NE(error, "");
  return error;
}

TEST(StsPolicyTest, RfcExample) {
  const Policy p = MustParse(
      "version: STSv1\r\n"
      "mode: enforce\r\n"
      "mx: mail.example.com\r\n"
      "mx: *.example.net\r\n"
      "mx: backupmx.example.com\r\n"
      "max_age: 604800\r\n");
  EXPECT_EQ(p.mode, Mode::kEnforce);
  EXPECT_EQ(p.max_age_s, 604800);
  EXPECT_EQ(p.mx, (std::vector<std::string>{"mail.example.com", "*.example.net",
                                            "backupmx.example.com"}));
}

TEST(StsPolicyTest, LfCrlfAndNoFinalNewlineAreTheSame) {
  const Policy crlf =
      MustParse("version: STSv1\r\nmode: testing\r\nmx: a.example\r\nmax_age: 5\r\n");
  const Policy lf = MustParse("version: STSv1\nmode: testing\nmx: a.example\nmax_age: 5\n");
  const Policy bare = MustParse("version: STSv1\nmode: testing\r\nmx: a.example\nmax_age: 5");
  EXPECT_EQ(crlf.mode, Mode::kTesting);
  EXPECT_EQ(crlf.max_age_s, 5);
  EXPECT_EQ(crlf, lf);
  EXPECT_EQ(crlf, bare);
}

TEST(StsPolicyTest, ValuesAreTrimmedAndPatternsLowerCased) {
  const Policy p =
      MustParse("version:STSv1\nmode: \t none \nmax_age:   0  \nmx:  MX.Example.COM. \n");
  EXPECT_EQ(p.mode, Mode::kNone);
  EXPECT_EQ(p.max_age_s, 0);
  EXPECT_EQ(p.mx, std::vector<std::string>{"mx.example.com"});
}

TEST(StsPolicyTest, RequiredFieldsMissing) {
  EXPECT_EQ(ParseError("mode: enforce\nmx: a.example\nmax_age: 5\n"), "no version field");
  EXPECT_EQ(ParseError("version: STSv1\nmx: a.example\nmax_age: 5\n"), "no mode field");
  EXPECT_EQ(ParseError("version: STSv1\nmode: enforce\nmx: a.example\n"), "no max_age field");
  EXPECT_EQ(ParseError("version: STSv1\nmode: enforce\nmax_age: 5\n"),
            "no mx field (required unless mode is none)");
  EXPECT_EQ(ParseError("version: STSv1\nmode: testing\nmax_age: 5\n"),
            "no mx field (required unless mode is none)");
  EXPECT_EQ(ParseError(""), "no version field");
}

TEST(StsPolicyTest, ModeNoneNeedsNoMx) {
  const Policy p = MustParse("version: STSv1\nmode: none\nmax_age: 86400\n");
  EXPECT_EQ(p.mode, Mode::kNone);
  EXPECT_TRUE(p.mx.empty());
  EXPECT_EQ(p.max_age_s, 86400);
}

TEST(StsPolicyTest, VersionMayComeAnywhere) {
  const Policy p = MustParse("mode: enforce\nmx: a.example\nmax_age: 5\nversion: STSv1\n");
  EXPECT_EQ(p.mode, Mode::kEnforce);
}

TEST(StsPolicyTest, BadValues) {
  const std::string base = "version: STSv1\nmode: enforce\nmx: a.example\n";
  EXPECT_EQ(ParseError(base + "max_age: -1\n"), "line 4: bad max_age (not a non-negative integer)");
  EXPECT_EQ(ParseError(base + "max_age: 1d\n"), "line 4: bad max_age (not a non-negative integer)");
  EXPECT_EQ(ParseError(base + "max_age: 1 000\n"),
            "line 4: bad max_age (not a non-negative integer)");
  EXPECT_EQ(ParseError(base + "max_age:\n"), "line 4: bad max_age (not a non-negative integer)");
  EXPECT_EQ(ParseError("version: STSv2\nmode: none\nmax_age: 1\n"), "line 1: version is not STSv1");
  EXPECT_EQ(ParseError("version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n"),
            "line 2: mode is not enforce, testing or none");
  EXPECT_EQ(ParseError("version: STSv1\nmode: none\nmax_age: 1\nmx: a..example\n"),
            "line 4: bad mx pattern");
  EXPECT_EQ(ParseError("version: STSv1\nmode: none\nmax_age: 1\nmx: a.*.example\n"),
            "line 4: bad mx pattern");
  EXPECT_EQ(ParseError("version: STSv1\nmode: none\nmax_age: 1\nmx: *\n"),
            "line 4: bad mx pattern");
  EXPECT_EQ(ParseError("version: STSv1\ngarbage\n"), "line 2: no ':'");
  EXPECT_EQ(ParseError("version: STSv1\nmode : none\nmax_age: 1\n"), "line 2: bad field name");
  EXPECT_EQ(ParseError("version: STSv1\nmode: none\nmode: enforce\nmax_age: 1\n"),
            "line 3: repeated mode");
}

TEST(StsPolicyTest, HugeMaxAgeIsClamped) {
  const std::string base = "version: STSv1\nmode: enforce\nmx: a.example\n";
  EXPECT_EQ(MustParse(base + "max_age: 31557600\n").max_age_s, 31557600);
  EXPECT_EQ(MustParse(base + "max_age: 31557601\n").max_age_s, kMaxAgeLimitS);
  EXPECT_EQ(MustParse(base + "max_age: 9999999999\n").max_age_s, kMaxAgeLimitS);
  EXPECT_EQ(MustParse(base + "max_age: 99999999999999999999999999999\n").max_age_s, kMaxAgeLimitS);
  EXPECT_EQ(MustParse(base + "max_age: 0031557599\n").max_age_s, 31557599);
}

TEST(StsPolicyTest, UnknownKeysAndBlankLinesAreIgnored) {
  const Policy p = MustParse(
      "version: STSv1\n"
      "\n"
      "future_field: any value, even: colons\n"
      "mode: testing\n"
      "Mode: enforce\n"  // keys are case-sensitive: an unknown key
      "mx: a.example\n"
      "max_age: 60\n"
      "\r\n");
  EXPECT_EQ(p.mode, Mode::kTesting);
  EXPECT_EQ(p.mx, std::vector<std::string>{"a.example"});
}

TEST(StsPolicyTest, OverSixtyFourKibIsRefused) {
  std::string text = "version: STSv1\nmode: none\nmax_age: 1\n";
  const std::string filler = "x-pad: " + std::string(100, 'p') + "\n";
  while (text.size() + filler.size() <= kMaxPolicyBytes) {
    text += filler;
  }
  text += std::string(kMaxPolicyBytes - text.size(), '\n');
  ASSERT_EQ(text.size(), kMaxPolicyBytes);
  EXPECT_EQ(MustParse(text).mode, Mode::kNone);  // exactly 64 KiB is fine
  text += "\n";
  EXPECT_EQ(ParseError(text), "policy larger than 65536 octets");
}

// --- MX patterns (RFC 8461 §4.1) ---

TEST(StsMxTest, Matching) {
  struct Case {
    std::string_view pattern, host;
    bool want;
  };
  const Case cases[] = {
      {"mail.example.com", "mail.example.com", true},
      {"mail.example.com", "MAIL.Example.COM", true},
      {"MAIL.example.com", "mail.example.com", true},
      {"mail.example.com", "mail.example.com.", true},
      {"mail.example.com.", "mail.example.com", true},
      {"mail.example.com", "mail2.example.com", false},
      {"mail.example.com", "example.com", false},
      {"mail.example.com", "x.mail.example.com", false},
      {"*.example.com", "mx1.example.com", true},
      {"*.example.com", "MX1.EXAMPLE.COM.", true},
      {"*.example.com", "a.b.example.com", false},
      {"*.example.com", "example.com", false},
      {"*.example.com", ".example.com", false},
      {"*.example.com", "mx1.example.org", false},
      {"*.example.com", "mx1example.com", false},
      {"", "", false},
      {"mail.example.com", "", false},
      {"*.", "a.", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(MxMatches(c.pattern, c.host), c.want) << c.pattern << " vs " << c.host;
  }
}

TEST(StsMxTest, PolicyAllowsAnyPattern) {
  Policy p;
  p.mode = Mode::kEnforce;
  p.mx = {"mail.example.com", "*.example.net"};
  EXPECT_TRUE(PolicyAllows(p, "mail.example.com"));
  EXPECT_TRUE(PolicyAllows(p, "mx7.example.net."));
  EXPECT_FALSE(PolicyAllows(p, "evil.example.org"));
  EXPECT_FALSE(PolicyAllows(p, "a.mx7.example.net"));
  p.mx.clear();
  EXPECT_FALSE(PolicyAllows(p, "mail.example.com"));
}

TEST(StsUrlTest, HostAndUrl) {
  EXPECT_EQ(PolicyHost("example.com"), "mta-sts.example.com");
  EXPECT_EQ(PolicyHost("example.com."), "mta-sts.example.com");
  EXPECT_EQ(PolicyUrl("example.com"), "https://mta-sts.example.com/.well-known/mta-sts.txt");
  EXPECT_EQ(PolicyUrl("example.com"),
            "https://" + PolicyHost("example.com") + std::string(kPolicyPath));
}

// --- The cache text ---

TEST(StsCacheTest, RoundTrip) {
  for (const char* text : {
           "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: "
           "604800\n",
           "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 0\n",
           "version: STSv1\nmode: none\nmax_age: 31557600\n",
       }) {
    const Policy p = MustParse(text);
    const std::string encoded = EncodePolicy(p, "20160831085700Z", 1700000000123);
    Policy q;
    std::string id;
    int64_t fetched = 0;
    ASSERT_TRUE(DecodePolicy(encoded, &q, &id, &fetched)) << encoded;
    EXPECT_EQ(q, p);
    EXPECT_EQ(id, "20160831085700Z");
    EXPECT_EQ(fetched, 1700000000123);
    EXPECT_EQ(EncodePolicy(q, id, fetched), encoded);
  }
}

TEST(StsCacheTest, GarbageAndDamageAreRefused) {
  const Policy p = MustParse("version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 60\n");
  const std::string good = EncodePolicy(p, "abc", 42);
  ASSERT_EQ(good,
            "spate-mta-sts 1\nid abc\nfetched_ms 42\nmode enforce\nmax_age 60\n"
            "mx mail.example.com\nend\n");
  std::vector<std::string> bad = {
      "",
      "garbage",
      "{\"mode\":\"enforce\"}",
      good.substr(0, good.size() - 1),      // torn: no final LF
      good.substr(0, good.size() - 4),      // torn: no "end"
      good + "extra\n",                     // after the end
      "spate-mta-sts 2" + good.substr(15),  // another format version
  };
  auto replace = [&](std::string_view from, std::string_view to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    bad.push_back(s);
  };
  replace("id abc", "id a-c");
  replace("id abc", "id ");
  replace("fetched_ms 42", "fetched_ms 042");
  replace("fetched_ms 42", "fetched_ms x");
  replace("mode enforce", "mode strict");
  replace("max_age 60", "max_age 31557601");
  replace("max_age 60", "max_age -1");
  replace("mx mail.example.com", "mx Mail.example.com");
  replace("mx mail.example.com", "mx bad..name");
  replace("mx mail.example.com\n", "");  // enforce without mx
  for (const std::string& s : bad) {
    Policy q;
    q.max_age_s = 777;
    std::string id = "untouched";
    int64_t fetched = -5;
    EXPECT_FALSE(DecodePolicy(s, &q, &id, &fetched)) << s;
    EXPECT_EQ(q.max_age_s, 777);
    EXPECT_EQ(id, "untouched");
    EXPECT_EQ(fetched, -5);
  }
}

}  // namespace
}  // namespace spate::delivery::sts

// --- The policy fetch's HTTP/1.1 response parser (core/http/client.h, RFC 9112) ---

namespace spate::http {
namespace {

struct Outcome {
  bool done = false;
  bool failed = false;
  std::string error;
  int status = 0;
  std::string body;
  std::string content_type;
};

std::string Describe(const Outcome& o) {
  return std::string(o.done ? "done" : "") + (o.failed ? "failed" : "") + " error=" + o.error +
         " status=" + std::to_string(o.status) + " type=" + o.content_type + " body=" + o.body;
}

Outcome Collect(const ResponseParser& p) {
  EXPECT_FALSE(p.done() && p.failed());
  return {p.done(),   p.failed(), p.error(),
          p.status(), p.body(),   std::string(p.header("content-type"))};
}

// Feeds `input` in pieces of the given sizes (the rest at the end), then EOF if asked.
Outcome Feed(std::string_view input, const std::vector<size_t>& sizes, size_t max_body, bool eof) {
  ResponseParser p(max_body);
  size_t turn = 0;
  while (!input.empty()) {
    const size_t want = turn < sizes.size() ? sizes[turn++] : input.size();
    const size_t n = std::min(std::max<size_t>(want, 1), input.size());
    p.OnBytes(input.substr(0, n));
    input.remove_prefix(n);
  }
  if (eof) {
    p.OnEof();
  }
  return Collect(p);
}

// Whole, octet by octet and in random splits: the same outcome each time, which is returned.
Outcome FeedAllWays(std::string_view input, size_t max_body = 1 << 16, bool eof = false) {
  const Outcome whole = Feed(input, {}, max_body, eof);
  const Outcome bytes = Feed(input, std::vector<size_t>(input.size(), 1), max_body, eof);
  EXPECT_EQ(Describe(bytes), Describe(whole)) << "octet by octet";
  std::mt19937 rng(1234);
  for (int round = 0; round < 20; ++round) {
    std::vector<size_t> sizes;
    std::uniform_int_distribution<size_t> size(1, 17);
    for (size_t total = 0; total < input.size();) {
      sizes.push_back(size(rng));
      total += sizes.back();
    }
    EXPECT_EQ(Describe(Feed(input, sizes, max_body, eof)), Describe(whole)) << "round " << round;
  }
  return whole;
}

TEST(HttpClientTest, FormatGet) {
  EXPECT_EQ(FormatGet("mta-sts.example.com", "/.well-known/mta-sts.txt", "spate/1"),
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
            "User-Agent: spate/1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
  // No header injection through an argument.
  EXPECT_EQ(FormatGet("h\r\nX-Evil: 1", "/", "ua"),
            "GET / HTTP/1.1\r\nHost: hX-Evil: 1\r\nUser-Agent: ua\r\nAccept: text/plain\r\n"
            "Connection: close\r\n\r\n");
}

TEST(HttpClientTest, ContentLengthBodyOctetByOctet) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n\r\n"
      "version: STSv1\nmode: none\nmax_";
  const Outcome o = FeedAllWays(response);
  EXPECT_TRUE(o.done);
  EXPECT_FALSE(o.failed);
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(o.content_type, "text/plain");
  EXPECT_EQ(o.body, "version: STSv1\nmode: none\nmax_");

  // Bytes after the body (a server that ignored "Connection: close") are not read.
  ResponseParser p(100);
  p.OnBytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabHTTP/1.1 500 X\r\n\r\n");
  p.OnEof();
  EXPECT_TRUE(p.done());
  EXPECT_EQ(p.body(), "ab");
  EXPECT_EQ(p.status(), 200);
}

TEST(HttpClientTest, HeadersAreLowerCasedAndTrimmed) {
  ResponseParser p(100);
  p.OnBytes(
      "HTTP/1.0 200\nCONTENT-type:  text/plain; charset=utf-8 \t\nX-A: 1\nx-a: 2\n"
      "Content-Length: 0\n\n");
  ASSERT_TRUE(p.done()) << p.error();
  EXPECT_EQ(p.header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(p.header("x-a"), "1");
  EXPECT_EQ(p.header("absent"), "");
  ASSERT_EQ(p.headers().size(), 4u);
  EXPECT_EQ(p.headers()[0].first, "content-type");
}

TEST(HttpClientTest, ChunkedWithExtensionsAndTrailer) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n"
      "1A ; a ; b=\"q\"\r\n, chunked world, 26 bytes!\r\n"
      "0\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n";
  const Outcome o = FeedAllWays(response);
  EXPECT_TRUE(o.done) << o.error;
  EXPECT_EQ(o.body, "hello, chunked world, 26 bytes!");
  ResponseParser p(100);
  p.OnBytes(response);
  EXPECT_EQ(p.header("x-trailer"), "");  // trailers are skipped, not merged
}

TEST(HttpClientTest, ChunkedErrors) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(FeedAllWays(head + "zz\r\n").error, "bad chunk size");
  EXPECT_EQ(FeedAllWays(head + "3\r\nabcX\r\n").error, "no CRLF after chunk data");
  EXPECT_EQ(FeedAllWays(head + "3\r\nabc\r\n", 1 << 16, true).error,
            "connection closed in the chunked body");
  EXPECT_EQ(FeedAllWays(head + "0\r\n", 1 << 16, true).error,
            "connection closed in the chunked body");  // the trailer section never ended
  EXPECT_EQ(FeedAllWays(head + "ffffffffffffffffffffffff\r\n").error,
            "body too large (over 65536 octets)");
  const Outcome sum = FeedAllWays(head + "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n", 10);
  EXPECT_TRUE(sum.failed);
  EXPECT_EQ(sum.error, "body too large (over 10 octets)");
  EXPECT_EQ(sum.body, "");
  // gzip is not decoded, and Transfer-Encoding with Content-Length is smuggling.
  EXPECT_EQ(FeedAllWays("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").error,
            "unsupported Transfer-Encoding");
  EXPECT_EQ(FeedAllWays("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3"
                        "\r\n\r\n")
                .error,
            "Transfer-Encoding with Content-Length");
}

TEST(HttpClientTest, BodyToEof) {
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nmode: none\n";
  const Outcome before = FeedAllWays(response);
  EXPECT_FALSE(before.done);  // more may come until the close
  EXPECT_FALSE(before.failed);
  const Outcome o = FeedAllWays(response, 1 << 16, true);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.body, "mode: none\n");
  // An empty body to EOF is a body too.
  const Outcome empty = FeedAllWays("HTTP/1.1 200 OK\r\n\r\n", 1 << 16, true);
  EXPECT_TRUE(empty.done);
  EXPECT_EQ(empty.body, "");
}

TEST(HttpClientTest, RedirectStatusIsParsed) {
  const Outcome o = FeedAllWays(
      "HTTP/1.1 301 Moved Permanently\r\nLocation: https://evil.example/\r\n"
      "Content-Length: 0\r\n\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.status, 301);
  ResponseParser p(10);
  p.OnBytes("HTTP/1.1 301 Moved Permanently\r\nLocation: https://evil.example/\r\n");
  EXPECT_EQ(p.status(), 301);  // known before the head ends: the caller may stop reading
  EXPECT_FALSE(p.done());
}

TEST(HttpClientTest, BodyTooLarge) {
  const Outcome by_length = FeedAllWays("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10);
  EXPECT_TRUE(by_length.failed);
  EXPECT_EQ(by_length.error, "body too large (Content-Length 11, limit 10)");
  const Outcome at_limit =
      FeedAllWays("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 10);
  EXPECT_TRUE(at_limit.done);
  EXPECT_EQ(at_limit.body, "0123456789");
  const Outcome to_eof = FeedAllWays("HTTP/1.1 200 OK\r\n\r\n0123456789a", 10, true);
  EXPECT_TRUE(to_eof.failed);
  EXPECT_EQ(to_eof.error, "body too large (over 10 octets)");
  EXPECT_EQ(FeedAllWays("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n").error,
            "body too large (Content-Length 18446744073709551615, limit 65536)");
}

TEST(HttpClientTest, TruncatedContentLengthBodyFails) {
  const Outcome o =
      FeedAllWays("HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nonly ten..", 1 << 16, true);
  EXPECT_TRUE(o.failed);
  EXPECT_FALSE(o.done);
  EXPECT_EQ(o.error, "connection closed 10 octets before the end of the Content-Length body");
  EXPECT_EQ(o.body, "");
  EXPECT_EQ(FeedAllWays("HTTP/1.1 200 OK\r\nContent-Le", 1 << 16, true).error,
            "connection closed in the response head");
  EXPECT_EQ(FeedAllWays("HTTP/1.1 2", 1 << 16, true).error,
            "connection closed in the response head");
  EXPECT_EQ(FeedAllWays("", 1 << 16, true).error, "connection closed before a response");
}

TEST(HttpClientTest, HeaderTooLarge) {
  std::string big = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(ResponseParser::kMaxHeadBytes, 'a');
  const Outcome o = FeedAllWays(big);
  EXPECT_TRUE(o.failed);
  EXPECT_EQ(o.error, "header section too large (over 16384 octets)");
  // Just under the limit is fine.
  std::string fits = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Big: ";
  fits += std::string(ResponseParser::kMaxHeadBytes - fits.size() - 4, 'a') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), ResponseParser::kMaxHeadBytes);
  EXPECT_TRUE(FeedAllWays(fits).done);
  // More than 100 fields.
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i <= 100; ++i) {
    many += "X-" + std::to_string(i) + ": v\r\n";
  }
  EXPECT_EQ(FeedAllWays(many + "\r\n").error, "too many header fields (over 100)");
}

TEST(HttpClientTest, InterimResponsesAreSkipped) {
  const Outcome o = FeedAllWays(
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_TRUE(o.done) << o.error;
  EXPECT_EQ(o.status, 200);
  EXPECT_EQ(o.body, "ok");
  ResponseParser p(10);
  p.OnBytes("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_TRUE(p.done());
  EXPECT_EQ(p.status(), 204);
  EXPECT_EQ(p.header("link"), "");  // the interim response's fields are not the final ones
  EXPECT_EQ(FeedAllWays("HTTP/1.1 101 Switching Protocols\r\n\r\n").error,
            "unexpected 101 Switching Protocols");
}

TEST(HttpClientTest, MalformedHeads) {
  struct Case {
    std::string_view input, error;
  };
  const Case cases[] = {
      {"HTTP/2 200 OK\r\n", "bad status line"},
      {"HTTP/2.0 200 OK\r\n", "not an HTTP/1.x response"},
      {"http/1.1 200 OK\r\n", "bad status line"},
      {"HTTP/1.1 20 OK\r\n", "bad status line"},
      {"HTTP/1.1 2000 OK\r\n", "bad status line"},
      {"HTTP/1.1 099 Low\r\n", "bad status code"},
      {"HTTP/1.1 600 High\r\n", "bad status code"},
      {"\r\nHTTP/1.1 200 OK\r\n", "bad status line"},
      {"HTTP/1.1 200 OK\r\nX: a\rb\r\n", "bare CR in a line"},
      {"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n", "obsolete line folding is not accepted"},
      {"HTTP/1.1 200 OK\r\nX : a\r\n", "bad header field name"},
      {"HTTP/1.1 200 OK\r\nno colon\r\n", "bad header field name"},
      {"HTTP/1.1 200 OK\r\nX: a\x01\r\n", "bad header field value"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "bad Content-Length"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       "conflicting Content-Length values"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n", "conflicting Content-Length values"},
  };
  for (const Case& c : cases) {
    const Outcome o = FeedAllWays(c.input);
    EXPECT_TRUE(o.failed) << c.input;
    EXPECT_EQ(o.error, c.error) << c.input;
  }
  // A list of one repeated value is that value (RFC 9112 §6.3).
  const Outcome same =
      FeedAllWays("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_TRUE(same.done) << same.error;
  EXPECT_EQ(same.body, "abc");
}

TEST(HttpClientTest, NothingIsReadAfterFailureOrEof) {
  ResponseParser p(10);
  p.OnBytes("HTTP/9.9 200 OK\r\n");
  ASSERT_TRUE(p.failed());
  const std::string error = p.error();
  p.OnBytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  p.OnEof();
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.done());
  EXPECT_EQ(p.error(), error);

  ResponseParser q(10);
  q.OnBytes("HTTP/1.1 200 OK\r\n\r\nab");
  q.OnEof();
  q.OnBytes("cd");
  EXPECT_TRUE(q.done());
  EXPECT_EQ(q.body(), "ab");
}

}  // namespace
}  // namespace spate::http
