// core/http/client.cc: the HTTP/1.1 client codec (RFC 9112, RFC 9110). See client.h.
//
// The syntax helpers are internal/syntax.h, shared with the server codec (http.cc).
#include "core/http/client.h"

#include <algorithm>
#include <cstring>

#include "core/http/internal/syntax.h"

namespace spate::http {
namespace {

using internal::EqualsNoCase;
using internal::IsDigit;
using internal::IsFieldValue;
using internal::IsTchar;
using internal::IsToken;
using internal::Lower;
using internal::Trim;

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

void AppendClean(std::string* out, std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      out->push_back(ch);
    }
  }
}

// Content-Length = 1*DIGIT (RFC 9110 §8.6), saturating at SIZE_MAX: a value too large for
// size_t is too large for any max_body.
bool ParseLength(std::string_view s, size_t* out) {
  if (s.empty()) {
    return false;
  }
  size_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) {
      return false;
    }
    const auto d = static_cast<size_t>(c - '0');
    v = v > (SIZE_MAX - d) / 10 ? SIZE_MAX : v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace

std::string FormatGet(std::string_view host, std::string_view path, std::string_view user_agent) {
  std::string out = "GET ";
  AppendClean(&out, path.empty() ? std::string_view("/") : path);
  out += " HTTP/1.1\r\nHost: ";
  AppendClean(&out, host);
  out += "\r\nUser-Agent: ";
  AppendClean(&out, user_agent);
  out += "\r\nAccept: text/plain\r\nConnection: close\r\n\r\n";
  return out;
}

ResponseParser::ResponseParser(size_t max_body) : max_body_(max_body) {}

std::string_view ResponseParser::header(std::string_view lower_name) const {
  for (const auto& [n, v] : headers_) {
    if (EqualsNoCase(n, lower_name)) {
      return v;
    }
  }
  return {};
}

void ResponseParser::OnBytes(std::string_view data) {
  if (eof_) {
    return;
  }
  any_bytes_ = any_bytes_ || !data.empty();
  while (!data.empty()) {
    switch (state_) {
      case State::kDone:
      case State::kFailed:
        return;
      case State::kBody: {
        const size_t take = std::min(body_left_, data.size());
        body_.append(data.substr(0, take));
        data.remove_prefix(take);
        body_left_ -= take;
        if (body_left_ == 0) {
          state_ = State::kDone;
        }
        break;
      }
      case State::kToEof:
        if (data.size() > max_body_ - body_.size()) {
          Fail("body too large (over " + std::to_string(max_body_) + " octets)");
          return;
        }
        body_.append(data);
        data = {};
        break;
      case State::kChunkData: {
        const size_t take = std::min(chunk_left_, data.size());
        body_.append(data.substr(0, take));
        data.remove_prefix(take);
        chunk_left_ -= take;
        if (chunk_left_ == 0) {
          state_ = State::kChunkDataEnd;
        }
        break;
      }
      default: {
        // A line state: one line at a time, never buffering more than the state's bound.
        const size_t lf = data.find('\n');
        const size_t take = lf == std::string_view::npos ? data.size() : lf + 1;
        if (state_ == State::kStatusLine || state_ == State::kFields) {
          if (take > kMaxHeadBytes - head_bytes_) {
            Fail("header section too large (over " + std::to_string(kMaxHeadBytes) + " octets)");
            return;
          }
          head_bytes_ += take;
        } else if (state_ == State::kTrailers) {
          if (take > kMaxHeadBytes - trailer_bytes_) {
            Fail("trailer section too large");
            return;
          }
          trailer_bytes_ += take;
        } else if (state_ == State::kChunkSize) {
          // chunk-size and extensions (ignored) on one line, 1 KiB of it at most.
          if (take > 1024 - line_.size()) {
            Fail("chunk size line too long");
            return;
          }
        } else if (take > 2 - line_.size()) {  // kChunkDataEnd: CRLF or LF only
          Fail("no CRLF after chunk data");
          return;
        }
        line_.append(data.substr(0, take));
        data.remove_prefix(take);
        if (lf != std::string_view::npos) {
          std::string line = std::move(line_);
          line_.clear();
          line.pop_back();  // the LF
          if (!line.empty() && line.back() == '\r') {
            line.pop_back();
          }
          OnLine(line);
        }
        break;
      }
    }
  }
}

void ResponseParser::OnEof() {
  if (eof_) {
    return;
  }
  eof_ = true;
  switch (state_) {
    case State::kDone:
    case State::kFailed:
      return;
    case State::kToEof:
      state_ = State::kDone;  // RFC 9112 §6.3 item 8: the close ends the body
      return;
    case State::kStatusLine:
      Fail(any_bytes_ ? "connection closed in the response head"
                      : "connection closed before a response");
      return;
    case State::kFields:
      Fail("connection closed in the response head");
      return;
    case State::kBody:
      Fail("connection closed " + std::to_string(body_left_) +
           " octets before the end of the Content-Length body");
      return;
    default:
      Fail("connection closed in the chunked body");  // RFC 9112 §8: an incomplete message
      return;
  }
}

void ResponseParser::OnLine(std::string_view line) {
  if (line.find('\r') != std::string_view::npos) {
    Fail("bare CR in a line");  // RFC 9112 §2.2
    return;
  }
  switch (state_) {
    case State::kStatusLine:
      OnStatusLine(line);
      return;
    case State::kFields:
      if (line.empty()) {
        OnHeadEnd();
      } else {
        OnFieldLine(line);
      }
      return;
    case State::kChunkSize:
      OnChunkSizeLine(line);
      return;
    case State::kChunkDataEnd:
      if (!line.empty()) {
        Fail("no CRLF after chunk data");
        return;
      }
      state_ = State::kChunkSize;
      return;
    case State::kTrailers:
      // trailer-section (RFC 9112 §7.1.2): read and dropped; the empty line ends the message.
      if (line.empty()) {
        state_ = State::kDone;
      }
      return;
    default:
      return;
  }
}

void ResponseParser::OnStatusLine(std::string_view line) {
  // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4), with
  // HTTP-version = "HTTP/" DIGIT "." DIGIT (§2.3). A missing SP before an empty reason is
  // tolerated; the reason itself is not read (§4: a client SHOULD ignore it).
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || !IsDigit(line[5]) || line[6] != '.' ||
      !IsDigit(line[7]) || line[8] != ' ' || !IsDigit(line[9]) || !IsDigit(line[10]) ||
      !IsDigit(line[11]) || (line.size() > 12 && line[12] != ' ')) {
    Fail("bad status line");
    return;
  }
  if (line[5] != '1') {
    Fail("not an HTTP/1.x response");
    return;
  }
  const int code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (code < 100 || code > 599) {  // RFC 9110 §15
    Fail("bad status code");
    return;
  }
  if (code == 101) {
    Fail("unexpected 101 Switching Protocols");
    return;
  }
  interim_ = code < 200;
  if (!interim_) {
    status_ = code;
  }
  headers_.clear();
  state_ = State::kFields;
}

void ResponseParser::OnFieldLine(std::string_view line) {
  if (line.front() == ' ' || line.front() == '\t') {
    Fail("obsolete line folding is not accepted");  // RFC 9112 §5.2
    return;
  }
  const size_t colon = line.find(':');
  // No whitespace between name and colon (§5.1): a name with one is not a token.
  if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
    Fail("bad header field name");
    return;
  }
  const std::string_view value = Trim(line.substr(colon + 1));
  if (!IsFieldValue(value)) {
    Fail("bad header field value");
    return;
  }
  if (headers_.size() == kMaxFields) {
    Fail("too many header fields (over " + std::to_string(kMaxFields) + ")");
    return;
  }
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), Lower);
  headers_.emplace_back(std::move(name), value);
}

void ResponseParser::OnHeadEnd() {
  if (interim_) {
    // RFC 9110 §15.2: a 1xx ends at its head; the final response follows.
    headers_.clear();
    interim_ = false;
    state_ = State::kStatusLine;
    return;
  }
  bool chunked = false;
  bool transfer_encoding = false;
  bool have_length = false;
  size_t length = 0;
  for (const auto& [name, value] : headers_) {
    if (name == "transfer-encoding") {
      // Only "chunked", alone: spate decodes no other coding (RFC 9112 §6.1, §7).
      if (transfer_encoding || !EqualsNoCase(value, "chunked")) {
        Fail("unsupported Transfer-Encoding");
        return;
      }
      transfer_encoding = true;
      chunked = true;
    } else if (name == "content-length") {
      // A list of identical values stands for one (RFC 9112 §6.3 item 5).
      std::string_view rest = value;
      while (true) {
        const size_t comma = rest.find(',');
        size_t v = 0;
        if (!ParseLength(Trim(rest.substr(0, comma)), &v)) {
          Fail("bad Content-Length");
          return;
        }
        if (have_length && v != length) {
          Fail("conflicting Content-Length values");
          return;
        }
        have_length = true;
        length = v;
        if (comma == std::string_view::npos) {
          break;
        }
        rest.remove_prefix(comma + 1);
      }
    }
  }
  if (status_ == 204 || status_ == 304) {  // RFC 9112 §6.3 item 1: never a body
    state_ = State::kDone;
    return;
  }
  if (transfer_encoding && have_length) {
    Fail("Transfer-Encoding with Content-Length");  // RFC 9112 §6.3 item 3
    return;
  }
  if (chunked) {
    state_ = State::kChunkSize;
    return;
  }
  if (have_length) {
    if (length > max_body_) {
      Fail("body too large (Content-Length " + std::to_string(length) + ", limit " +
           std::to_string(max_body_) + ")");
      return;
    }
    body_left_ = length;
    state_ = length == 0 ? State::kDone : State::kBody;
    return;
  }
  state_ = State::kToEof;  // RFC 9112 §6.3 item 8
}

void ResponseParser::OnChunkSizeLine(std::string_view line) {
  // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; chunk-size = 1*HEXDIG;
  // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) (RFC 9112 §7.1,
  // §7.1.1). Extensions are ignored; BWS after the size is tolerated.
  size_t i = 0;
  size_t size = 0;
  const size_t room = max_body_ - body_.size();
  bool too_large = false;
  while (i < line.size() && HexValue(line[i]) >= 0) {
    if (!too_large) {
      size = size * 16 + static_cast<size_t>(HexValue(line[i]));
      too_large = size > room;  // stops before size_t could overflow
    }
    ++i;
  }
  if (i == 0) {
    Fail("bad chunk size");
    return;
  }
  const std::string_view rest = Trim(line.substr(i));
  if (!rest.empty() && rest.front() != ';') {
    Fail("bad chunk size");
    return;
  }
  if (too_large) {
    Fail("body too large (over " + std::to_string(max_body_) + " octets)");
    return;
  }
  if (size == 0) {
    state_ = State::kTrailers;  // last-chunk; the trailer section follows (§7.1.2)
    return;
  }
  chunk_left_ = size;
  state_ = State::kChunkData;
}

void ResponseParser::Fail(std::string why) {
  error_ = std::move(why);
  state_ = State::kFailed;
  body_.clear();
  body_.shrink_to_fit();
  line_.clear();
  line_.shrink_to_fit();
}

}  // namespace spate::http
