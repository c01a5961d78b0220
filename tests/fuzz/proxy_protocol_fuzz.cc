// tests/fuzz/proxy_protocol_fuzz.cc
//
// Fuzzes proxy::Parse (core/proxy/proxy_protocol.h): the first bytes of a connection from a
// load balancer, which anyone who can reach the port may forge.
//
// Input: the bytes.
//
// Invariants (a violation traps):
//  - nothing is read past the input (ASan);
//  - a refusal has a reason;
//  - a header is at most kMaxHeader octets and within the input; the header alone parses the
//    same; every shorter prefix of it needs more (so reading byte by byte finds it too);
//  - "needs more" only for inputs shorter than kMaxHeader;
//  - a non-local header has an IPv4 or IPv6 source.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/proxy/proxy_protocol.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate::proxy;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  Header h;
  std::string error;
  const Status s = Parse(in, &h, &error);
  if (s == Status::kInvalid) {
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  if (s == Status::kNeedMore) {
    FUZZ_CHECK(in.size() < kMaxHeader);
    return 0;
  }
  FUZZ_CHECK(h.length > 0 && h.length <= in.size() && h.length <= kMaxHeader);
  FUZZ_CHECK(h.version == 1 || h.version == 2);
  FUZZ_CHECK(h.local || h.source.ss_family == AF_INET || h.source.ss_family == AF_INET6);
  Header alone;
  FUZZ_CHECK(Parse(in.substr(0, h.length), &alone, &error) == Status::kDone);
  FUZZ_CHECK(alone.length == h.length && alone.local == h.local);
  for (size_t n = 0; n < h.length; n += 1 + n / 8) {
    Header part;
    FUZZ_CHECK(Parse(in.substr(0, n), &part, &error) == Status::kNeedMore);
  }
  return 0;
}
