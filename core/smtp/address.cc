// core/smtp/address.cc
//
// A hand-written recursive-descent parser over the ABNF of RFC 5321 §4.1.2 and §4.1.3. Each
// helper takes the input and a position, and returns the position after what it matched, or
// kNoMatch.
#include "core/smtp/address.h"

#include "core/smtp/ascii.h"
#include "core/smtp/errc.h"

namespace spate::smtp {
namespace {

constexpr size_t kNoMatch = std::string_view::npos;
constexpr size_t kMaxLocalPart = 64;  // RFC 5321 §4.5.3.1.1
constexpr size_t kMaxDomain = 255;    // RFC 5321 §4.5.3.1.2
constexpr size_t kMaxPath = 256;      // RFC 5321 §4.5.3.1.3, with "<" and ">"
constexpr size_t kMaxLabel = 63;      // RFC 1035 §2.3.4: a longer label cannot be resolved

bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}
bool IsLetDig(char c) {
  return IsAlpha(c) || IsDigit(c);
}
bool IsHex(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
// atext of RFC 5322 §3.2.3, which RFC 5321's Atom refers to.
bool IsAtext(char c) {
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return IsLetDig(c) || kSpecials.find(c) != std::string_view::npos;
}

// The length of the well-formed UTF-8 sequence of a non-ASCII character at s[pos], or 0
// (RFC 3629 §4: UTF8-2 / UTF8-3 / UTF8-4; no overlong forms, no surrogates, nothing past U+10FFFF).
size_t Utf8Length(std::string_view s, size_t pos) {
  auto at = [&](size_t i) -> unsigned {
    return pos + i < s.size() ? static_cast<unsigned char>(s[pos + i]) : 0u;
  };
  auto tail = [&](size_t i) { return at(i) >= 0x80 && at(i) <= 0xBF; };
  const unsigned c = at(0);
  if (c >= 0xC2 && c <= 0xDF) {
    return tail(1) ? 2 : 0;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80;
    const unsigned hi = c == 0xED ? 0x9F : 0xBF;
    return at(1) >= lo && at(1) <= hi && tail(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80;
    const unsigned hi = c == 0xF4 ? 0x8F : 0xBF;
    return at(1) >= lo && at(1) <= hi && tail(2) && tail(3) ? 4 : 0;
  }
  return 0;
}

// Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str] (§4.1.2). With `utf8`,
// sub-domain =/ U-label (RFC 6531 §3.3): here any well-formed non-ASCII character counts as a
// Let-dig (IDNA2008 validity is the resolver's business, not the SMTP syntax's).
size_t MatchDomain(std::string_view s, size_t pos, bool utf8) {
  // The octets of one Let-dig at s[i], or 0.
  auto let_dig = [&](size_t i) -> size_t {
    if (i >= s.size()) {
      return 0;
    }
    if (IsLetDig(s[i])) {
      return 1;
    }
    return utf8 ? Utf8Length(s, i) : 0;
  };
  while (true) {
    const size_t start = pos;
    if (let_dig(pos) == 0) {
      return kNoMatch;
    }
    while (pos < s.size()) {
      const size_t n = s[pos] == '-' ? 1 : let_dig(pos);
      if (n == 0) {
        break;
      }
      pos += n;
    }
    if (s[pos - 1] == '-' || pos - start > kMaxLabel) {  // Ldh-str ends in Let-dig
      return kNoMatch;
    }
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      continue;
    }
    return pos;
  }
}

// Snum = 1*3DIGIT, representing a decimal integer value in the range 0 through 255 (§4.1.3).
size_t MatchSnum(std::string_view s, size_t pos) {
  int value = 0;
  size_t n = 0;
  while (pos + n < s.size() && n < 3 && IsDigit(s[pos + n])) {
    value = value * 10 + (s[pos + n] - '0');
    ++n;
  }
  if (n == 0 || value > 255 || (pos + n < s.size() && IsDigit(s[pos + n]))) {
    return kNoMatch;
  }
  return pos + n;
}

// IPv4-address-literal = Snum 3("." Snum).
size_t MatchIpv4(std::string_view s, size_t pos) {
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (pos >= s.size() || s[pos] != '.') {
        return kNoMatch;
      }
      ++pos;
    }
    pos = MatchSnum(s, pos);
    if (pos == kNoMatch) {
      return kNoMatch;
    }
  }
  return pos;
}

// IPv6-addr of §4.1.3, all of `s`: eight IPv6-hex groups, or six followed by an IPv4 address;
// "::" stands for at least two groups (IPv6-comp allows at most 6 written groups, IPv6v4-comp at
// most 4 before the IPv4 part).
bool IsIpv6(std::string_view s) {
  const size_t gap = s.find("::");
  const std::string_view sides[2] = {s.substr(0, gap),
                                     gap == kNoMatch ? std::string_view() : s.substr(gap + 2)};
  int groups = 0;
  for (int side = 0; side < (gap == kNoMatch ? 1 : 2); ++side) {
    std::string_view part = sides[side];
    if (part.empty()) {
      if (gap == kNoMatch) {
        return false;  // no "::" and nothing written
      }
      continue;
    }
    const bool last_side = gap == kNoMatch || side == 1;
    while (true) {
      const size_t colon = part.find(':');
      const std::string_view piece = part.substr(0, colon);
      if (colon == kNoMatch && last_side && piece.find('.') != kNoMatch) {
        if (MatchIpv4(piece, 0) != piece.size()) {
          return false;
        }
        groups += 2;
        break;
      }
      if (piece.empty() || piece.size() > 4) {
        return false;
      }
      for (char c : piece) {
        if (!IsHex(c)) {
          return false;
        }
      }
      ++groups;
      if (colon == kNoMatch) {
        break;
      }
      part.remove_prefix(colon + 1);
    }
  }
  return gap == kNoMatch ? groups == 8 : groups <= 6;
}

// address-literal = "[" ( IPv4-address-literal / IPv6-address-literal ) "]" (§4.1.3). A
// General-address-literal needs a tag registered with IANA; none is, so none is accepted.
size_t MatchAddressLiteral(std::string_view s, size_t pos) {
  if (pos >= s.size() || s[pos] != '[') {
    return kNoMatch;
  }
  const size_t close = s.find(']', pos);
  if (close == kNoMatch) {
    return kNoMatch;
  }
  const std::string_view inner = s.substr(pos + 1, close - pos - 1);
  constexpr std::string_view kTag = "IPv6:";
  if (inner.size() > kTag.size() && EqualsNoCase(inner.substr(0, kTag.size()), kTag)) {
    return IsIpv6(inner.substr(kTag.size())) ? close + 1 : kNoMatch;
  }
  return MatchIpv4(inner, 0) == inner.size() ? close + 1 : kNoMatch;
}

// Local-part = Dot-string / Quoted-string (§4.1.2). With `utf8`, atext and qtextSMTP also take
// UTF8-non-ascii (RFC 6531 §3.3); a quoted-pairSMTP stays ASCII.
size_t MatchLocalPart(std::string_view s, size_t pos, bool utf8) {
  if (pos < s.size() && s[pos] == '"') {
    // Quoted-string = DQUOTE *QcontentSMTP DQUOTE; qtextSMTP is %d32-33 / %d35-91 / %d93-126 and
    // quoted-pairSMTP is "\" %d32-126.
    ++pos;
    while (pos < s.size()) {
      const char c = s[pos];
      if (c == '"') {
        return pos + 1;
      }
      if (c == '\\') {
        if (pos + 1 >= s.size() || s[pos + 1] < 32 || s[pos + 1] > 126) {
          return kNoMatch;
        }
        pos += 2;
        continue;
      }
      if (c < 32 || c > 126) {
        const size_t n = utf8 ? Utf8Length(s, pos) : 0;
        if (n == 0) {
          return kNoMatch;
        }
        pos += n;
        continue;
      }
      ++pos;
    }
    return kNoMatch;
  }
  // Dot-string = Atom *("." Atom).
  while (true) {
    const size_t start = pos;
    while (pos < s.size()) {
      if (IsAtext(s[pos])) {
        ++pos;
        continue;
      }
      const size_t n = utf8 ? Utf8Length(s, pos) : 0;
      if (n == 0) {
        break;
      }
      pos += n;
    }
    if (pos == start) {
      return kNoMatch;
    }
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      continue;
    }
    return pos;
  }
}

// Whether an octet >= 0x80 occurs in the path at the start of `in`: up to the first '>' or SP that
// is not inside a quoted string. Without SMTPUTF8 such a path is refused as a whole.
bool HasEightBitOctet(std::string_view in) {
  bool quoted = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      return true;
    }
    if (quoted && c == '\\') {
      ++i;  // a quoted pair: its second octet is never a quote or an end
      if (i < in.size() && static_cast<unsigned char>(in[i]) >= 0x80) {
        return true;
      }
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && (c == '>' || c == ' ')) {
      return false;
    }
  }
  return false;
}

Unexpected Fail(Errc e) {
  return Unexpected{make_error_code(e)};
}

}  // namespace

Result<Path> ParsePathPrefix(std::string_view in, PathKind kind, size_t* consumed, bool smtputf8) {
  if (in.empty() || in[0] != '<') {
    return Fail(Errc::kBadAddress);
  }
  if (!smtputf8 && HasEightBitOctet(in)) {
    return Fail(Errc::kAddressNotAscii);
  }
  size_t pos = 1;
  if (kind == PathKind::kReverse && in.substr(pos, 1) == ">") {  // "<>", §4.5.5
    *consumed = 2;
    return Path{};
  }
  // A-d-l = At-domain *( "," At-domain ), followed by ":"; parsed, then ignored (Appendix C).
  if (pos < in.size() && in[pos] == '@') {
    while (true) {
      const size_t end = MatchDomain(in, pos + 1, smtputf8);
      if (end == kNoMatch || end >= in.size()) {
        return Fail(Errc::kBadAddress);
      }
      pos = end + 1;
      if (in[end] == ':') {
        break;
      }
      if (in[end] != ',' || pos >= in.size() || in[pos] != '@') {
        return Fail(Errc::kBadAddress);
      }
    }
  }
  const size_t mailbox_start = pos;
  const size_t local_end = MatchLocalPart(in, pos, smtputf8);
  if (local_end == kNoMatch) {
    return Fail(Errc::kBadAddress);
  }
  Path path;
  if (kind == PathKind::kForward && local_end < in.size() && in[local_end] == '>' &&
      EqualsNoCase(in.substr(pos, local_end - pos), "postmaster")) {
    // "<Postmaster>" with no domain, §4.1.1.3: every server must accept it.
    path.mailbox = std::string(in.substr(pos, local_end - pos));
    path.local_part = path.mailbox;
    *consumed = local_end + 1;
    return path;
  }
  if (local_end >= in.size() || in[local_end] != '@') {
    return Fail(Errc::kBadAddress);
  }
  const size_t domain_start = local_end + 1;
  size_t domain_end = domain_start < in.size() && in[domain_start] == '['
                          ? MatchAddressLiteral(in, domain_start)
                          : MatchDomain(in, domain_start, smtputf8);
  if (domain_end == kNoMatch || domain_end >= in.size() || in[domain_end] != '>') {
    return Fail(Errc::kBadAddress);
  }
  if (local_end - mailbox_start > kMaxLocalPart || domain_end - domain_start > kMaxDomain ||
      domain_end + 1 > kMaxPath) {
    return Fail(Errc::kAddressTooLong);
  }
  path.mailbox = std::string(in.substr(mailbox_start, domain_end - mailbox_start));
  path.local_part = std::string(in.substr(mailbox_start, local_end - mailbox_start));
  path.domain.reserve(domain_end - domain_start);
  for (size_t i = domain_start; i < domain_end; ++i) {
    path.domain += AsciiLower(in[i]);
  }
  *consumed = domain_end + 1;
  return path;
}

Result<Path> ParsePath(std::string_view in, PathKind kind, bool smtputf8) {
  size_t consumed = 0;
  Result<Path> path = ParsePathPrefix(in, kind, &consumed, smtputf8);
  if (path && consumed != in.size()) {
    return Fail(Errc::kBadAddress);
  }
  return path;
}

bool HasNonAscii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return true;
    }
  }
  return false;
}

std::string_view DomainOf(std::string_view mailbox) {
  const size_t at = mailbox.rfind('@');
  return at == std::string_view::npos ? std::string_view() : mailbox.substr(at + 1);
}

}  // namespace spate::smtp
