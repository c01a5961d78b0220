// core/inject/inject.h
//
// HTTP injection, sans-I/O: the JSON body of a KumoMTA-shaped /api/inject/v1 request in, the
// messages to queue out (one per recipient, each rendered with its own substitutions), or the
// first thing wrong with the request, as the status and the JSON path to answer with.
//
// The request (README.md has an example): "envelope_sender" (an address), "recipients" (a
// non-empty array of {"email", "name"?, "substitutions"?}), "substitutions"? (an object) and
// "content": a whole RFC 5322 message as a string, or a builder object {"from", "reply_to"?,
// "subject"?, "text_body"?, "html_body"?, "headers"?}. Unknown keys are refused, except
// KumoMTA's "deferred_spool", "deferred_generation" and "trace_headers" (ignored).
//
// Templates are Mustache (kainjow). A recipient's templates see the top-level substitutions,
// overlaid by "email" and "name" (when given) of the recipient, overlaid by its own
// substitutions. html_body is rendered with HTML escaping, everything else without. Numbers and
// true render as text; false and null are Mustache's false (they hide a section). Partials
// ({{> name}}) are refused: a substitution must never become a template.
//
// What comes out: the envelope recipient as given, and the message with CRLF lines, not
// dot-stuffed, ending in CRLF, no line over 998 octets (RFC 5322 §2.1.1). A whole message gets
// Date: and Message-ID: in front when its header section lacks them. The builder writes From,
// Reply-To, To, Subject, Date, Message-ID, MIME-Version, the custom headers in their JSON order,
// then a text/plain, text/html or multipart/alternative body in quoted-printable (RFC 2045
// §6.7); non-ASCII header text becomes RFC 2047 encoded-words.
//
// Hostile input (the body is the client's): never a crash or an exception (each one inside is
// caught and becomes an error), and work and memory bounded by the body's size times small
// constants (JSON nesting <= 64, substitution nesting <= 16, section nesting <= 32, 32 MiB of
// work per rendering: a bigger one is 413 "recipients[i]").
// Threading: pure functions, any thread; no I/O, no clock (the caller passes the time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spate::inject {

struct Limits {
  size_t max_recipients = 10000;     // more: 413 "recipients"; 0: no limit
  size_t max_message_bytes = 0;      // a bigger message: 413 "recipients[i]"; 0: no limit
  size_t max_total_bytes = 1 << 30;  // all the messages together: 413 "recipients"; 0: none
};

// What the caller knows and the library may not look up. Both strings must be dot-atom text
// (RFC 5322 §3.2.3): they go into Message-ID: <message_id_base.i@hostname> unchecked.
struct Context {
  std::string hostname;
  int64_t now_ms = 0;           // Unix time, for Date: (RFC 5322 §3.3)
  std::string message_id_base;  // unique per request
};

struct Message {
  std::string recipient;   // the envelope recipient (RCPT TO), as given
  std::string data;        // the message: CRLF lines, not dot-stuffed, ends in CRLF
  bool body_8bit = false;  // an octet >= 0x80 somewhere in data (BODY=8BITMIME)
  bool smtputf8 = false;   // a non-ASCII address: the envelope's, or one the builder wrote
};

struct Request {
  std::string envelope_sender;    // MAIL FROM
  std::vector<Message> messages;  // in the order of "recipients"
};

struct Error {
  int status = 400;   // 400, 413 (a limit), 500 (out of memory)
  std::string field;  // a JSON path: "body", "recipients[3].email", "content.headers.X-Foo"
  std::string text;   // for a person
};

// Never throws. True with *out filled (replaced), or false with *error filled (*out untouched).
bool Build(std::string_view json, const Limits& limits, const Context& context, Request* out,
           Error* error);

}  // namespace spate::inject
