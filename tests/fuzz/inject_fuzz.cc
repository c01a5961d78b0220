// tests/fuzz/inject_fuzz.cc
//
// Fuzzes HTTP injection (core/inject/inject.h) with a hostile client's JSON body, under small
// limits (4 recipients, 64 KiB per message, 256 KiB in all) so that every refusal is reachable.
//
// Input: the body, whole.
//
// Invariants (a violation traps):
//  - Build() returns (no exception, no crash) and gives the same answer twice;
//  - an error is 400, 413 or 500, names a field, has a text, and leaves the output untouched;
//  - on success: 1..4 messages, the envelope sender an address (non-empty, no blank, CR or LF);
//    each recipient likewise; each message non-empty, ending in CRLF, with no bare CR or LF,
//    no line over 998 octets, a header section of fields (and folded lines) that holds Date:
//    and Message-ID:, no more than max_message_bytes; body_8bit exactly when an octet >= 0x80
//    is in it; smtputf8 whenever the sender or the recipient has one.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/inject/inject.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

inject::Limits SmallLimits() {
  inject::Limits l;
  l.max_recipients = 4;
  l.max_message_bytes = 64 << 10;
  l.max_total_bytes = 256 << 10;
  return l;
}

inject::Context TestContext() {
  inject::Context c;
  c.hostname = "mta.example";
  c.now_ms = 1704164645000;
  c.message_id_base = "fuzz";
  return c;
}

bool NonAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return true;
    }
  }
  return false;
}

bool NameIs(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':') {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char a = line[i] >= 'A' && line[i] <= 'Z' ? static_cast<char>(line[i] + 32) : line[i];
    const char b = name[i] >= 'A' && name[i] <= 'Z' ? static_cast<char>(name[i] + 32) : name[i];
    if (a != b) {
      return false;
    }
  }
  return true;
}

void CheckAddress(std::string_view a) {
  FUZZ_CHECK(!a.empty() && a.size() <= 254);
  FUZZ_CHECK(a.find_first_of(" \r\n<>") == std::string_view::npos);
  FUZZ_CHECK(a.find('@') != std::string_view::npos);
}

void CheckMessage(const inject::Message& m, const inject::Limits& limits) {
  CheckAddress(m.recipient);
  const std::string_view d = m.data;
  FUZZ_CHECK(d.size() >= 2 && d.substr(d.size() - 2) == "\r\n");
  FUZZ_CHECK(d.size() <= limits.max_message_bytes);
  FUZZ_CHECK(m.body_8bit == NonAscii(d));
  if (NonAscii(m.recipient)) {
    FUZZ_CHECK(m.smtputf8);
  }
  bool in_header = true;
  bool has_date = false;
  bool has_id = false;
  size_t line_no = 0;
  std::string_view rest = d;
  while (!rest.empty()) {
    const size_t crlf = rest.find("\r\n");
    FUZZ_CHECK(crlf != std::string_view::npos);
    const std::string_view line = rest.substr(0, crlf);
    rest.remove_prefix(crlf + 2);
    FUZZ_CHECK(line.find_first_of("\r\n") == std::string_view::npos);
    FUZZ_CHECK(line.size() <= 998);
    if (in_header) {
      if (line.empty()) {
        in_header = false;
      } else if (line[0] == ' ' || line[0] == '\t') {
        FUZZ_CHECK(line_no > 0);
      } else {
        FUZZ_CHECK(line.find(':') != std::string_view::npos);
        has_date = has_date || NameIs(line, "date");
        has_id = has_id || NameIs(line, "message-id");
      }
    }
    ++line_no;
  }
  FUZZ_CHECK(has_date && has_id);
}

std::string Describe(bool ok, const inject::Request& r, const inject::Error& e) {
  if (!ok) {
    return "error " + std::to_string(e.status) + " " + e.field + " " + e.text;
  }
  std::string s = "ok " + r.envelope_sender + "\n";
  for (const inject::Message& m : r.messages) {
    s += m.recipient + (m.body_8bit ? " 8" : " 7") + (m.smtputf8 ? "u\n" : "a\n") + m.data;
  }
  return s;
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate;
  const std::string_view body = fuzz::AsView(data, size);
  const inject::Limits limits = fuzz::SmallLimits();
  const inject::Context context = fuzz::TestContext();
  inject::Request request;
  request.envelope_sender = "untouched";
  inject::Error error;
  const bool ok = inject::Build(body, limits, context, &request, &error);
  if (!ok) {
    FUZZ_CHECK(error.status == 400 || error.status == 413 || error.status == 500);
    FUZZ_CHECK(!error.field.empty() && !error.text.empty());
    FUZZ_CHECK(error.field.size() <= 300);
    FUZZ_CHECK(request.envelope_sender == "untouched" && request.messages.empty());
  } else {
    fuzz::CheckAddress(request.envelope_sender);
    FUZZ_CHECK(!request.messages.empty() && request.messages.size() <= limits.max_recipients);
    const bool sender_utf8 = fuzz::NonAscii(request.envelope_sender);
    for (const inject::Message& m : request.messages) {
      fuzz::CheckMessage(m, limits);
      FUZZ_CHECK(!sender_utf8 || m.smtputf8);
    }
  }
  inject::Request again;
  inject::Error again_error;
  const bool again_ok = inject::Build(body, limits, context, &again, &again_error);
  FUZZ_CHECK(again_ok == ok);
  FUZZ_CHECK(fuzz::Describe(ok, request, error) == fuzz::Describe(again_ok, again, again_error));
  return 0;
}
