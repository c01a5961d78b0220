// core/dkim/canon.h
//
// The message as DKIM reads it: its header section split into fields, and the "relaxed"
// canonicalizations of a header field (RFC 6376 §3.4.2) and of the body (§3.4.4), which are
// what the signatures cover (§3.7). The message is the text the spool keeps: CRLF line ends,
// not dot-stuffed; the header section ends at the first empty line, and a message without one
// is all header and has an empty body.
// The message is the client's, so hostile input is the normal case: every function here is
// linear in its input, allocates at most a copy of it, and never fails or throws on it.
// Threading: pure functions, any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace spate::dkim {

// One header field (RFC 5322 §2.2), as views into the message. `name` is what precedes the
// colon (WSP before the colon included: obs-syntax, RFC 5322 §4.5); `value` is what follows
// it up to the CRLF that ends the field, its folds (CRLF WSP, §2.2.3) included. A line that
// is neither a field nor a continuation (no colon) is kept with `malformed` set, so that its
// continuation lines stay its own; no name ever matches it.
struct HeaderField {
  std::string_view name;
  std::string_view value;
  bool malformed = false;
};

// Reads the header fields one by one, top first, collecting nothing: a message of a million
// tiny fields costs no memory. Continuation lines (starting with SP or HTAB) belong to the
// field above them; one before any field is skipped (no field can own it).
class FieldReader {
 public:
  explicit FieldReader(std::string_view message) : message_(message) {}
  // The next field, or false at the end of the header section.
  bool Next(HeaderField* field);
  // What follows the empty line, once Next() has returned false; empty when there is none.
  std::string_view body() const { return body_; }

 private:
  std::string_view message_;
  size_t pos_ = 0;
  std::string_view body_;
};

struct SplitMessage {
  std::vector<HeaderField> fields;  // in order, top first
  std::string_view body;            // after the empty line; empty when there is none
};

// Every field (FieldReader's), and the body.
SplitMessage Split(std::string_view message);

// Whether `field` is named `name` (ASCII case-insensitive, WSP before the colon ignored).
bool NameIs(const HeaderField& field, std::string_view name);

// §3.4.2: "name:value" without the CRLF. The name in lower case, WSP before the colon dropped;
// the value unfolded (every CRLF removed), each run of WSP (SP, HTAB) made one SP, WSP at its
// start and end dropped. "Subject \t:  A \r\n\tB  " -> "subject:A B".
std::string RelaxedHeader(std::string_view name, std::string_view value);
// The same, appended to *out.
void AppendRelaxedHeader(std::string_view name, std::string_view value, std::string* out);

// §3.4.4: each line's trailing WSP dropped and its other runs of WSP made one SP; the empty
// lines at the end dropped; a last line without CRLF given one. An empty body (or one of empty
// lines only) canonicalizes to nothing at all, not to a CRLF (that is "simple", §3.4.3).
// A line ends at CRLF only: a bare CR or LF is an ordinary octet of its line.
std::string RelaxedBody(std::string_view body);
// base64 (RFC 4648 §4, padded) of the SHA-256 of RelaxedBody(body): the bh= value (§3.7).
// Streams: no copy of the body is made.
std::string RelaxedBodyHash(std::string_view body);

// base64, padded, no line breaks.
std::string Base64(const unsigned char* data, size_t size);

}  // namespace spate::dkim
