// core/smtp/internal/trace_headers.cc
#include "core/smtp/internal/trace_headers.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/smtp/ascii.h"
#include "core/smtp/date.h"

namespace spate::smtp::internal {
namespace {

// What the client wrote, safe inside a header: printable US-ASCII, anything else becomes '?'.
std::string HeaderSafe(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c < 33 || c > 126) {
      c = '?';
    }
  }
  return out;
}

// RFC 5322 §3.6.8: ftext = %d33-57 / %d59-126, the octets of a field name.
bool IsFtext(char c) {
  return c >= 33 && c <= 126 && c != ':';
}

// Appends the Received: line to *out; *date_at: where its date-time starts.
void AppendReceived(std::string* out, const ReceivedInfo& info,
                    std::chrono::system_clock::time_point now, size_t* date_at) {
  std::string protocol;
  if (!info.ehlo) {
    protocol = "SMTP";
  } else {
    protocol = info.smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (info.tls) {
      protocol += 'S';
    }
    if (info.authenticated) {
      protocol += 'A';
    }
  }
  std::string& r = *out;
  r += "Received: from " + HeaderSafe(info.helo);
  if (!info.client_address.empty()) {
    r += " ([" + HeaderSafe(info.client_address) + "])";
  }
  r += "\r\n\tby ";
  r += info.hostname;
  r += " (spate) with " + protocol;
  if (info.tls && !(info.tls_version.empty() && info.tls_cipher.empty())) {
    std::string tls = HeaderSafe(info.tls_version);
    if (!info.tls_cipher.empty()) {
      tls += (tls.empty() ? "" : " ") + HeaderSafe(info.tls_cipher);
    }
    r += " (" + tls + ")";
  }
  if (!info.recipient.empty()) {
    r += "\r\n\tfor <";
    r += info.recipient;
    r += ">";
  }
  r += "; ";
  *date_at = r.size();
  r += FormatDate(now);
  r += "\r\n";
}

}  // namespace

void TraceFields::Start(std::string* body, std::chrono::system_clock::time_point now,
                        const ReceivedInfo* received, const MessageIdInfo* missing) {
  stamp_ = now;
  received_date_at_ = std::string::npos;
  date_at_ = std::string::npos;
  id_time_at_ = std::string::npos;
  if (received != nullptr) {
    AppendReceived(body, *received, now, &received_date_at_);
  }
  state_ = missing == nullptr ? State::kClosed : State::kLineStart;
  id_ = missing == nullptr ? MessageIdInfo{} : *missing;
  name_.clear();
  in_field_ = false;
  has_date_ = false;
  has_message_id_ = false;
}

void TraceFields::Append(std::string* body, std::string_view text) {
  while (!text.empty() && state_ != State::kClosed) {
    switch (state_) {
      case State::kLineStart: {
        const char c = text[0];
        if (IsFtext(c)) {
          state_ = State::kName;
        } else if ((c == ' ' || c == '\t') && in_field_) {
          state_ = State::kField;  // a continuation line (RFC 5322 §2.2.3)
        } else {
          // The empty line (a CR first: every CR here is followed by LF), or the first line that
          // is no header field (white space before any field, ':', a control or 8-bit octet).
          CloseSection(body, c == '\r' ? "" : "\r\n");
        }
        break;
      }
      case State::kName: {
        size_t n = 0;
        while (n < text.size() && IsFtext(text[n])) {
          ++n;
        }
        name_.append(text.substr(0, n));
        text.remove_prefix(n);
        if (text.empty()) {
          break;
        }
        if (text[0] != ':') {
          CloseSection(body, "\r\n");  // field-name octets, then no ':': no header field
          break;
        }
        in_field_ = true;
        has_date_ = has_date_ || EqualsNoCase(name_, "Date");
        has_message_id_ = has_message_id_ || EqualsNoCase(name_, "Message-ID");
        body->append(name_);
        name_.clear();
        // With both fields there, nothing is to be added: the rest is only appended.
        state_ = has_date_ && has_message_id_ ? State::kClosed : State::kField;
        break;
      }
      case State::kField: {
        const size_t lf = text.find('\n');
        const size_t n = lf == std::string_view::npos ? text.size() : lf + 1;
        body->append(text.substr(0, n));
        text.remove_prefix(n);
        if (lf != std::string_view::npos) {
          state_ = State::kLineStart;
        }
        break;
      }
      case State::kClosed:
        break;
    }
  }
  body->append(text);
}

void TraceFields::Finish(std::string* body, std::chrono::system_clock::time_point now) {
  switch (state_) {
    case State::kLineStart:
      WriteMissing(body);  // all header (or no text at all): the fields go last
      break;
    case State::kName:
      CloseSection(body, "\r\n");  // an unterminated last line of field-name octets only
      break;
    case State::kField:
      body->append("\r\n");  // ends an unterminated last field line (one is missing)
      WriteMissing(body);
      break;
    case State::kClosed:
      break;
  }
  state_ = State::kClosed;
  using std::chrono::floor;
  using std::chrono::seconds;
  if (floor<seconds>(now) == floor<seconds>(stamp_)) {
    return;  // the stamps show seconds
  }
  // Each stamp is written over in place: the widths agree for every year from 1000 to 9999.
  // The latest first, so that one of another width moves only what follows it.
  if (id_time_at_ != std::string::npos) {
    body->replace(id_time_at_, CompactTime(stamp_).size(), CompactTime(now));
  }
  const std::string old_date = FormatDate(stamp_);
  const std::string new_date = FormatDate(now);
  if (date_at_ != std::string::npos) {
    body->replace(date_at_, old_date.size(), new_date);
  }
  if (received_date_at_ != std::string::npos) {
    body->replace(received_date_at_, old_date.size(), new_date);
  }
  stamp_ = now;
}

// The header section ends before the line that starts now: the missing fields, then
// `separator` (an empty line that keeps a line that is no field in the body), then what was held
// back of that line.
void TraceFields::CloseSection(std::string* body, std::string_view separator) {
  WriteMissing(body);
  body->append(separator);
  body->append(name_);
  name_.clear();
  state_ = State::kClosed;
}

void TraceFields::WriteMissing(std::string* body) {
  if (!has_date_) {
    body->append("Date: ");
    date_at_ = body->size();
    body->append(FormatDate(stamp_));
    body->append("\r\n");
  }
  if (!has_message_id_) {
    body->append("Message-ID: <");
    id_time_at_ = body->size();
    body->append(CompactTime(stamp_));
    body->push_back('.');
    const size_t nonce_at = body->size();
    for (char c : id_.nonce) {
      if (IsAsciiAlnum(c) || c == '-' || c == '_') {
        body->push_back(c);
      }
    }
    if (body->size() != nonce_at) {
      body->push_back('.');
    }
    body->append(std::to_string(id_.number));
    body->push_back('@');
    body->append(id_.hostname);
    body->append(">\r\n");
  }
}

}  // namespace spate::smtp::internal
