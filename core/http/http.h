// core/http/http.h
//
// A sans-I/O HTTP/1.1 server codec for spate's small JSON APIs (the admin API, HTTP injection):
// ServerSession turns one connection's bytes into requests, Serialize() turns a response into
// bytes. No sockets, timers or threads inside; the reactor moves the bytes.
//
// Message syntax is RFC 9112, semantics RFC 9110. What is accepted, and what is refused:
//  - Request line `METHOD SP origin-form SP HTTP/1.x` (§3): the method a token, the target
//    starting with '/' (no absolute-form, authority-form or '*': this is no proxy), no space,
//    control, non-ASCII octet or '#'. A well-formed version other than 1.0 or 1.1 is 505.
//  - Lines end in CRLF or a bare LF (§2.2); a bare CR anywhere in the head is 400. Empty lines
//    before the request line are skipped (§2.2).
//  - Field names are tokens with no whitespace before the colon (§5.1); obs-fold, a line
//    starting with SP or HTAB, is 400 (§5.2); values are trimmed, and one holding NUL or another
//    control octet but HTAB is 400 (RFC 9110 §5.5).
//  - Framing (§6.3): Transfer-Encoding with Content-Length is 400 (request smuggling);
//    Transfer-Encoding alone is 501 (chunked is not implemented: JSON clients know the length);
//    Content-Length not all digits, or repeated with different values, is 400; over
//    Limits::max_body_bytes it is 413, decided before any of the body is read; POST or PUT
//    without it is 411. The body is exactly Content-Length octets.
//  - Host (§3.2): an HTTP/1.1 request needs exactly one, any request at most one: else 400.
//  - Persistence (§9.3): keep-alive by default for 1.1, only with "Connection: keep-alive" for
//    1.0; "Connection: close" ends it.
//  - Limits: the head (request line, fields, the empty line) over max_header_bytes, or more than
//    max_headers fields, is 431. The session never holds more than max_header_bytes of an
//    unfinished head nor more than the declared body; work is linear in the input.
// Any error is final: TakeError() gives the response to send, and the connection closes.
// Threading: not thread-safe; a session lives on the shard that accepted its connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spate::http {

struct Limits {
  size_t max_header_bytes = 16 << 10;
  size_t max_headers = 64;
  size_t max_body_bytes = 10 << 20;
};

struct Request {
  std::string method;  // case-sensitive (RFC 9110 §9.1): "GET", not "get"
  std::string target;  // as sent: path, and the query after '?'; not percent-decoded
  std::string path;    // target before the first '?'
  std::string query;   // target after the first '?' ("" if none)
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values trimmed
  std::string body;                                          // exactly Content-Length octets
  bool keep_alive = true;  // false: answer this request, then close
  // The client's address, as the connection saw it ("192.0.2.1", "IPv6:2001:db8::1", the form of
  // an SMTP address literal, RFC 5321 §4.1.3); empty when unknown. Not the parser's: the
  // connection that reads the request fills it in.
  std::string peer_address;

  // The value of the first field of that name (compared case-insensitively), "" if absent.
  std::string_view header(std::string_view name) const;
};

struct Response {
  int status = 200;                               // 100..599; any other is sent as 500
  std::string content_type = "application/json";  // "" to send none
  std::string body;
  // Extra fields. Serialize() drops any whose name is not a token or whose value holds CR, LF or
  // NUL, and those it writes itself (Content-Length, Transfer-Encoding, Content-Type, and
  // Connection when closing): a response is never split and its framing is always its own.
  std::vector<std::pair<std::string, std::string>> headers;
};

// The reason phrase of a status ("Not Found"), "" for one this codec does not know.
std::string_view ReasonPhrase(int status);

// One connection's requests, in order. Pipelined requests are parsed one after another; the
// caller answers each in order, then the error if there is one:
//   session.OnBytes(bytes);
//   while (auto req = session.TakeRequest()) { ... send Serialize(resp, !req->keep_alive) ... }
//   if (auto err = session.TakeError()) { send Serialize(*err, true); close; }
//   else if (session.closed()) close once the answers are sent;
class ServerSession {
 public:
  explicit ServerSession(Limits limits = {});

  // Feeds the next bytes of the connection (any split of the input gives the same requests).
  // Bytes after an error or after a request that ends the connection are ignored.
  void OnBytes(std::string_view data);

  // The next complete request, in order, if any.
  std::optional<Request> TakeRequest();

  // Once the requests before it are taken: the error response to send (once), after which the
  // connection closes. nullopt while fine.
  std::optional<Response> TakeError();

  // No further request will come: after an error, or once a request with keep_alive false was
  // parsed (it, and those before it, are still to be taken and answered).
  bool closed() const { return state_ == State::kError || state_ == State::kDone; }

  // The request whose head is read and whose body is still coming (its body not yet there), if
  // any: what it asks can be refused before the body is waited for.
  const Request* head_in_progress() const { return state_ == State::kBody ? &current_ : nullptr; }

 private:
  enum class State : uint8_t { kHead, kBody, kDone, kError };

  void OnHeadLine(std::string_view line);
  void OnRequestLine(std::string_view line);
  void OnFieldLine(std::string_view line);
  void OnHeadEnd();
  void Finish();
  void Fail(int status, std::string_view why);

  Limits limits_;
  State state_ = State::kHead;
  std::string line_;       // the unfinished line of the head
  size_t head_bytes_ = 0;  // octets of the current head so far, line_ included
  bool have_request_line_ = false;
  int minor_version_ = 1;
  size_t body_left_ = 0;
  Request current_;
  std::deque<Request> ready_;
  std::optional<Response> error_;
};

// The bytes of a response: status line (HTTP/1.1), Content-Type (unless empty or holding CR, LF
// or NUL), Content-Length, "Connection: close" when `close`, the extra fields, the body. A 1xx,
// 204 or 304 response carries neither body nor Content-Length (RFC 9110 §8.6, §15.3.5).
std::string Serialize(const Response& r, bool close);

}  // namespace spate::http
