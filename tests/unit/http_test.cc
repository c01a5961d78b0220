// tests/unit/http_test.cc: the HTTP/1.1 server codec (core/http/http.h), driven as the reactor
// would: bytes in, then every finished request and the error taken.
//
// Every input is fed whole, octet by octet and in random splits, and must give the same requests,
// the same error and the same closed() each time; the tests then check what a client would see.
#include "core/http/http.h"

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace spate::http {
namespace {

struct Outcome {
  std::vector<Request> requests;
  std::optional<Response> error;
  bool closed = false;
};

// One line per request and the error, so that two outcomes compare (and print) as strings.
std::string Describe(const Outcome& o) {
  std::string s;
  for (const Request& r : o.requests) {
    s += "req " + r.method + " " + r.target + " path=" + r.path + " query=" + r.query +
         " keep=" + (r.keep_alive ? "1" : "0") + " headers=";
    for (const auto& [n, v] : r.headers) {
      s += "[" + n + "=" + v + "]";
    }
    s += " body=" + r.body + "\n";
  }
  if (o.error) {
    s += "error " + std::to_string(o.error->status) + " " + o.error->body + "\n";
  }
  s += o.closed ? "closed\n" : "open\n";
  return s;
}

// Feeds `input` in pieces of the given sizes (the rest at the end), taking what is ready after
// each piece as the reactor does.
Outcome Feed(std::string_view input, const std::vector<size_t>& sizes, Limits limits) {
  ServerSession session(limits);
  Outcome o;
  auto take = [&] {
    while (std::optional<Request> r = session.TakeRequest()) {
      EXPECT_FALSE(o.error) << "a request after the error";
      o.requests.push_back(std::move(*r));
    }
    if (std::optional<Response> e = session.TakeError()) {
      EXPECT_FALSE(o.error) << "a second error";
      o.error = std::move(e);
      EXPECT_TRUE(session.closed());
    }
  };
  size_t i = 0;
  for (size_t n : sizes) {
    if (i >= input.size()) {
      break;
    }
    n = std::min(n, input.size() - i);
    session.OnBytes(input.substr(i, n));
    i += n;
    take();
  }
  if (i < input.size()) {
    session.OnBytes(input.substr(i));
    take();
  }
  o.closed = session.closed();
  return o;
}

// The outcome of `input`, checked to be the same whole, octet by octet and in random splits.
Outcome Parse(std::string_view input, Limits limits = {}) {
  const Outcome whole = Feed(input, {}, limits);
  const std::string expected = Describe(whole);
  EXPECT_EQ(Describe(Feed(input, std::vector<size_t>(input.size(), 1), limits)), expected)
      << "octet by octet";
  std::mt19937 rng(static_cast<uint32_t>(input.size()));
  for (int round = 0; round < 20; ++round) {
    std::vector<size_t> sizes;
    for (size_t used = 0; used < input.size();) {
      sizes.push_back(std::uniform_int_distribution<size_t>(0, 17)(rng));
      used += sizes.back();
    }
    EXPECT_EQ(Describe(Feed(input, sizes, limits)), expected) << "random split " << round;
  }
  return whole;
}

// The status of the error `input` gets, 0 if none.
int ErrorOf(std::string_view input, Limits limits = {}) {
  const Outcome o = Parse(input, limits);
  return o.error ? o.error->status : 0;
}

TEST(HttpSession, SimpleGet) {
  const Outcome o =
      Parse("GET /api/v1/queue HTTP/1.1\r\nHost: localhost\r\nAccept:  application/json \r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_FALSE(o.error);
  EXPECT_FALSE(o.closed);
  const Request& r = o.requests[0];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/api/v1/queue");
  EXPECT_EQ(r.path, "/api/v1/queue");
  EXPECT_EQ(r.query, "");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_EQ(r.body, "");
  const std::vector<std::pair<std::string, std::string>> headers = {{"host", "localhost"},
                                                                    {"accept", "application/json"}};
  EXPECT_EQ(r.headers, headers);
}

TEST(HttpSession, QuerySplitOffThePath) {
  auto target = [](std::string_view t) {
    const Outcome o = Parse("GET " + std::string(t) + " HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(o.requests.size(), 1u) << t;
    return o.requests.empty() ? Request() : o.requests[0];
  };
  Request r = target("/messages?limit=10&state=deferred");
  EXPECT_EQ(r.path, "/messages");
  EXPECT_EQ(r.query, "limit=10&state=deferred");
  EXPECT_EQ(r.target, "/messages?limit=10&state=deferred");
  r = target("/a?");
  EXPECT_EQ(r.path, "/a");
  EXPECT_EQ(r.query, "");
  r = target("/a?b?c=%20");
  EXPECT_EQ(r.path, "/a");
  EXPECT_EQ(r.query, "b?c=%20");  // not decoded
}

TEST(HttpSession, HeaderLookupIsCaseInsensitive) {
  const Outcome o =
      Parse("GET / HTTP/1.1\r\nHOST: h\r\nX-Thing: one\r\nx-thing: two\r\nEmpty:\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  const Request& r = o.requests[0];
  EXPECT_EQ(r.headers[0].first, "host");
  EXPECT_EQ(r.header("host"), "h");
  EXPECT_EQ(r.header("Host"), "h");
  EXPECT_EQ(r.header("x-thing"), "one");  // the first
  EXPECT_EQ(r.header("X-THING"), "one");
  EXPECT_EQ(r.header("empty"), "");
  EXPECT_EQ(r.header("absent"), "");
}

TEST(HttpSession, BodyArrivesInPieces) {
  ServerSession s;
  s.OnBytes("POST /inject HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhel");
  EXPECT_FALSE(s.TakeRequest());
  s.OnBytes("lo ");
  EXPECT_FALSE(s.TakeRequest());
  s.OnBytes("world");
  std::optional<Request> r = s.TakeRequest();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "hello world");
  EXPECT_FALSE(s.TakeError());
  EXPECT_FALSE(s.closed());
  // The same through every split.
  const Outcome o = Parse("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n{\"a\"}");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "{\"a\"}");
}

TEST(HttpSession, TwoPipelinedRequestsInOneRead) {
  const Outcome o = Parse(
      "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "GET /b?q HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 2u);
  EXPECT_EQ(o.requests[0].path, "/a");
  EXPECT_EQ(o.requests[0].body, "abc");
  EXPECT_EQ(o.requests[1].path, "/b");
  EXPECT_EQ(o.requests[1].query, "q");
  EXPECT_FALSE(o.error);
  EXPECT_FALSE(o.closed);
}

TEST(HttpSession, BareLfAcceptedBareCrRefused) {
  const Outcome o = Parse("GET / HTTP/1.1\nHost: h\n\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].header("host"), "h");
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\rHost: h\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"), 400);
  // Empty lines before the request line are skipped (RFC 9112 §2.2).
  EXPECT_EQ(Parse("\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").requests.size(), 1u);
}

TEST(HttpSession, BadRequestLine) {
  for (std::string_view line : {
           "GET /",                   // no version
           "GET  / HTTP/1.1",         // two spaces
           "GET / HTTP/1.1 ",         // trailing space
           "GET / http/1.1",          // the name is case-sensitive
           "GE(T / HTTP/1.1",         // method not a token
           " GET / HTTP/1.1",         // empty method
           "GET api HTTP/1.1",        // not origin-form
           "GET http://h/ HTTP/1.1",  // absolute-form
           "OPTIONS * HTTP/1.1",      // asterisk-form
           "CONNECT h:443 HTTP/1.1",  // authority-form
           "GET /a\x01 HTTP/1.1",     // control
           "GET /a\x7f HTTP/1.1",
           "GET /caf\xc3\xa9 HTTP/1.1",  // non-ASCII
           "GET /a#frag HTTP/1.1",
           "GET /a\tb HTTP/1.1",
           "GET / HTTP/1.10",
           "GET / HTTP/1",
           "GET / HTTP/x.1",
       }) {
    const std::string input = std::string(line) + "\r\nHost: h\r\n\r\n";
    EXPECT_EQ(ErrorOf(input), 400) << line;
  }
}

TEST(HttpSession, VersionNotSupported) {
  EXPECT_EQ(ErrorOf("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 505);
  EXPECT_EQ(ErrorOf("GET / HTTP/0.9\r\n\r\n"), 505);
  const Outcome o = Parse("GET / HTTP/1.0\r\n\r\n");  // 1.0 needs no Host
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_FALSE(o.requests[0].keep_alive);
}

TEST(HttpSession, BadFieldLines) {
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);  // space before the colon
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf(std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 33)), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\nX: a\x1b b\r\n\r\n"), 400);
  // obs-fold (RFC 9112 §5.2).
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
  // HTAB and obs-text are fine in a value.
  const Outcome o = Parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb \xff\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].header("x"), "a\tb \xff");
}

TEST(HttpSession, ContentLength) {
  auto post = [](std::string_view fields, std::string_view body = "") {
    return "POST / HTTP/1.1\r\nHost: h\r\n" + std::string(fields) + "\r\n" + std::string(body);
  };
  EXPECT_EQ(ErrorOf(post("Content-Length: abc\r\n")), 400);
  EXPECT_EQ(ErrorOf(post("Content-Length: -1\r\n")), 400);
  EXPECT_EQ(ErrorOf(post("Content-Length: +5\r\n", "hello")), 400);
  EXPECT_EQ(ErrorOf(post("Content-Length: 5 5\r\n", "hello")), 400);
  EXPECT_EQ(ErrorOf(post("Content-Length: 5, 5\r\n", "hello")), 400);
  EXPECT_EQ(ErrorOf(post("Content-Length:\r\n")), 400);
  EXPECT_EQ(ErrorOf(post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")), 400);
  // The same value twice is one length; leading zeros are still digits.
  Outcome o = Parse(post("Content-Length: 5\r\ncontent-length: 5\r\n", "hello"));
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "hello");
  o = Parse(post("Content-Length: 0005\r\n", "helloGET"));
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "hello");
  EXPECT_FALSE(o.error);  // "GET" is the start of the next request
  // 411 for POST and PUT without a length; anything else has an empty body.
  EXPECT_EQ(ErrorOf(post("")), 411);
  EXPECT_EQ(ErrorOf("PUT / HTTP/1.1\r\nHost: h\r\n\r\n"), 411);
  o = Parse("DELETE /m/1 HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0].body, "");
}

TEST(HttpSession, BodyTooLargeDecidedBeforeTheBody) {
  Limits limits;
  limits.max_body_bytes = 10;
  ServerSession s(limits);
  s.OnBytes("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");
  std::optional<Response> e = s.TakeError();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 413);
  EXPECT_TRUE(s.closed());
  EXPECT_EQ(ErrorOf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789", limits),
            0);
  EXPECT_EQ(
      ErrorOf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
      413);
  EXPECT_EQ(ErrorOf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551617\r\n\r\n"),
            413);
}

TEST(HttpSession, TransferEncoding) {
  const Outcome o = Parse(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_TRUE(o.requests.empty());
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->status, 501);
  EXPECT_NE(o.error->body.find("Content-Length"), std::string::npos) << o.error->body;
  EXPECT_TRUE(o.closed);
  // Both: request smuggling (RFC 9112 §6.3).
  EXPECT_EQ(ErrorOf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                    "Transfer-Encoding: chunked\r\n\r\nabc"),
            400);
  EXPECT_EQ(ErrorOf("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n"
                    "Content-Length: 3\r\n\r\nabc"),
            400);
}

TEST(HttpSession, Host) {
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.0\r\nHost: a\r\n\r\n"), 0);
}

TEST(HttpSession, KeepAliveAndClose) {
  // 1.1: persistent unless "close" is among the Connection options.
  Outcome o = Parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_TRUE(o.requests[0].keep_alive);
  EXPECT_FALSE(o.closed);
  o = Parse(
      "GET /1 HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n"
      "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);  // nothing is read after the last request
  EXPECT_EQ(o.requests[0].path, "/1");
  EXPECT_FALSE(o.requests[0].keep_alive);
  EXPECT_FALSE(o.error);
  EXPECT_TRUE(o.closed);
  // 1.0: closed unless the client asks for keep-alive.
  o = Parse("GET / HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_FALSE(o.requests[0].keep_alive);
  EXPECT_TRUE(o.closed);
  o = Parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 2u);
  EXPECT_TRUE(o.requests[0].keep_alive);
  EXPECT_FALSE(o.requests[1].keep_alive);
  o = Parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_FALSE(o.requests[0].keep_alive);
}

TEST(HttpSession, HeaderLimits) {
  Limits limits;
  limits.max_header_bytes = 64;
  limits.max_headers = 3;
  const std::string head = "GET / HTTP/1.1\r\nHost: h\r\n";  // 25 octets
  // Exactly the limit passes (the empty line counts), one more octet is 431.
  const std::string fill = "X: " + std::string(64 - head.size() - 2 - 5, 'a') + "\r\n";
  EXPECT_EQ(ErrorOf(head + fill + "\r\n", limits), 0);
  EXPECT_EQ(ErrorOf(head + "X: a" + fill.substr(3) + "\r\n", limits), 431);
  EXPECT_EQ(ErrorOf(head + "A: 1\r\nB: 2\r\n\r\n", limits), 0);
  EXPECT_EQ(ErrorOf(head + "A: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits), 431);
  // A line without end is refused as soon as it passes the limit, not buffered.
  ServerSession s(limits);
  s.OnBytes("GET /" + std::string(59, 'a'));
  EXPECT_FALSE(s.TakeError());
  s.OnBytes("b");
  std::optional<Response> e = s.TakeError();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 431);
  s.OnBytes(std::string(1 << 20, 'a'));  // ignored
  EXPECT_FALSE(s.TakeRequest());
  // The limit is per request: many small ones on one connection are fine.
  std::string many;
  for (int i = 0; i < 50; ++i) {
    many += head + "\r\n";
  }
  const Outcome o = Parse(many, limits);
  EXPECT_EQ(o.requests.size(), 50u);
  EXPECT_FALSE(o.error);
}

TEST(HttpSession, ErrorAfterGoodRequestsComesLast) {
  ServerSession s;
  s.OnBytes(
      "GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET bad\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_TRUE(s.closed());
  EXPECT_FALSE(s.TakeError());  // the request before it is answered first
  std::optional<Request> r = s.TakeRequest();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->path, "/ok");
  EXPECT_FALSE(s.TakeRequest());
  std::optional<Response> e = s.TakeError();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 400);
  EXPECT_EQ(e->content_type, "application/json");
  EXPECT_FALSE(s.TakeError());  // once
  s.OnBytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_FALSE(s.TakeRequest());
  EXPECT_TRUE(s.closed());
}

// Hostile input built of HTTP fragments: the same outcome in every split, and no request's body
// differs from its Content-Length.
TEST(HttpSession, RandomFragmentsAgreeInEverySplit) {
  const std::vector<std::string> parts = {"GET / HTTP/1.1\r\n",
                                          "POST /x?y HTTP/1.1\r\n",
                                          "GET / HTTP/1.0\n",
                                          "Host: h\r\n",
                                          "Content-Length: 3\r\n",
                                          "Content-Length: 4\r\n",
                                          "Transfer-Encoding: chunked\r\n",
                                          "Connection: close\r\n",
                                          "Connection: keep-alive\r\n",
                                          "\r\n",
                                          "\n",
                                          "\r",
                                          "abc",
                                          " x\r\n",
                                          "X : y\r\n",
                                          "Y: z\r\n",
                                          "\0",
                                          "HTTP/2.0\r\n"};
  std::mt19937 rng(13);
  Limits limits;
  limits.max_header_bytes = 200;
  limits.max_headers = 4;
  for (int round = 0; round < 300; ++round) {
    std::string input;
    const size_t n = std::uniform_int_distribution<size_t>(1, 12)(rng);
    for (size_t i = 0; i < n; ++i) {
      input += parts[std::uniform_int_distribution<size_t>(0, parts.size() - 1)(rng)];
    }
    const Outcome o = Parse(input, limits);
    for (const Request& r : o.requests) {
      const std::string_view length = r.header("content-length");
      EXPECT_EQ(r.body.size(), length.empty() ? 0 : std::stoul(std::string(length))) << input;
    }
  }
}

TEST(HttpSerialize, ExactBytes) {
  Response r;
  r.body = "{\"a\":1}";
  EXPECT_EQ(Serialize(r, false),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
            "{\"a\":1}");
  r.status = 404;
  r.body = "";
  r.headers = {{"X-Request-Id", "42"}, {"Cache-Control", "no-store"}};
  EXPECT_EQ(Serialize(r, true),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 0\r\n"
            "Connection: close\r\nX-Request-Id: 42\r\nCache-Control: no-store\r\n\r\n");
  Response plain;
  plain.status = 202;
  plain.content_type = "";
  plain.body = "x";
  EXPECT_EQ(Serialize(plain, false), "HTTP/1.1 202 Accepted\r\nContent-Length: 1\r\n\r\nx");
}

TEST(HttpSerialize, NoResponseSplitting) {
  Response r;
  r.content_type = "text/plain\r\nSet-Cookie: a=b";
  r.headers = {{"X-Ok", "1"},
               {"X-Bad", "a\r\nSet-Cookie: evil=1"},
               {"X-Lf", "a\nb"},
               {"X-Cr", "a\rb"},
               {"X-Nul", std::string("a\0b", 3)},
               {"Bad Name", "v"},
               {"Bad\r\nName", "v"},
               {"", "v"},
               {"Content-Length", "999"},
               {"Transfer-Encoding", "chunked"},
               {"Connection", "keep-alive"}};
  r.body = "{}";
  EXPECT_EQ(Serialize(r, true),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nX-Ok: 1\r\n\r\n{}");
  // Not closing, the caller may say keep-alive (an HTTP/1.0 client needs it).
  Response k;
  k.headers = {{"Connection", "keep-alive"}};
  EXPECT_EQ(Serialize(k, false),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n"
            "Connection: keep-alive\r\n\r\n");
}

TEST(HttpSerialize, StatusesWithoutContent) {
  Response r;
  r.status = 204;
  r.body = "ignored";
  EXPECT_EQ(Serialize(r, false), "HTTP/1.1 204 No Content\r\n\r\n");
  r.status = 299;  // unknown: an empty reason phrase (RFC 9112 §4)
  EXPECT_EQ(Serialize(r, false),
            "HTTP/1.1 299 \r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\nignored");
  r.status = 42;
  EXPECT_EQ(Serialize(r, false).substr(0, 36), "HTTP/1.1 500 Internal Server Error\r\n");
}

TEST(HttpSerialize, ErrorResponses) {
  for (const auto& [input, status, reason] : std::vector<std::tuple<std::string, int, std::string>>{
           {"GET / HTTP/1.1\r\n\r\n", 400, "Bad Request"},
           {"POST / HTTP/1.1\r\nHost: h\r\n\r\n", 411, "Length Required"},
           {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999\r\n\r\n", 413,
            "Content Too Large"},
           {"GET / HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n", 431,
            "Request Header Fields Too Large"},
           {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
            "Not Implemented"},
           {"GET / HTTP/3.0\r\n\r\n", 505, "HTTP Version Not Supported"}}) {
    ServerSession s;
    s.OnBytes(input);
    std::optional<Response> e = s.TakeError();
    ASSERT_TRUE(e) << input.substr(0, 60);
    EXPECT_EQ(e->status, status);
    const std::string bytes = Serialize(*e, true);
    EXPECT_EQ(bytes.substr(0, bytes.find("\r\n")),
              "HTTP/1.1 " + std::to_string(status) + " " + reason);
    EXPECT_NE(bytes.find("\r\nConnection: close\r\n"), std::string::npos);
    EXPECT_EQ(bytes.substr(bytes.find("\r\n\r\n") + 4, 10), "{\"error\":\"");
  }
}

}  // namespace
}  // namespace spate::http
