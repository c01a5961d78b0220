// tests/fuzz/http_response_fuzz.cc
//
// Fuzzes the HTTP/1.1 response parser of the client (core/http/client.h) with a hostile
// server's bytes, under a small body limit (64 octets) so that "body too large" is reachable.
//
// Input: 1 octet, the split: its low 7 bits pick the cut (as a fraction of the payload), its top
// bit says whether the server then closes the connection (OnEof); then the server's bytes. The
// bytes are fed whole, and again in two pieces cut there.
//
// Invariants (a violation traps):
//  - done() and failed() are never both true, after any piece; failed() has an error and
//    done() none; body().size() <= max_body always, and the body is empty after a failure;
//  - after OnEof() the parser is done or failed;
//  - both feeds end the same: the same done(), failed(), error, status and body;
//  - done: the status is 200..599 (never a 1xx), and 204 and 304 have no body; field names
//    are non-empty lower-case, values hold no control octet but HTAB and no blank at either end.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/http/client.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

constexpr size_t kMaxBody = 64;

void CheckState(const http::ResponseParser& p) {
  FUZZ_CHECK(!(p.done() && p.failed()));
  FUZZ_CHECK(p.body().size() <= kMaxBody);
  FUZZ_CHECK(p.failed() == !p.error().empty());
  if (p.failed()) {
    FUZZ_CHECK(p.body().empty());
  }
}

std::string Run(std::string_view input, size_t cut, bool eof) {
  http::ResponseParser p(kMaxBody);
  p.OnBytes(input.substr(0, cut));
  CheckState(p);
  p.OnBytes(input.substr(cut));
  CheckState(p);
  if (eof) {
    p.OnEof();
    CheckState(p);
    FUZZ_CHECK(p.done() || p.failed());
  }
  if (p.done()) {
    FUZZ_CHECK(p.status() >= 200 && p.status() <= 599);
    if (p.status() == 204 || p.status() == 304) {
      FUZZ_CHECK(p.body().empty());
    }
    for (const auto& [name, value] : p.headers()) {
      FUZZ_CHECK(!name.empty());
      for (char c : name) {
        FUZZ_CHECK(!(c >= 'A' && c <= 'Z') && c != ' ' && c != ':');
      }
      for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        FUZZ_CHECK(c >= 0x20 || c == '\t');
        FUZZ_CHECK(c != 0x7f);
      }
      FUZZ_CHECK(value.empty() || (value.front() != ' ' && value.front() != '\t' &&
                                   value.back() != ' ' && value.back() != '\t'));
    }
  }
  return std::string(p.done() ? "done" : "") + (p.failed() ? "failed" : "") + "|" + p.error() +
         "|" + std::to_string(p.status()) + "|" + p.body();
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view input = spate::fuzz::AsView(data + 1, size - 1);
  const bool eof = (data[0] & 0x80) != 0;
  const size_t cut = input.size() * (data[0] & 0x7f) / 127;
  const std::string whole = spate::fuzz::Run(input, input.size(), eof);
  FUZZ_CHECK(whole == spate::fuzz::Run(input, cut, eof));
  return 0;
}
