// core/smtp/internal/trace_headers.h
//
// The header fields the server session adds to a message (ServerSession::Options::add_received,
// add_missing_headers): a Received: line first (RFC 5321 §4.4), and Date: (required) and
// Message-ID: ("SHOULD", RFC 5322 §3.6, §3.6.1, §3.6.4) at the end of the header section when
// the client left them out.
//
// TraceFields writes them while the message text is being stored, so that no stored octet is
// ever moved to make room: the Received: line goes in before the first octet of text, and the
// header section is followed line by line so that the missing fields go in where it ends, before
// the line that ends it is stored. Only the start of a line is held back, until it shows whether
// it is a header field. Times are written in UTC.
// Private to ServerSession (core/smtp/server_session.h).
// Threading: a TraceFields belongs to its session, on the session's shard.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace spate::smtp::internal {

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

// What the Message-ID: says besides the time: <time.[nonce.]number@hostname>.
struct MessageIdInfo {
  std::string_view hostname;
  std::string_view nonce;  // only its letters, digits, '-' and '_' are used; may be empty
  uint64_t number = 0;     // the message's number in its session, from 1
};

// The added fields of one message at a time. The text given to Append() is the message as
// stored: dot-unstuffed, and, for a message that is accepted, with CRLF line ends only (a bare
// CR or LF is refused or made CRLF before it gets here). What a refused message gets does not
// matter: its body is dropped.
//
// The Received: line:
//   Received: from <helo> ([<address>])
//   	by <hostname> (spate) with <protocol> (<tls version> <cipher>)
//   	for <rcpt>; <date>
// The protocol is one of RFC 3848 (ESMTP, ESMTPA, ESMTPS, ESMTPSA; SMTP after HELO) or, with
// SMTPUTF8, RFC 6531 §3.7.3 (UTF8SMTP...). TCP-info is an address literal (§4.4).
//
// The header section is the leading run of header fields (field-name ":", RFC 5322 §2.2, and
// their continuation lines, §2.2.3). It ends at the empty line, where the missing fields go in
// before it; or at the first line that is no header field, where they go in before it followed
// by an empty line, so that the line stays body; or with the text, where they go last (after a
// CRLF that ends an unterminated last field).
class TraceFields {
 public:
  // Starts a message whose body, *body, is empty: writes the Received: line when `received` is
  // given, and looks for the end of the header section when `missing` is (its views must stay
  // valid until Finish()). `now` stamps the fields until Finish() says otherwise.
  void Start(std::string* body, std::chrono::system_clock::time_point now,
             const ReceivedInfo* received, const MessageIdInfo* missing);

  // Whether Append() still follows the header section. Once not, the caller may append the
  // text to the body itself.
  bool open() const { return state_ != State::kClosed; }

  // Appends message text to *body.
  void Append(std::string* body, std::string_view text);

  // The message is complete and accepted, at `now`: a header section still open ends here,
  // and the time stamps are rewritten in place if `now` is another time than Start()'s (the
  // fields then say when the data ended).
  void Finish(std::string* body, std::chrono::system_clock::time_point now);

 private:
  // Any state but kClosed: Date: or Message-ID: is still missing.
  enum class State : uint8_t {
    kClosed,     // not following (nothing to add, both fields seen, or the section has ended)
    kLineStart,  // a header section line starts
    kName,       // a line starts with field-name octets, held back in name_
    kField,      // inside a header field line or its continuation, up to its LF
  };

  void CloseSection(std::string* body, std::string_view separator);
  void WriteMissing(std::string* body);

  State state_ = State::kClosed;
  std::chrono::system_clock::time_point stamp_{};  // the time written so far
  MessageIdInfo id_;
  std::string name_;  // kName: the start of the line, not yet in the body
  bool in_field_ = false;
  bool has_date_ = false;
  bool has_message_id_ = false;
  // Where the time stamps start in the body; npos: not written.
  size_t received_date_at_ = std::string::npos;
  size_t date_at_ = std::string::npos;
  size_t id_time_at_ = std::string::npos;
};

}  // namespace spate::smtp::internal
