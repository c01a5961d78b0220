// delivery/dsn.cc
#include "delivery/dsn.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/smtp/date.h"

namespace spate::delivery::dsn {
namespace {

// RFC 5322 §2.1.1 allows 998 octets a line; a value is cut well before, so that its field
// name and folding still fit.
constexpr size_t kMaxValue = 900;

std::string Date(int64_t ms) {
  return smtp::FormatDate(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

// Printable US-ASCII and spaces only, at most kMaxValue octets: safe in a header field.
std::string Safe(std::string_view s) {
  std::string out;
  out.reserve(std::min(s.size(), kMaxValue));
  for (char c : s) {
    if (out.size() == kMaxValue)
      break;
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 32 && u < 127) ? c : '?';
  }
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

// ENVID in Original-Envelope-Id (RFC 3464 §2.2.1), as xtext and bounded.
std::string ShortXtext(std::string_view s) {
  std::string out = Xtext(s.substr(0, kMaxValue));
  if (out.size() > kMaxValue)
    out.resize(kMaxValue);
  return out;
}

// The lines of a reply, each made safe; empty ones dropped.
std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    size_t nl = text.find_first_of("\r\n");
    std::string line = Safe(text.substr(0, nl));
    size_t first = line.find_first_not_of(' ');
    if (first != std::string::npos)
      out.push_back(line.substr(first));
    if (nl == std::string_view::npos)
      break;
    text.remove_prefix(nl + 1);
    if (out.size() == 32)
      break;  // a reply of hundreds of lines says no more in its thirty-third
  }
  return out;
}

}  // namespace

const char* ActionName(Action a) {
  switch (a) {
    case Action::kFailed:
      return "failed";
    case Action::kDelayed:
      return "delayed";
    case Action::kDelivered:
      return "delivered";
    case Action::kRelayed:
      return "relayed";
    case Action::kExpanded:
      return "expanded";
  }
  return "failed";
}

namespace {

// The bare RFC 3463 code, checked: "class.subject.detail" of digits; else one that fits the
// action.
std::string StatusOf(const Recipient& r) {
  if (r.expired)
    return "4.4.7";  // RFC 3463 X.4.7: delivery time expired
  // RFC 3463 §2: class "." subject "." detail; class 2, 4 or 5, subject and detail 1-3 digits.
  const std::string& s = r.status;
  auto digits = [&](size_t from, size_t* end) {
    size_t n = 0;
    while (from + n < s.size() && s[from + n] >= '0' && s[from + n] <= '9')
      ++n;
    *end = from + n;
    return n >= 1 && n <= 3;
  };
  size_t end = 0;
  const bool ok = s.size() >= 5 && (s[0] == '2' || s[0] == '4' || s[0] == '5') && s[1] == '.' &&
                  digits(2, &end) && end < s.size() && s[end] == '.' && digits(end + 1, &end) &&
                  end == s.size();
  if (ok)
    return s;
  switch (r.action) {
    case Action::kDelayed:
      return "4.0.0";
    case Action::kDelivered:
    case Action::kRelayed:
    case Action::kExpanded:
      return "2.0.0";
    case Action::kFailed:
      break;
  }
  return "5.0.0";
}

bool HasEightBit(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80)
      return true;
  }
  return false;
}

}  // namespace

std::string Xtext(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 33 && u <= 126 && c != '+' && c != '=') {
      out += c;
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "+%02X", u);
      out += hex;
    }
  }
  return out;
}

std::string_view HeaderSection(std::string_view message) {
  if (message.starts_with("\r\n"))
    return {};
  size_t end = message.find("\r\n\r\n");
  return end == std::string_view::npos ? message : message.substr(0, end + 2);
}

Notification Build(const Report& report) {
  Notification out;
  bool failed = false, delayed = false;
  for (const Recipient& r : report.recipients) {
    failed = failed || r.action == Action::kFailed;
    delayed = delayed || r.action == Action::kDelayed;
  }
  // What goes back of the original (RFC 3461 §4.3): its headers, or all of it when asked and
  // not too large.
  const bool full = report.return_full && report.original.size() <= report.max_full_size;
  std::string_view original = full ? report.original : HeaderSection(report.original);
  const bool original_8bit = HasEightBit(original);
  out.eight_bit = original_8bit;

  char unique[24];
  std::snprintf(unique, sizeof(unique), "%016llx", static_cast<unsigned long long>(report.unique));
  // A boundary that occurs nowhere in what goes in: the original, nor any text a server or a
  // client chose (RFC 2046 §5.1.1).
  auto occurs = [&](const std::string& b) {
    if (original.find(b) != std::string_view::npos || report.envid.find(b) != std::string::npos ||
        report.to.find(b) != std::string::npos)
      return true;
    for (const Recipient& r : report.recipients) {
      for (const std::string* text :
           {&r.diagnostic, &r.remote_mta, &r.final_recipient, &r.original_recipient, &r.status}) {
        if (text->find(b) != std::string::npos)
          return true;
      }
    }
    return false;
  };
  std::string boundary = std::string("=_spate_") + unique;
  for (int n = 1; occurs(boundary); ++n)
    boundary = std::string("=_spate_") + unique + "_" + std::to_string(n);

  const std::string host = Safe(report.reporting_mta);
  const auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(report.now_ms));
  std::string& m = out.message;
  m.reserve(2048 + original.size());
  m += "From: Mail Delivery System <" + Safe(report.from) + ">\r\n";
  m += "To: <" + Safe(report.to) + ">\r\n";
  m += failed    ? "Subject: Undelivered Mail Returned to Sender\r\n"
       : delayed ? "Subject: Delayed Mail (still being retried)\r\n"
                 : "Subject: Successful Mail Delivery Report\r\n";
  m += "Date: " + Date(report.now_ms) + "\r\n";
  m += "Message-ID: <dsn." + smtp::CompactTime(now) + "." + unique + "@" + host + ">\r\n";
  m += "Auto-Submitted: auto-replied\r\n";  // RFC 3834 §5: no auto-reply to it
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary +
       "\"\r\n";
  m += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

  // 1. For people (RFC 3464 §6.2 lets it say anything).
  m += "--" + boundary + "\r\n";
  m += "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is the mail system at host " + host + ".\r\n\r\n";
  if (failed) {
    m += "I'm sorry to have to inform you that your message could not\r\n"
         "be delivered to one or more recipients. It's attached below.\r\n\r\n";
  } else if (delayed) {
    m += "Your message could not be delivered yet. The mail system will\r\n"
         "keep trying; you need not send it again.\r\n\r\n";
  } else {
    m += "Your message was delivered to the recipients listed below.\r\n\r\n";
  }
  for (const Recipient& r : report.recipients) {
    const std::vector<std::string> lines = Lines(r.diagnostic);
    std::string said = lines.empty() ? std::string("no reply") : lines.front();
    for (size_t i = 1; i < lines.size() && said.size() < kMaxValue; ++i)
      said += " " + lines[i];
    said = Safe(said);
    std::string line = "<" + Safe(r.final_recipient) + ">: ";
    if (r.expired)
      line += "delivery time expired; the last reply was: ";
    else if (!r.remote_mta.empty())
      line += "host " + Safe(r.remote_mta) + " said: ";
    line += said;
    m += Safe(line) + "\r\n";  // cut again: the parts together may be too long a line
  }
  if (!full && report.return_full)
    m += "\r\nThe message was too large to return whole; its headers are attached.\r\n";
  m += "\r\n";

  // 2. For programs: RFC 3464 §2.2 (per message) and §2.3 (per recipient).
  m += "--" + boundary + "\r\n";
  m += "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n";
  m += "Reporting-MTA: dns; " + host + "\r\n";
  if (!report.envid.empty())
    m += "Original-Envelope-Id: " + ShortXtext(report.envid) + "\r\n";
  if (report.arrival_ms > 0)
    m += "Arrival-Date: " + Date(report.arrival_ms) + "\r\n";
  for (const Recipient& r : report.recipients) {
    m += "\r\n";
    if (!r.original_recipient.empty() && r.original_recipient.find(';') != std::string::npos)
      m += "Original-Recipient: " + Safe(r.original_recipient) + "\r\n";
    m += "Final-Recipient: rfc822; " + Safe(r.final_recipient) + "\r\n";
    m += std::string("Action: ") + ActionName(r.action) + "\r\n";
    m += "Status: " + StatusOf(r) + "\r\n";
    if (!r.remote_mta.empty())
      m += "Remote-MTA: dns; " + Safe(r.remote_mta) + "\r\n";
    const std::vector<std::string> lines = Lines(r.diagnostic);
    if (!lines.empty()) {
      // RFC 3464 §2.3.6; a reply of several lines is folded, each line on one of its own.
      m += "Diagnostic-Code: smtp; " + lines.front();
      for (size_t i = 1; i < lines.size(); ++i)
        m += "\r\n " + lines[i];
      m += "\r\n";
    }
    if (r.last_attempt_ms > 0)
      m += "Last-Attempt-Date: " + Date(r.last_attempt_ms) + "\r\n";
    if (r.action == Action::kDelayed && r.will_retry_until_ms > 0)
      m += "Will-Retry-Until: " + Date(r.will_retry_until_ms) + "\r\n";
  }
  m += "\r\n";

  // 3. The original, or its headers (RFC 6522 §3: text/rfc822-headers).
  m += "--" + boundary + "\r\n";
  const std::string what = failed ? "Undelivered Message" : "Original Message";
  m += full ? "Content-Description: " + what + "\r\nContent-Type: message/rfc822\r\n"
            : "Content-Description: " + what + " Headers\r\nContent-Type: text/rfc822-headers\r\n";
  if (original_8bit)
    m += "Content-Transfer-Encoding: 8bit\r\n";
  m += "\r\n";
  m.append(original);
  if (!original.empty() && !original.ends_with("\r\n"))
    m += "\r\n";
  m += "\r\n--" + boundary + "--\r\n";
  return out;
}

}  // namespace spate::delivery::dsn
