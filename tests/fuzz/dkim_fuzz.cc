// tests/fuzz/dkim_fuzz.cc
//
// Fuzzes DKIM signing (core/dkim/dkim.h, canon.h) with hostile messages: FromDomain, Split and
// RelaxedHeader over every field, RelaxedBody and RelaxedBodyHash over the body, and
// Signer::Sign with an Ed25519 key embedded below (RFC 8032 §7.1 test 1, the key of RFC 8463
// Appendix A: public, never a real one).
//
// Input: the message, as the spool would hold it (any bytes).
//
// Invariants (a violation traps):
//  - FromDomain() is "" or a domain: no empty label, no upper-case ASCII letter, no octet a
//    domain cannot hold, at most 255 octets;
//  - RelaxedHeader() of a field is its lower-case name, ':', and a value with no CRLF, no HTAB,
//    no two SP in a row and no SP at either end; canonicalizing it again changes nothing;
//  - RelaxedBody() is empty or ends with one CRLF (never an empty line at its end), holds no
//    HTAB, no two SP in a row and no SP before a CRLF; canonicalizing it again changes nothing,
//    and RelaxedBodyHash() hashes exactly it (both paths agree);
//  - Sign() returns "" or DKIM-Signature fields: each line starts with "DKIM-Signature:" or a
//    SP, ends with CRLF, holds no other CR or LF and no more than 78 octets; one field per
//    signing entry reported; with a default entry configured, a message is signed exactly when
//    FromDomain() finds a domain, and one not signed always says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dkim/dkim.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

constexpr const char* kEd25519Pem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

// Three entries: a domain, a parent with its own header list, and a default.
const dkim::Signer& TheSigner() {
  static const dkim::Signer signer = [] {
    std::vector<dkim::KeySpec> specs(3);
    specs[0].domain = "shop.example";
    specs[0].selector = "s1";
    specs[1].domain = "example";
    specs[1].selector = "s2";
    specs[1].headers = {"Subject", "To", "X-Campaign", "from"};
    specs[2].domain = "esp.test";
    specs[2].selector = "esp";
    specs[2].is_default = true;
    std::vector<std::string> pem;
    for (dkim::KeySpec& s : specs) {
      s.key_file = "(embedded)";
      pem.emplace_back(kEd25519Pem);
    }
    std::string error;
    std::optional<dkim::Signer> made = dkim::Signer::CreateFromPem(specs, pem, &error);
    if (!made) {
      std::fprintf(stderr, "dkim_fuzz: the embedded key does not load: %s\n", error.c_str());
      __builtin_trap();
    }
    return std::move(*made);
  }();
  return signer;
}

bool IsUpper(char c) {
  return c >= 'A' && c <= 'Z';
}

void CheckDomain(const std::string& d) {
  if (d.empty())
    return;
  FUZZ_CHECK(d.size() <= 255);
  FUZZ_CHECK(d.front() != '.' && d.back() != '.');
  FUZZ_CHECK(d.find("..") == std::string::npos);
  for (char c : d) {
    const auto u = static_cast<unsigned char>(c);
    FUZZ_CHECK(!IsUpper(c));
    FUZZ_CHECK(u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.');
  }
}

void CheckRelaxedHeader(const dkim::HeaderField& f) {
  const std::string h = dkim::RelaxedHeader(f.name, f.value);
  const size_t colon = h.find(':');
  FUZZ_CHECK(colon != std::string::npos);
  const std::string_view name(h.data(), colon);
  const std::string_view value = std::string_view(h).substr(colon + 1);
  for (char c : name)
    FUZZ_CHECK(!IsUpper(c));
  FUZZ_CHECK(name.empty() || (name.back() != ' ' && name.back() != '\t'));
  FUZZ_CHECK(value.find("\r\n") == std::string_view::npos);
  FUZZ_CHECK(value.find('\t') == std::string_view::npos);
  FUZZ_CHECK(value.find("  ") == std::string_view::npos);
  FUZZ_CHECK(value.empty() || (value.front() != ' ' && value.back() != ' '));
  FUZZ_CHECK(dkim::RelaxedHeader(name, value) == h);  // the name holds no ':' of its own
}

void CheckRelaxedBody(std::string_view body) {
  const std::string canonical = dkim::RelaxedBody(body);
  if (!canonical.empty()) {
    FUZZ_CHECK(canonical.ends_with("\r\n"));
    FUZZ_CHECK(canonical != "\r\n" && !canonical.ends_with("\r\n\r\n"));
  }
  FUZZ_CHECK(canonical.find('\t') == std::string::npos);
  FUZZ_CHECK(canonical.find("  ") == std::string::npos);
  FUZZ_CHECK(canonical.find(" \r\n") == std::string::npos);
  FUZZ_CHECK(dkim::RelaxedBody(canonical) == canonical);
  const std::string hash = dkim::RelaxedBodyHash(body);
  FUZZ_CHECK(hash.size() == 44 && hash.back() == '=');
  FUZZ_CHECK(dkim::RelaxedBodyHash(canonical) == hash);
}

void CheckSigned(std::string_view message) {
  const dkim::Signer& signer = TheSigner();
  std::vector<size_t> by;
  std::string why;
  const std::string out = signer.Sign(message, 1796000000, &by, &why);
  const std::string domain = dkim::FromDomain(message);
  FUZZ_CHECK(out.empty() == domain.empty());  // the default entry signs whatever has a domain
  FUZZ_CHECK(out.empty() == by.empty());
  FUZZ_CHECK(!out.empty() || !why.empty());
  if (out.empty())
    return;
  FUZZ_CHECK(out.starts_with("DKIM-Signature:"));
  FUZZ_CHECK(out.ends_with("\r\n"));
  size_t fields = 0;
  for (size_t pos = 0; pos < out.size();) {
    const size_t end = out.find("\r\n", pos);
    FUZZ_CHECK(end != std::string::npos);
    const std::string_view line(out.data() + pos, end - pos);
    FUZZ_CHECK(line.size() <= 78);
    FUZZ_CHECK(line.find('\r') == std::string_view::npos);
    FUZZ_CHECK(line.find('\n') == std::string_view::npos);
    if (line.starts_with("DKIM-Signature:"))
      ++fields;
    else
      FUZZ_CHECK(line.starts_with(" "));
    pos = end + 2;
  }
  FUZZ_CHECK(fields == by.size());
  for (size_t i : by)
    FUZZ_CHECK(i < signer.entries().size());
  FUZZ_CHECK(out.find("bh=" + dkim::RelaxedBodyHash(dkim::Split(message).body) + ";") !=
             std::string::npos);
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace spate;
  using namespace spate::fuzz;
  const std::string_view message = AsView(data, size);
  CheckDomain(dkim::FromDomain(message));
  const dkim::SplitMessage split = dkim::Split(message);
  for (const dkim::HeaderField& f : split.fields)
    CheckRelaxedHeader(f);
  CheckRelaxedBody(split.body);
  CheckSigned(message);
  return 0;
}
