// tests/fuzz/record_json_fuzz.cc
//
// Fuzzes what turns hostile text into accounting records: FormatRecord (delivery/accounting.h,
// over core/json.h's strings) with the fields a remote server or a submitter controls, and
// HeaderValue (core/smtp/header.h), which reads the campaign header out of a message.
//
// Input: [code: 2 octets big-endian] then NUL-separated fields: reply text, enhanced code,
// recipient, sender, campaign, peer name, then the rest as a message for HeaderValue.
//
// Invariants (a violation traps):
//  - the record is one line (no CR or LF) of JSON that nlohmann-json parses, an object whose
//    reply.text, recipient and sender are the inputs exactly when those are valid UTF-8, and
//    otherwise valid UTF-8 of at least as many code points' worth;
//  - HeaderValue's value holds no CR or LF, and does not begin or end with a blank.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/smtp/header.h"
#include "core/smtp/reply.h"
#include "delivery/accounting.h"
#include "tests/fuzz/fuzz_util.h"

#include <nlohmann/json.hpp>

namespace spate::fuzz {
namespace {

// Well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points past U+10FFFF).
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size())
      return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2)
        return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      return false;
    i += n;
  }
  return true;
}

void Check(const uint8_t* data, size_t size) {
  if (size < 2)
    return;
  const uint16_t code = static_cast<uint16_t>((data[0] << 8) | data[1]);
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::vector<std::string_view> f;
  while (f.size() < 6) {
    const size_t nul = rest.find('\0');
    f.push_back(rest.substr(0, nul));
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  }
  smtp::Reply reply{code, std::string(f[1]), std::string(f[0])};
  delivery::Record r;
  r.type = delivery::RecordType::kBounce;
  r.id = code;
  r.reply = &reply;
  r.recipient = f[2];
  r.sender = f[3];
  r.campaign = f[4];
  r.peer_name = f[5];
  r.bounce_class = "Uncategorized";
  r.event_ms = code;
  const std::string line = delivery::FormatRecord(r);
  FUZZ_CHECK(line.find('\n') == std::string::npos && line.find('\r') == std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(j.is_object());
  FUZZ_CHECK(j["reply"]["code"] == code);
  const std::string text = j["reply"]["text"];
  FUZZ_CHECK(ValidUtf8(text));
  if (ValidUtf8(f[0]))
    FUZZ_CHECK(text == f[0]);
  if (!f[2].empty() && ValidUtf8(f[2]))
    FUZZ_CHECK(j["recipient"] == f[2]);
  if (ValidUtf8(f[3]))
    FUZZ_CHECK(j["sender"] == f[3]);

  const std::string value = smtp::HeaderValue(rest, f[4].empty() ? "X-Campaign" : f[4]);
  FUZZ_CHECK(value.find('\r') == std::string::npos && value.find('\n') == std::string::npos);
  if (!value.empty()) {
    FUZZ_CHECK(value.front() != ' ' && value.front() != '\t');
    FUZZ_CHECK(value.back() != ' ' && value.back() != '\t');
  }
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  spate::fuzz::Check(data, size);
  return 0;
}
