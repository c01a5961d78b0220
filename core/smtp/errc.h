// core/smtp/errc.h
//
// Errors of the SMTP codec: a peer that broke the protocol so badly that the connection must be
// dropped, and input the address parser refuses (the server session answers those with a reply).
// Ordinary 4xx/5xx replies are values (reply.h), never these.
#pragma once

#include <system_error>

namespace spate::smtp {

enum class Errc {
  kMalformedReply = 1,  // a reply line that is not "ddd[ -]text"
  kReplyTooLong,        // a reply line or a multi-line reply over the parser's limits
  kUnexpectedReply,     // a reply when no command was outstanding
  kBadAddress,          // a MAIL/RCPT path that does not match RFC 5321 §4.1.2
  kAddressTooLong,      // a path over the limits of RFC 5321 §4.5.3.1.1-3
  kAddressNotAscii,     // octets >= 0x80 in a path without SMTPUTF8 (RFC 6531 §3.5)
};

const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), ErrorCategory()};
}

}  // namespace spate::smtp

template <>
struct std::is_error_code_enum<spate::smtp::Errc> : std::true_type {};
