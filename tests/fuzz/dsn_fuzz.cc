// tests/fuzz/dsn_fuzz.cc
//
// Fuzzes the DSN builder (delivery/dsn.h) with hostile inputs: the reply text a remote server
// sent, the names and addresses around it, and the original message.
//
// Input: [flags] then NUL-separated fields: diagnostic, remote MTA, final recipient, ORCPT,
// status, ENVID, sender, original message. Flags: 0x01 RET=FULL, 0x02 expired, 0x0c the
// action (failed, delayed, delivered, relayed), 0x10 a second recipient with the same fields,
// 0x20 a small max_full_size.
//
// Invariants (a violation traps):
//  - every octet outside the returned original is printable US-ASCII, CR, LF or tab, and every
//    line end is CRLF;
//  - no line outside the returned original is longer than 998 octets (RFC 5322 §2.1.1);
//  - the boundary line "--B--" closes the message once, and the boundary occurs in no other
//    place than its own delimiter lines (none inside the original);
//  - the header section has exactly the fields the builder writes (nothing injected);
//  - the Status field is a well-formed RFC 3463 code.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "delivery/dsn.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

std::vector<std::string_view> Fields(std::string_view in, size_t n) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < n) {
    const size_t z = in.find('\0');
    out.push_back(in.substr(0, z));
    in = z == std::string_view::npos ? std::string_view() : in.substr(z + 1);
  }
  out.push_back(in);
  return out;
}

size_t Count(std::string_view hay, std::string_view needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string_view::npos; at = hay.find(needle, at + 1))
    ++n;
  return n;
}

bool WellFormedStatus(std::string_view s) {
  if (s.size() < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
    return false;
  int dots = 0;
  for (char c : s) {
    if (c == '.')
      ++dots;
    else if (c < '0' || c > '9')
      return false;
  }
  return dots == 2 && s.back() != '.';
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate;
  using namespace spate::fuzz;
  if (size < 1)
    return 0;
  const uint8_t flags = data[0];
  const std::vector<std::string_view> f =
      Fields(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), 8);
  delivery::dsn::Report report;
  report.reporting_mta = "spate.test";
  report.from = "MAILER-DAEMON@spate.test";
  report.to = std::string(f[6]);
  report.envid = std::string(f[5]);
  report.arrival_ms = 1796000000000;
  report.now_ms = report.arrival_ms + 1000;
  report.unique = 42;
  report.return_full = (flags & 0x01) != 0;
  report.max_full_size = (flags & 0x20) != 0 ? 16 : 256 * 1024;
  const std::string original(f[7]);
  report.original = original;
  delivery::dsn::Recipient r;
  r.diagnostic = std::string(f[0]);
  r.remote_mta = std::string(f[1]);
  r.final_recipient = std::string(f[2]);
  r.original_recipient = std::string(f[3]);
  r.status = std::string(f[4]);
  r.expired = (flags & 0x02) != 0;
  r.action = static_cast<delivery::dsn::Action>((flags >> 2) & 0x03);
  r.last_attempt_ms = report.now_ms;
  report.recipients.push_back(r);
  if ((flags & 0x10) != 0)
    report.recipients.push_back(r);
  const delivery::dsn::Notification n = delivery::dsn::Build(report);
  const std::string& m = n.message;

  // The returned original (or its headers) is the last part: everything before it is ours.
  const std::string_view param =
      "\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"";
  const size_t b = m.find(param);
  FUZZ_CHECK(b != std::string::npos);
  const size_t start = b + param.size();
  const std::string boundary = m.substr(start, m.find('"', start) - start);
  FUZZ_CHECK(!boundary.empty());
  const std::string closing = "\r\n--" + boundary + "--\r\n";
  FUZZ_CHECK(m.ends_with(closing));
  FUZZ_CHECK(Count(m, boundary) == 5);  // the parameter, three delimiters, the close
  const size_t third = m.rfind("\r\n--" + boundary + "\r\n");
  FUZZ_CHECK(third != std::string::npos);
  const std::string_view ours(m.data(), third + 2);
  size_t line_start = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const auto c = static_cast<unsigned char>(ours[i]);
    FUZZ_CHECK(c == '\r' || c == '\n' || c == '\t' || (c >= 32 && c < 127));
    if (c == '\n') {
      FUZZ_CHECK(i > 0 && ours[i - 1] == '\r');
      FUZZ_CHECK(i - line_start - 1 <= 998);
      line_start = i + 1;
    }
    if (c == '\r')
      FUZZ_CHECK(i + 1 < ours.size() && ours[i + 1] == '\n');
  }
  // The header section: the builder's eight fields, one continuation line, nothing else.
  const std::string_view header = ours.substr(0, ours.find("\r\n\r\n") + 2);
  size_t fields = 0;
  for (size_t at = 0; at < header.size();) {
    const size_t end = header.find("\r\n", at);
    if (header[at] != ' ' && header[at] != '\t')
      ++fields;
    at = end + 2;
  }
  FUZZ_CHECK(fields == 8);
  // Every Status field is a well-formed code.
  for (size_t at = ours.find("\r\nStatus: "); at != std::string_view::npos;
       at = ours.find("\r\nStatus: ", at + 1)) {
    const size_t begin = at + 10;
    FUZZ_CHECK(WellFormedStatus(ours.substr(begin, ours.find("\r\n", begin) - begin)));
  }
  return 0;
}
