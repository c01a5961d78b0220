// tests/fuzz/address_fuzz.cc
//
// Fuzzes the MAIL/RCPT path parser (core/smtp/address.h): ParsePathPrefix and ParsePath with
// both kinds.
//
// Input: [flags] path bytes. Flags: 0x01 forward path (RCPT TO) instead of reverse (MAIL FROM);
// 0x02 SMTPUTF8 (RFC 6531). The rest is parsed as it is, both as a prefix and as a whole path,
// and also in the other SMTPUTF8 mode.
//
// Invariants (a violation traps):
//  - a parse consumes "<" ... ">" within the input; ParsePath succeeds exactly when
//    ParsePathPrefix does and consumes everything, with the same result;
//  - a successful parse: mailbox at most 256 octets (RFC 5321 §4.5.3.1.3), local part at most
//    64, domain at most 255 with no upper-case ASCII letter; no CR, LF or other control octet;
//    without SMTPUTF8 no octet >= 0x80, with it well-formed UTF-8 (RFC 3629 §4);
//    the mailbox is local_part "@" domain (the domain as written), or "" (null reverse-path
//    only), or a bare postmaster (forward-path only); DomainOf() finds the domain again;
//  - "<" mailbox ">" parses again to the same Path (the route dropped for good);
//  - kAddressNotAscii only without SMTPUTF8 and for an input with an octet >= 0x80; errors are
//    the parser's own;
//  - SMTPUTF8 only widens: a path accepted without it is accepted with it, the same.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"
#include "core/smtp/address.h"
#include "core/smtp/errc.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

char Lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) {
      return false;
    }
  }
  return true;
}

bool HasHighOctet(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return true;
    }
  }
  return false;
}

// No control octet (C0, DEL); octets >= 0x80 only when `utf8`, and then well-formed UTF-8:
// no overlong form, no surrogate, nothing above U+10FFFF (RFC 3629 §4).
bool IsCleanText(std::string_view s, bool utf8) {
  for (size_t i = 0; i < s.size();) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x80) {
      if (u < 32 || u == 127) {
        return false;
      }
      ++i;
      continue;
    }
    if (!utf8) {
      return false;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (u >= 0xc2 && u <= 0xdf) {
      n = 1;
      cp = u & 0x1f;
    } else if (u >= 0xe0 && u <= 0xef) {
      n = 2;
      cp = u & 0x0f;
    } else if (u >= 0xf0 && u <= 0xf4) {
      n = 3;
      cp = u & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) {  // truncated sequence
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (c & 0x3f);
    }
    const uint32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

bool SamePath(const smtp::Path& a, const smtp::Path& b) {
  return a.mailbox == b.mailbox && a.local_part == b.local_part && a.domain == b.domain;
}

void CheckError(std::string_view in, const std::error_code& ec, bool utf8) {
  FUZZ_CHECK(ec == smtp::Errc::kBadAddress || ec == smtp::Errc::kAddressTooLong ||
             ec == smtp::Errc::kAddressNotAscii);
  if (ec == smtp::Errc::kAddressNotAscii) {
    FUZZ_CHECK(!utf8 && HasHighOctet(in));
  }
}

void CheckPath(const smtp::Path& path, smtp::PathKind kind, bool utf8) {
  FUZZ_CHECK(path.mailbox.size() <= 256);
  FUZZ_CHECK(path.local_part.size() <= 64);
  FUZZ_CHECK(path.domain.size() <= 255);
  FUZZ_CHECK(IsCleanText(path.mailbox, utf8));
  FUZZ_CHECK(IsCleanText(path.local_part, utf8));
  FUZZ_CHECK(IsCleanText(path.domain, utf8));
  for (char c : path.domain) {
    FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
  }
  if (path.null()) {
    FUZZ_CHECK(kind == smtp::PathKind::kReverse);  // only MAIL FROM:<> (§4.5.5)
    FUZZ_CHECK(path.local_part.empty() && path.domain.empty());
    return;
  }
  if (path.domain.empty()) {
    // "<postmaster>" (§4.1.1.3): forward paths only.
    FUZZ_CHECK(kind == smtp::PathKind::kForward);
    FUZZ_CHECK(EqualsNoCase(path.mailbox, "postmaster"));
    FUZZ_CHECK(path.local_part == path.mailbox);
    return;
  }
  FUZZ_CHECK(!path.local_part.empty());
  FUZZ_CHECK(path.mailbox.size() == path.local_part.size() + 1 + path.domain.size());
  FUZZ_CHECK(path.mailbox.starts_with(path.local_part));
  FUZZ_CHECK(path.mailbox[path.local_part.size()] == '@');
  const std::string_view written_domain =
      std::string_view(path.mailbox).substr(path.local_part.size() + 1);
  FUZZ_CHECK(EqualsNoCase(written_domain, path.domain));
  FUZZ_CHECK(smtp::DomainOf(path.mailbox) == written_domain);
}

// Parses `in` as a prefix and as a whole path; returns the prefix parse.
Result<smtp::Path> Run(std::string_view in, smtp::PathKind kind, bool utf8) {
  size_t consumed = 0;
  Result<smtp::Path> prefix = smtp::ParsePathPrefix(in, kind, &consumed, utf8);
  Result<smtp::Path> whole = smtp::ParsePath(in, kind, utf8);
  if (!prefix) {
    CheckError(in, prefix.error(), utf8);
    FUZZ_CHECK(!whole);
    FUZZ_CHECK(whole.error() == prefix.error());
    return prefix;
  }
  FUZZ_CHECK(consumed >= 2 && consumed <= in.size());
  FUZZ_CHECK(in.front() == '<' && in[consumed - 1] == '>');
  CheckPath(*prefix, kind, utf8);
  if (consumed == in.size()) {
    FUZZ_CHECK(whole);
    FUZZ_CHECK(SamePath(*whole, *prefix));
  } else {
    FUZZ_CHECK(!whole);
    CheckError(in, whole.error(), utf8);
  }
  // What was kept is itself a valid path that means the same.
  const std::string again = "<" + prefix->mailbox + ">";
  Result<smtp::Path> reparsed = smtp::ParsePath(again, kind, utf8);
  FUZZ_CHECK(reparsed);
  FUZZ_CHECK(SamePath(*reparsed, *prefix));
  return prefix;
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const auto kind =
      (data[0] & 0x01) != 0 ? spate::smtp::PathKind::kForward : spate::smtp::PathKind::kReverse;
  const bool utf8 = (data[0] & 0x02) != 0;
  const std::string_view in = spate::fuzz::AsView(data + 1, size - 1);
  const spate::Result<spate::smtp::Path> path = spate::fuzz::Run(in, kind, utf8);
  const spate::Result<spate::smtp::Path> other = spate::fuzz::Run(in, kind, !utf8);
  const spate::Result<spate::smtp::Path>& ascii = utf8 ? other : path;
  const spate::Result<spate::smtp::Path>& wide = utf8 ? path : other;
  if (ascii) {
    // SMTPUTF8 only widens what is accepted.
    FUZZ_CHECK(wide && spate::fuzz::SamePath(*ascii, *wide));
  }
  return 0;
}
