// core/http/http.cc: the HTTP/1.1 server codec (RFC 9112, RFC 9110). See http.h.
#include "core/http/http.h"

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

// origin-form (RFC 9112 §3.2.1): absolute-path ["?" query]. Printable ASCII without '#', which
// starts a fragment and is never sent (RFC 9110 §4.2.4).
bool IsOriginForm(std::string_view t) {
  if (t.empty() || t.front() != '/') {
    return false;
  }
  for (char ch : t) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '#') {
      return false;
    }
  }
  return true;
}

// The tokens of a Connection field (RFC 9110 §7.6.1) include `option`, case-insensitively.
bool HasConnectionOption(std::string_view value, std::string_view option) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (EqualsNoCase(Trim(value.substr(0, comma)), option)) {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string ErrorBody(std::string_view why) {
  std::string body = "{\"error\":\"";
  body += why;  // always one of this file's constants: no escaping needed
  body += "\"}";
  return body;
}

}  // namespace

std::string_view Request::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (EqualsNoCase(n, name)) {
      return v;
    }
  }
  return {};
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

ServerSession::ServerSession(Limits limits) : limits_(limits) {}

void ServerSession::OnBytes(std::string_view data) {
  while (!data.empty()) {
    if (state_ == State::kHead) {
      // One line at a time, and never more of the head than the limit: a line is only buffered
      // while it fits.
      const size_t lf = data.find('\n');
      const size_t take = lf == std::string_view::npos ? data.size() : lf + 1;
      if (take > limits_.max_header_bytes - head_bytes_) {
        Fail(431, "request header section too large");
        return;
      }
      head_bytes_ += take;
      line_.append(data.substr(0, take));
      data.remove_prefix(take);
      if (lf != std::string_view::npos) {
        std::string line = std::move(line_);
        line_.clear();
        line.pop_back();  // the LF
        if (!line.empty() && line.back() == '\r') {
          line.pop_back();
        }
        OnHeadLine(line);
      }
    } else if (state_ == State::kBody) {
      const size_t take = std::min(body_left_, data.size());
      current_.body.append(data.substr(0, take));
      data.remove_prefix(take);
      body_left_ -= take;
      if (body_left_ == 0) {
        Finish();
      }
    } else {
      return;  // kDone, kError: nothing more is read
    }
  }
}

void ServerSession::OnHeadLine(std::string_view line) {
  if (line.find('\r') != std::string_view::npos) {
    Fail(400, "bare CR in the request head");  // RFC 9112 §2.2
  } else if (!have_request_line_) {
    if (!line.empty()) {  // empty lines before the request line are skipped (§2.2)
      OnRequestLine(line);
    }
  } else if (line.empty()) {
    OnHeadEnd();
  } else {
    OnFieldLine(line);
  }
}

void ServerSession::OnRequestLine(std::string_view line) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    Fail(400, "bad request line");
    return;
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  // HTTP-version = "HTTP/" DIGIT "." DIGIT (§2.3).
  if (!IsToken(method) || !IsOriginForm(target) || version.size() != 8 ||
      version.substr(0, 5) != "HTTP/" || !IsDigit(version[5]) || version[6] != '.' ||
      !IsDigit(version[7])) {
    Fail(400, "bad request line");
    return;
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    Fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    return;
  }
  have_request_line_ = true;
  minor_version_ = version[7] - '0';
  current_.method = method;
  current_.target = target;
  const size_t q = target.find('?');
  current_.path = target.substr(0, q);
  current_.query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

void ServerSession::OnFieldLine(std::string_view line) {
  if (line.front() == ' ' || line.front() == '\t') {
    Fail(400, "obsolete line folding is not accepted");  // RFC 9112 §5.2
    return;
  }
  const size_t colon = line.find(':');
  // No whitespace between name and colon (§5.1): a name with one is not a token.
  if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
    Fail(400, "bad header field name");
    return;
  }
  const std::string_view value = Trim(line.substr(colon + 1));
  if (!IsFieldValue(value)) {
    Fail(400, "bad header field value");
    return;
  }
  if (current_.headers.size() == limits_.max_headers) {
    Fail(431, "too many header fields");
    return;
  }
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), Lower);
  current_.headers.emplace_back(std::move(name), value);
}

void ServerSession::OnHeadEnd() {
  size_t hosts = 0;
  bool transfer_encoding = false;
  bool close = false;
  bool keep_alive_option = false;
  std::optional<std::string_view> length;
  for (const auto& [name, value] : current_.headers) {
    if (name == "host") {
      ++hosts;
    } else if (name == "transfer-encoding") {
      transfer_encoding = true;
    } else if (name == "connection") {
      close = close || HasConnectionOption(value, "close");
      keep_alive_option = keep_alive_option || HasConnectionOption(value, "keep-alive");
    } else if (name == "content-length") {
      if (value.empty() || !std::all_of(value.begin(), value.end(), IsDigit)) {
        Fail(400, "bad Content-Length");
        return;
      }
      if (length && *length != value) {
        Fail(400, "conflicting Content-Length fields");
        return;
      }
      length = value;
    }
  }
  // RFC 9112 §3.2: exactly one Host in HTTP/1.1, never more than one.
  if (hosts > 1 || (hosts == 0 && minor_version_ == 1)) {
    Fail(400, "a request needs exactly one Host field");
    return;
  }
  if (transfer_encoding) {
    if (length) {
      Fail(400, "Transfer-Encoding with Content-Length");  // request smuggling (§6.3)
    } else {
      Fail(501, "Transfer-Encoding is not supported: send the body with Content-Length");
    }
    return;
  }
  if (!length && (current_.method == "POST" || current_.method == "PUT")) {
    Fail(411, "POST and PUT need Content-Length");
    return;
  }
  // Leading zeros are digits too; skip them so that the width check below is about the value.
  std::string_view digits = length.value_or("0");
  while (digits.size() > 1 && digits.front() == '0') {
    digits.remove_prefix(1);
  }
  uint64_t size = 0;
  bool too_large = digits.size() > 19;  // would overflow: too large whatever the limit
  for (size_t i = 0; !too_large && i < digits.size(); ++i) {
    size = size * 10 + static_cast<uint64_t>(digits[i] - '0');
  }
  if (too_large || size > limits_.max_body_bytes) {
    Fail(413, "request body too large");
    return;
  }
  current_.keep_alive = !close && (minor_version_ == 1 || keep_alive_option);
  body_left_ = static_cast<size_t>(size);
  if (body_left_ == 0) {
    Finish();
  } else {
    state_ = State::kBody;
  }
}

void ServerSession::Finish() {
  const bool keep_alive = current_.keep_alive;
  ready_.push_back(std::move(current_));
  current_ = Request();
  line_.clear();
  head_bytes_ = 0;
  have_request_line_ = false;
  body_left_ = 0;
  state_ = keep_alive ? State::kHead : State::kDone;
}

void ServerSession::Fail(int status, std::string_view why) {
  Response r;
  r.status = status;
  r.body = ErrorBody(why);
  error_ = std::move(r);
  state_ = State::kError;
  current_ = Request();
  line_.clear();
  line_.shrink_to_fit();
}

std::optional<Request> ServerSession::TakeRequest() {
  if (ready_.empty()) {
    return std::nullopt;
  }
  std::optional<Request> r(std::move(ready_.front()));
  ready_.pop_front();
  return r;
}

std::optional<Response> ServerSession::TakeError() {
  if (!ready_.empty() || !error_) {
    return std::nullopt;
  }
  std::optional<Response> r = std::move(error_);
  error_.reset();
  return r;
}

std::string Serialize(const Response& r, bool close) {
  const int status = r.status >= 100 && r.status <= 599 ? r.status : 500;
  // RFC 9110 §8.6, §15.3.5, §15.4.5: no content (nor its length) in 1xx, 204 and 304.
  const bool no_content = status < 200 || status == 204 || status == 304;
  std::string out = "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += ReasonPhrase(status);
  out += "\r\n";
  if (!no_content && !r.content_type.empty() && IsFieldValue(r.content_type)) {
    out += "Content-Type: ";
    out += r.content_type;
    out += "\r\n";
  }
  if (!no_content) {
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n";
  }
  if (close) {
    out += "Connection: close\r\n";
  }
  for (const auto& [name, value] : r.headers) {
    // IsFieldValue refuses CR, LF and NUL: no response splitting through a value.
    if (!IsToken(name) || !IsFieldValue(value) || EqualsNoCase(name, "content-length") ||
        EqualsNoCase(name, "transfer-encoding") || EqualsNoCase(name, "content-type") ||
        (close && EqualsNoCase(name, "connection"))) {
      continue;
    }
    out += name;
    out += ": ";
    out += Trim(value);
    out += "\r\n";
  }
  out += "\r\n";
  if (!no_content) {
    out += r.body;
  }
  return out;
}

}  // namespace spate::http
