// core/smtp/address.h
//
// Parser for the reverse-path and forward-path arguments of MAIL and RCPT (RFC 5321 §4.1.2):
//   Path = "<" [ A-d-l ":" ] Mailbox ">"      Mailbox = Local-part "@" ( Domain / address-literal )
// A source route ("<@a,@b:user@c>") is accepted and dropped (§4.1.1.3, Appendix C). The local
// part is a Dot-string or a Quoted-string; the domain is a name of letter-digit-hyphen labels or an
// address literal ([192.0.2.1], [IPv6:2001:db8::1], §4.1.3). Limits of §4.5.3.1.1-3: local part
// 64 octets, domain 255, the whole path 256.
// Octets >= 0x80 are refused with Errc::kAddressNotAscii unless the transaction uses SMTPUTF8
// (RFC 6531), so the caller can answer with the RFC 6531 §3.5 codes (550/553 5.6.7) instead of 501.
// With SMTPUTF8 the local part and the domain may hold well-formed UTF-8 (RFC 6531 §3.3: atext,
// qtextSMTP and sub-domain extended by UTF8-non-ascii; RFC 3629 §4, no overlong forms, no
// surrogates); malformed UTF-8 is kBadAddress. Address literals stay ASCII.
// Threading: pure functions, any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace spate::smtp {

struct Path {
  std::string mailbox;     // "local@domain" as sent, route dropped; "" for "<>"; "postmaster" bare
  std::string local_part;  // as sent: a Quoted-string keeps its quotes and backslashes
  std::string domain;      // lowercased (ASCII letters); "" for "<>" and a bare "<postmaster>"
  bool null() const { return mailbox.empty(); }
};

enum class PathKind : uint8_t {
  kReverse,  // MAIL FROM: the null reverse-path "<>" is allowed (§4.5.5)
  kForward,  // RCPT TO: "<postmaster>" without a domain is allowed (§4.1.1.3, §4.5.1)
};

// Parses a Path at the start of `in` and stores in *consumed how many bytes it used (through the
// closing '>'); what follows is left to the caller (ESMTP parameters). `smtputf8`: the path may
// hold UTF-8 (MAIL ... SMTPUTF8). Errors: Errc::kBadAddress, kAddressTooLong, kAddressNotAscii.
Result<Path> ParsePathPrefix(std::string_view in, PathKind kind, size_t* consumed,
                             bool smtputf8 = false);

// Like ParsePathPrefix, but all of `in` must be the Path.
Result<Path> ParsePath(std::string_view in, PathKind kind, bool smtputf8 = false);

// Whether `s` holds an octet >= 0x80.
bool HasNonAscii(std::string_view s);

// What follows the last '@' of a mailbox ("" when there is none), as written.
std::string_view DomainOf(std::string_view mailbox);

}  // namespace spate::smtp
