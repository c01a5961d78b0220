// core/http/client.h
//
// The client half of a sans-I/O HTTP/1.1 codec, for the few GETs spate makes itself (the
// MTA-STS policy fetch, delivery/mta_sts.h): FormatGet() writes a request, ResponseParser reads
// one response from the connection's bytes. No sockets, TLS, timers or threads inside; the
// caller moves the bytes (through core/tls), enforces the deadline, and closes the connection.
//
// One response per connection: the request says "Connection: close". What is accepted, and what
// fails (failed(), with error() saying why, for the logs):
//  - Status line `HTTP/1.x SP 3DIGIT [SP reason-phrase]` (RFC 9112 §4), code 100..599; the
//    reason is not read. Another major version fails.
//  - Lines end in CRLF or a bare LF (§2.2); a bare CR in the head fails.
//  - Field lines (§5): a token name with no whitespace before the colon (§5.1), lower-cased;
//    the value trimmed of SP and HTAB and holding no control octet but HTAB (RFC 9110 §5.5).
//    obs-fold, a line starting with SP or HTAB, fails (§5.2).
//  - Interim 1xx responses (RFC 9110 §15.2) are skipped, 101 fails: a GET never upgrades.
//  - Framing (§6.3): 204 and 304 have no body. Transfer-Encoding must be exactly "chunked"
//    (§7.1: sizes in hex, chunk extensions ignored, trailer fields skipped); with
//    Content-Length as well it fails (smuggling, §6.3 item 3). Content-Length is digits,
//    repeated or listed only with one value (§6.3 item 5). With neither, the body runs to EOF
//    (§6.3 item 8).
//  - Limits: the heads (status lines and fields of every response, interim ones included) over
//    kMaxHeadBytes, or more than kMaxFields fields in one head, fail; so does a body over
//    max_body ("body too large"), decided from Content-Length before any of it is read. The
//    parser never holds more than those bounds; work is linear in the input.
//  - EOF before the end of a Content-Length or chunked body, or of the head, fails.
// Any split of the input gives the same result; bytes after done() or failed() are ignored.
// Threading: not thread-safe; owned by the shard (or thread) doing the fetch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spate::http {

// "GET <path> HTTP/1.1" with Host, User-Agent, "Accept: text/plain" and "Connection: close"
// (RFC 9112 §3, §9.6). Control octets in the arguments are dropped: no request splitting.
std::string FormatGet(std::string_view host, std::string_view path, std::string_view user_agent);

class ResponseParser {
 public:
  static constexpr size_t kMaxHeadBytes = 16 << 10;
  static constexpr size_t kMaxFields = 100;

  explicit ResponseParser(size_t max_body);

  // The next bytes from the server.
  void OnBytes(std::string_view data);
  // The server closed the connection (after a TLS close_notify, or a plain TCP FIN).
  void OnEof();

  // The whole response is read: status(), header() and body() are final. Never with failed().
  bool done() const { return state_ == State::kDone; }
  // The response is malformed, too large or cut short; error() says which.
  bool failed() const { return state_ == State::kFailed; }
  const std::string& error() const { return error_; }

  // The final (non-1xx) status code once its status line is read, else 0. A 3xx is parsed like
  // any other: refusing redirects (RFC 8461 §3.3) is the caller's decision.
  int status() const { return status_; }
  // The first field of that name in the final response (names compared case-insensitively),
  // "" if absent. Trailer fields are not kept.
  std::string_view header(std::string_view lower_name) const;
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }
  // The body, de-chunked; complete only once done(), emptied on failure. Never over max_body.
  const std::string& body() const { return body_; }

 private:
  enum class State : uint8_t {
    kStatusLine,
    kFields,
    kBody,          // Content-Length octets
    kToEof,         // until the connection closes
    kChunkSize,     // chunk-size [chunk-ext] CRLF
    kChunkData,     // chunk_left_ octets
    kChunkDataEnd,  // the CRLF after a chunk's data
    kTrailers,      // trailer fields up to the empty line
    kDone,
    kFailed,
  };

  void OnLine(std::string_view line);
  void OnStatusLine(std::string_view line);
  void OnFieldLine(std::string_view line);
  void OnHeadEnd();
  void OnChunkSizeLine(std::string_view line);
  void Fail(std::string why);

  size_t max_body_;
  State state_ = State::kStatusLine;
  std::string line_;          // the unfinished line
  size_t head_bytes_ = 0;     // octets of every head so far, line_ included
  size_t trailer_bytes_ = 0;  // octets of the trailer section so far, line_ included
  bool interim_ = false;      // the head being read is a 1xx
  bool any_bytes_ = false;    // for the error at EOF
  bool eof_ = false;
  size_t body_left_ = 0;   // kBody
  size_t chunk_left_ = 0;  // kChunkData
  int status_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string body_;
  std::string error_;
};

}  // namespace spate::http
