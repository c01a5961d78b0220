// core/smtp/internal/trace_headers.cc
#include "core/smtp/internal/trace_headers.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/smtp/ascii.h"

namespace spate::smtp::internal {
namespace {

struct CivilTime {
  int year;
  unsigned month;    // 1..12
  unsigned day;      // 1..31
  unsigned weekday;  // 0 = Sunday
  int hour;
  int minute;
  int second;
};

CivilTime ToCivil(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const sys_seconds secs = floor<seconds>(t);
  const sys_days day = floor<days>(secs);
  const year_month_day ymd(day);
  const hh_mm_ss<seconds> hms(secs - day);
  return CivilTime{static_cast<int>(ymd.year()),           static_cast<unsigned>(ymd.month()),
                   static_cast<unsigned>(ymd.day()),       weekday(day).c_encoding(),
                   static_cast<int>(hms.hours().count()),  static_cast<int>(hms.minutes().count()),
                   static_cast<int>(hms.seconds().count())};
}

// A header field's first line: field-name ":" with field-name = 1*ftext (RFC 5322 §3.6.8,
// %d33-57 / %d59-126). Stores the name.
bool IsFieldLine(std::string_view line, std::string_view* name) {
  size_t i = 0;
  while (i < line.size() && line[i] >= 33 && line[i] <= 126 && line[i] != ':') {
    ++i;
  }
  if (i == 0 || i >= line.size() || line[i] != ':') {
    return false;
  }
  *name = line.substr(0, i);
  return true;
}

}  // namespace

std::string FormatDate(std::chrono::system_clock::time_point t) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const CivilTime c = ToCivil(t);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s, %02u %s %04d %02d:%02d:%02d +0000", kDays[c.weekday % 7],
                c.day, kMonths[(c.month + 11) % 12], c.year, c.hour, c.minute, c.second);
  return buf;
}

std::string CompactTime(std::chrono::system_clock::time_point t) {
  const CivilTime c = ToCivil(t);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d%02u%02u%02d%02d%02d", c.year, c.month, c.day, c.hour,
                c.minute, c.second);
  return buf;
}

std::string HeaderSafe(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c < 33 || c > 126) {
      c = '?';
    }
  }
  return out;
}

std::string ReceivedHeader(const ReceivedInfo& info, std::chrono::system_clock::time_point now) {
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
  std::string r = "Received: from " + HeaderSafe(info.helo);
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
  r += "; " + FormatDate(now) + "\r\n";
  return r;
}

void AddMissingFields(std::string* body, std::chrono::system_clock::time_point now,
                      const MessageIdInfo& id) {
  bool has_date = false;
  bool has_message_id = false;
  bool in_field = false;
  size_t insert_at = body->size();
  std::string before;  // ends an unterminated last header line
  std::string after;   // separates the new fields from a body without an empty line
  size_t pos = 0;
  while (pos < body->size()) {
    const size_t eol = body->find("\r\n", pos);
    const std::string_view line = std::string_view(*body).substr(
        pos, eol == std::string::npos ? std::string::npos : eol - pos);
    std::string_view name;
    if (line.empty()) {
      insert_at = pos;  // the empty line between header and body
      break;
    }
    if (line[0] == ' ' || line[0] == '\t') {
      if (!in_field) {
        insert_at = pos;
        after = "\r\n";
        break;
      }
    } else if (IsFieldLine(line, &name)) {
      in_field = true;
      has_date = has_date || EqualsNoCase(name, "Date");
      has_message_id = has_message_id || EqualsNoCase(name, "Message-ID");
    } else {
      insert_at = pos;
      after = "\r\n";
      break;
    }
    if (eol == std::string::npos) {
      before = "\r\n";  // the header section is the whole body, its last line unterminated
      break;
    }
    pos = eol + 2;
  }
  std::string fields;
  if (!has_date) {
    fields += "Date: " + FormatDate(now) + "\r\n";
  }
  if (!has_message_id) {
    std::string nonce;
    for (char c : id.nonce) {
      if (IsAsciiAlnum(c) || c == '-' || c == '_') {
        nonce += c;
      }
    }
    fields += "Message-ID: <" + CompactTime(now) + "." + (nonce.empty() ? "" : nonce + ".") +
              std::to_string(id.number) + "@" + std::string(id.hostname) + ">\r\n";
  }
  if (!fields.empty()) {
    body->insert(insert_at, before + fields + after);
  }
}

}  // namespace spate::smtp::internal
