// core/smtp/internal/trace_headers.h
//
// The header fields the server session adds to a message (ServerSession::Options::add_received,
// add_missing_headers): a Received: line first (RFC 5321 §4.4), and Date: and Message-ID:
// (RFC 5322 §3.6.1, §3.6.4) at the end of the header section when the client left them out.
// Times are written in UTC. Private to ServerSession (core/smtp/server_session.h).
// Threading: pure functions, any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace spate::smtp::internal {

// RFC 5322 §3.3 date-time, in UTC: "Tue, 02 Jan 2024 03:04:05 +0000".
std::string FormatDate(std::chrono::system_clock::time_point t);

// "20240102030405", for Message-IDs.
std::string CompactTime(std::chrono::system_clock::time_point t);

// What the client wrote, safe inside a header: printable US-ASCII, anything else becomes '?'.
std::string HeaderSafe(std::string_view s);

// What the Received: line says besides the time (RFC 5321 §4.4 Time-stamp-line).
struct ReceivedInfo {
  std::string_view helo;            // the EHLO/HELO argument, as sent (made header-safe here)
  std::string_view client_address;  // "192.0.2.1", "IPv6:2001:db8::1"; empty: left out
  std::string_view hostname;        // ours
  bool ehlo = false;                // else HELO: plain "SMTP"
  bool smtputf8 = false;            // MAIL ... SMTPUTF8
  bool tls = false;
  bool authenticated = false;
  std::string_view tls_version;  // "TLSv1.3"; both empty: no TLS comment
  std::string_view tls_cipher;
  // The transaction's recipient when it has exactly one, else empty: a Bcc list is not
  // disclosed.
  std::string_view recipient;
};

// The Received: line, CRLF included:
//   Received: from <helo> ([<address>])
//   	by <hostname> (spate) with <protocol> (<tls version> <cipher>)
//   	for <rcpt>; <date>
// The protocol is one of RFC 3848 (ESMTP, ESMTPA, ESMTPS, ESMTPSA; SMTP after HELO) or, with
// SMTPUTF8, RFC 6531 §3.7.3 (UTF8SMTP...). TCP-info is an address literal (§4.4).
std::string ReceivedHeader(const ReceivedInfo& info, std::chrono::system_clock::time_point now);

// What the Message-ID: says besides the time: <time.[nonce.]number@hostname>.
struct MessageIdInfo {
  std::string_view hostname;
  std::string_view nonce;  // only its letters, digits, '-' and '_' are used; may be empty
  uint64_t number = 0;     // the message's number in its session, from 1
};

// Adds the Date: and Message-ID: fields that `body` lacks at the end of its header section. The
// header section is the leading run of header fields (and their continuation lines); it ends at
// the empty line, or at the first line that is no header field, in which case an empty line is
// added after the new fields so the rest stays body.
void AddMissingFields(std::string* body, std::chrono::system_clock::time_point now,
                      const MessageIdInfo& id);

}  // namespace spate::smtp::internal
