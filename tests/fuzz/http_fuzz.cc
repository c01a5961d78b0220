// tests/fuzz/http_fuzz.cc
//
// Fuzzes the HTTP/1.1 server codec (core/http/http.h) with a hostile client's bytes, under small
// limits (512-octet heads, 8 fields, 1 KiB bodies) so that every refusal is reachable.
//
// Input: 1 octet, the seed of the split; then the client's bytes. The bytes are fed whole, then
// again cut into pieces of 1..(seed % 64 + 1) octets drawn from a generator seeded by it.
//
// Invariants (a violation traps):
//  - both feeds give the same requests, the same error and the same closed();
//  - every request's body is exactly its Content-Length (0 without one); its method is a token,
//    its target starts with '/' and is path, then '?' and query if there is one; its field names
//    are lower-case, its values hold no CR, LF or NUL and no blank at either end; no more
//    fields than the limit;
//  - an error is one of 400, 411, 413, 431, 501, 505, taken once, only after the requests before
//    it, and closed() holds after it; no request comes after it, even with more bytes fed;
//  - Serialize() of the error, and of a response echoing every request field as its own, is a
//    head of CRLF-ended lines holding no other CR or LF.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/http.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

http::Limits SmallLimits() {
  http::Limits l;
  l.max_header_bytes = 512;
  l.max_headers = 8;
  l.max_body_bytes = 1024;
  return l;
}

// The head of serialized bytes is CRLF-ended lines with no other CR or LF in them.
void CheckHead(std::string_view bytes) {
  const size_t end = bytes.find("\r\n\r\n");
  FUZZ_CHECK(end != std::string_view::npos);
  std::string_view head = bytes.substr(0, end + 2);
  while (!head.empty()) {
    const size_t crlf = head.find("\r\n");
    FUZZ_CHECK(crlf != std::string_view::npos);
    const std::string_view line = head.substr(0, crlf);
    FUZZ_CHECK(line.find('\r') == std::string_view::npos);
    FUZZ_CHECK(line.find('\n') == std::string_view::npos);
    FUZZ_CHECK(!line.empty());
    head.remove_prefix(crlf + 2);
  }
}

void CheckRequest(const http::Request& r, const http::Limits& limits) {
  FUZZ_CHECK(!r.method.empty());
  FUZZ_CHECK(!r.target.empty() && r.target[0] == '/');
  const size_t q = r.target.find('?');
  FUZZ_CHECK(r.path == r.target.substr(0, q));
  FUZZ_CHECK(r.query == (q == std::string::npos ? "" : r.target.substr(q + 1)));
  FUZZ_CHECK(r.headers.size() <= limits.max_headers);
  http::Response echo;
  for (const auto& [name, value] : r.headers) {
    FUZZ_CHECK(!name.empty());
    for (char c : name) {
      FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
    }
    FUZZ_CHECK(value.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
    FUZZ_CHECK(value.empty() || (value.front() != ' ' && value.back() != ' '));
    echo.headers.emplace_back("X-" + name, value);
  }
  const std::string_view length = r.header("content-length");
  size_t want = 0;
  for (char c : length) {
    FUZZ_CHECK(c >= '0' && c <= '9');
    want = want * 10 + static_cast<size_t>(c - '0');
    FUZZ_CHECK(want <= limits.max_body_bytes);
  }
  FUZZ_CHECK(r.body.size() == want);
  echo.body = r.body;
  CheckHead(http::Serialize(echo, !r.keep_alive));
}

// What one feed gave, as a string to compare.
std::string Run(std::string_view input, uint8_t seed, bool split) {
  const http::Limits limits = SmallLimits();
  http::ServerSession s(limits);
  std::string seen;
  bool errored = false;
  auto take = [&] {
    while (std::optional<http::Request> r = s.TakeRequest()) {
      FUZZ_CHECK(!errored);
      CheckRequest(*r, limits);
      seen += "req " + r->method + " " + r->target + " " + std::to_string(r->headers.size()) + " " +
              std::to_string(r->body.size()) + (r->keep_alive ? " keep\n" : " close\n");
    }
    if (std::optional<http::Response> e = s.TakeError()) {
      FUZZ_CHECK(!errored);
      errored = true;
      FUZZ_CHECK(s.closed());
      const int st = e->status;
      FUZZ_CHECK(st == 400 || st == 411 || st == 413 || st == 431 || st == 501 || st == 505);
      CheckHead(http::Serialize(*e, true));
      seen += "error " + std::to_string(st) + "\n";
    }
  };
  if (!split) {
    s.OnBytes(input);
    take();
  } else {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<size_t> size(1, seed % 64 + 1);
    while (!input.empty()) {
      const size_t n = std::min(size(rng), input.size());
      s.OnBytes(input.substr(0, n));
      input.remove_prefix(n);
      take();
    }
  }
  if (errored) {
    s.OnBytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    FUZZ_CHECK(!s.TakeRequest());
    FUZZ_CHECK(!s.TakeError());
  }
  seen += s.closed() ? "closed\n" : "open\n";
  return seen;
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view input = spate::fuzz::AsView(data + 1, size - 1);
  const std::string whole = spate::fuzz::Run(input, data[0], false);
  FUZZ_CHECK(whole == spate::fuzz::Run(input, data[0], true));
  return 0;
}
