// core/smtp/internal/esmtp_params.h
//
// The ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 Mail-parameters, Rcpt-parameters):
// the generic esmtp-param syntax, and what the server session makes of each keyword it offers.
// MAIL: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET and ENVID (RFC 3461), AUTH
// (RFC 4954 §5), MT-PRIORITY (RFC 6710). RCPT: NOTIFY and ORCPT (RFC 3461). A bad or unknown
// parameter is an outcome, not an error: the parsers return the reply that refuses the command.
// Private to ServerSession (core/smtp/server_session.h), which also uses ParseSize for BDAT's
// chunk size.
// Threading: pure functions, any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/smtp/server_session.h"

namespace spate::smtp::internal {

struct Param {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;
};

// Splits what follows a path: *(SP esmtp-param) with
//   esmtp-param = esmtp-keyword ["=" esmtp-value]
//   esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//   esmtp-value = 1*(%d33-60 / %d62-126)            (RFC 5321 §4.1.2)
// Runs of SP between parameters are tolerated. Returns false on a syntax error. The views point
// into `rest`.
bool ParseParams(std::string_view rest, std::vector<Param>* params);

// RFC 1870 §3: size-value ::= 1*20DIGIT. Saturates instead of overflowing.
bool ParseSize(std::string_view s, uint64_t* size);

// RFC 3461 §4: xtext = *( xchar / hexchar ); xchar is "!".."~" but "+" and "="; hexchar is "+"
// and two upper-case hex digits. The decoded text must be printable US-ASCII (graphic and SP),
// as §4.2 and §4.4 require of ORCPT and ENVID.
bool DecodeXtext(std::string_view in, std::string* out);

// What MAIL's parameters say of the transaction.
struct MailParams {
  bool has_size = false;
  uint64_t size = 0;       // SIZE: the client's estimate of the message (RFC 1870 §3)
  bool body_8bit = false;  // BODY=8BITMIME
  bool smtputf8 = false;
  ReceivedMessage::Ret ret = ReceivedMessage::Ret::kUnset;
  std::string envid;  // xtext decoded
  // MT-PRIORITY as given, -9 to 9 (RFC 6710 §3); whether it is honoured is the session's call.
  bool has_priority = false;
  int8_t priority = 0;
};

// Parses what follows MAIL's reverse-path into *params. `auth`: the session offers AUTH, so the
// AUTH= parameter is known (checked, then dropped: no client is trusted with it). Returns "" when
// every parameter is good, else the 501 or 555 reply (without CRLF) that refuses the command.
std::string_view ParseMailParams(std::string_view rest, bool auth, MailParams* params);

// Parses what follows RCPT's forward-path into *dsn (NOTIFY, ORCPT). Returns "" or the refusal,
// as ParseMailParams.
std::string_view ParseRcptParams(std::string_view rest, DsnRecipient* dsn);

}  // namespace spate::smtp::internal
