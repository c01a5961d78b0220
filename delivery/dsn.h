// delivery/dsn.h
//
// Delivery status notifications (RFC 3464) as a pure function: the facts of what happened to
// some recipients of one message in, the whole notification out, a multipart/report (RFC 6522)
// of three parts: a human-readable text, the message/delivery-status fields (RFC 3464 §2),
// and the original message's headers (text/rfc822-headers) or, with RET=FULL and within a size
// limit, the whole of it (message/rfc822), as RFC 3461 §4.3 asks.
//
// What a remote server said is hostile text: every value that goes into a header or a field is
// cut to printable US-ASCII (anything else becomes '?'), a reply of several lines is folded
// (RFC 5322 §2.2.3), and no line of the output is longer than 998 octets (RFC 5322 §2.1.1).
// The boundary never occurs in the original message.
//
// The notification is sent from the null sender (RFC 3461 §6.1, RFC 5321 §4.5.5) to the
// original envelope sender; the caller spools and delivers it as any other message.
// Threading: pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spate::delivery::dsn {

// RFC 3464 §2.3.3.
enum class Action : uint8_t { kFailed, kDelayed, kDelivered, kRelayed, kExpanded };
const char* ActionName(Action a);  // "failed", "delayed", ...

struct Recipient {
  std::string final_recipient;     // the address it was sent to: "user@example.com"
  std::string original_recipient;  // RFC 3461 ORCPT, decoded: "rfc822;user@example.com"; or ""
  Action action = Action::kFailed;
  std::string status;               // RFC 3463 code without its text: "5.1.1"
  std::string remote_mta;           // the host that answered ("mx1.example.com"); "" if none did
  std::string diagnostic;           // the reply as the server sent it, every line ("550 5.1.1 ...")
  int64_t last_attempt_ms = 0;      // unix ms
  bool expired = false;             // failed because [delivery] max_age ran out (Status 4.4.7 then)
  int64_t will_retry_until_ms = 0;  // a delayed recipient: when it expires (RFC 3464 §2.3.9)
};

struct Report {
  std::string reporting_mta;  // our host name
  std::string from;           // "MAILER-DAEMON@<host name>"
  std::string to;             // the original envelope sender (never empty: no DSN to <>)
  std::string envid;          // RFC 3461 ENVID, decoded; "" when none was given
  int64_t arrival_ms = 0;     // when the original was accepted
  int64_t now_ms = 0;
  uint64_t unique = 0;  // makes the Message-ID and the boundary unique
  std::vector<Recipient> recipients;
  bool return_full = false;           // RET=FULL; else the headers only (RET=HDRS, or none given)
  std::string_view original;          // the original message, CRLF line ends
  size_t max_full_size = 256 * 1024;  // a larger original goes back as its headers only
};

struct Notification {
  std::string message;     // header and body, CRLF, ready to spool
  bool eight_bit = false;  // carries 8-bit octets of the original: send with BODY=8BITMIME
};

Notification Build(const Report& report);

// RFC 3461 §4: xtext, as ENVID and ORCPT go on the wire ("+" and "=" and what is not
// printable US-ASCII as "+XX").
std::string Xtext(std::string_view s);

// The header section of a message (up to and without the empty line).
std::string_view HeaderSection(std::string_view message);

}  // namespace spate::delivery::dsn
