#include "queue/suppression_csv.h"

#include <algorithm>
#include <cstdio>

namespace spate::queue {

namespace {

constexpr int64_t kMsPerDay = 86400000;
// 9999-12-31T23:59:59.999Z: the last instant four year digits can write.
constexpr int64_t kMaxMs = 253402300799999;

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t year;
  unsigned month;
  unsigned day;
};
Civil CivilFromDays(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

unsigned DaysInMonth(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// The number written by text[at, at + n), all digits; -1 otherwise.
int64_t Digits(std::string_view text, size_t at, size_t n) {
  if (at + n > text.size())
    return -1;
  int64_t v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (!IsDigit(text[i]))
      return -1;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

void AppendField(std::string_view field, std::string* out) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) {
    out->append(field);
    return;
  }
  out->push_back('"');
  for (char c : field) {
    if (c == '"')
      out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

struct Field {
  std::string text;
  bool quoted = false;
};

constexpr size_t kFields = 4;  // address, since, class, reason

// Reads one record from text[*pos] on (RFC 4180 2), counting the line ends it passes in
// *line. False with *error on a malformed one.
bool ReadRecord(std::string_view text, size_t* pos, size_t* line, std::vector<Field>* fields,
                std::string* error) {
  fields->clear();
  size_t& p = *pos;
  for (;;) {
    Field f;
    if (p < text.size() && text[p] == '"') {
      f.quoted = true;
      for (++p;; ++p) {
        if (p >= text.size()) {
          *error = "a quoted field is not closed";
          return false;
        }
        const char c = text[p];
        if (c == '"') {
          if (p + 1 < text.size() && text[p + 1] == '"') {
            f.text.push_back('"');
            ++p;
            continue;
          }
          ++p;
          break;
        }
        if (c == '\n')
          ++*line;
        f.text.push_back(c);
      }
    } else {
      const size_t end = std::min(text.find_first_of(",\r\n", p), text.size());
      const std::string_view raw = text.substr(p, end - p);
      if (raw.find('"') != std::string_view::npos) {
        *error = "a quote inside an unquoted field (quote the whole field, double the quote)";
        return false;
      }
      f.text.assign(raw);
      p = end;
    }
    fields->push_back(std::move(f));
    if (p >= text.size())
      return true;
    const char c = text[p];
    if (c == ',') {
      if (fields->size() == kFields) {
        *error = "more than 4 fields (want address,since,class,reason)";
        return false;
      }
      ++p;
      continue;
    }
    if (c == '\n' || (c == '\r' && p + 1 < text.size() && text[p + 1] == '\n')) {
      p += c == '\r' ? 2 : 1;
      ++*line;
      return true;
    }
    *error = c == '\r' ? "a CR not followed by LF" : "text after a quoted field's closing quote";
    return false;
  }
}

// The entry of one record; false with *error when a field is bad. A header is no entry:
// *header is set.
bool ToEntry(const std::vector<Field>& fields, int64_t now_ms, SuppressionEntry* out, bool* header,
             std::string* error) {
  *header = false;
  const std::string_view address = Trim(fields[0].text);
  if (NormalizeAddress(address) == "address") {
    *header = true;
    return true;
  }
  if (!ValidSuppressionAddress(address)) {
    *error = "address: want local@domain, without blanks or controls, at most 256 octets";
    return false;
  }
  out->address = NormalizeAddress(address);
  const std::string_view since = fields.size() > 1 ? Trim(fields[1].text) : std::string_view();
  if (since.empty()) {
    out->since_ms = now_ms;
  } else if (auto ms = ParseRfc3339(since)) {
    out->since_ms = *ms;
  } else {
    *error = "since: want RFC 3339 such as 2026-12-01T16:42:33Z";
    return false;
  }
  const std::string_view klass = fields.size() > 2 ? Trim(fields[2].text) : std::string_view();
  if (klass.empty()) {
    out->klass = kDefaultSuppressionClass;
  } else if (ValidSuppressionClass(klass)) {
    out->klass.assign(klass);
  } else {
    *error = "class: want 1 to 64 letters, digits, '.', '_' or '-'";
    return false;
  }
  out->reason = fields.size() > 3 ? fields[3].text : std::string();
  if (out->reason.size() > kMaxSuppressionReason) {
    *error = "reason: longer than 512 octets";
    return false;
  }
  return true;
}

}  // namespace

std::string NormalizeAddress(std::string_view address) {
  std::string out(address);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool ValidSuppressionAddress(std::string_view address) {
  if (address.empty() || address.size() > kMaxSuppressionAddress)
    return false;
  for (char c : address) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f)
      return false;
  }
  const size_t at = address.rfind('@');
  return at != std::string_view::npos && at > 0 && at + 1 < address.size();
}

bool ValidSuppressionClass(std::string_view klass) {
  if (klass.empty() || klass.size() > kMaxSuppressionClass)
    return false;
  return std::all_of(klass.begin(), klass.end(), [](char c) {
    return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
           c == '-';
  });
}

std::string FormatRfc3339(int64_t ms) {
  ms = std::clamp<int64_t>(ms, 0, kMaxMs);
  const Civil date = CivilFromDays(ms / kMsPerDay);
  const int64_t in_day = ms % kMsPerDay;
  const auto sec = static_cast<int>(in_day / 1000);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(date.year),
                date.month, date.day, sec / 3600, sec / 60 % 60, sec % 60);
  std::string out = buf;
  if (ms % 1000 != 0) {
    std::snprintf(buf, sizeof buf, ".%03d", static_cast<int>(ms % 1000));
    out += buf;
  }
  out += 'Z';
  return out;
}

std::optional<int64_t> ParseRfc3339(std::string_view t) {
  if (t.size() < 20 || t[4] != '-' || t[7] != '-' || t[13] != ':' || t[16] != ':' ||
      (t[10] != 'T' && t[10] != 't' && t[10] != ' ')) {
    return std::nullopt;
  }
  const int64_t year = Digits(t, 0, 4);
  const int64_t month = Digits(t, 5, 2);
  const int64_t day = Digits(t, 8, 2);
  const int64_t hour = Digits(t, 11, 2);
  const int64_t minute = Digits(t, 14, 2);
  const int64_t second = Digits(t, 17, 2);
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
      minute > 59 || second < 0 || second > 59 ||
      day > DaysInMonth(year, static_cast<unsigned>(month))) {
    return std::nullopt;
  }
  size_t p = 19;
  int64_t frac_ms = 0;
  if (t[p] == '.') {
    const size_t start = ++p;
    while (p < t.size() && IsDigit(t[p]))
      ++p;
    if (p == start)
      return std::nullopt;
    for (size_t i = start; i < start + 3; ++i)
      frac_ms = frac_ms * 10 + (i < p ? t[i] - '0' : 0);
  }
  int64_t offset_min = 0;
  const std::string_view zone = t.substr(p);
  if (zone != "Z" && zone != "z") {
    const int64_t oh = Digits(zone, 1, 2);
    const int64_t om = Digits(zone, 4, 2);
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || zone[3] != ':' || oh < 0 ||
        oh > 23 || om < 0 || om > 59) {
      return std::nullopt;
    }
    offset_min = (zone[0] == '+' ? 1 : -1) * (oh * 60 + om);
  }
  const int64_t days =
      DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const int64_t ms =
      days * kMsPerDay + ((hour * 60 + minute - offset_min) * 60 + second) * 1000 + frac_ms;
  if (ms < 0 || ms > kMaxMs)
    return std::nullopt;
  return ms;
}

void AppendSuppressionCsv(const SuppressionEntry& entry, std::string* out) {
  AppendField(entry.address, out);
  out->push_back(',');
  out->append(FormatRfc3339(entry.since_ms));
  out->push_back(',');
  AppendField(entry.klass, out);
  out->push_back(',');
  AppendField(entry.reason, out);
  out->append("\r\n");
}

std::string FormatSuppressionCsv(const std::vector<SuppressionEntry>& entries) {
  std::string out(kSuppressionCsvHeader);
  for (const SuppressionEntry& e : entries)
    AppendSuppressionCsv(e, &out);
  return out;
}

SuppressionCsv ParseSuppressionCsv(std::string_view text, int64_t now_ms) {
  SuppressionCsv result;
  std::vector<Field> fields;
  size_t pos = 0;
  size_t line = 1;
  std::string error;
  while (pos < text.size()) {
    const size_t first_line = line;
    bool header = false;
    SuppressionEntry entry;
    bool ok = ReadRecord(text, &pos, &line, &fields, &error);
    if (ok && fields.size() == 1 && !fields[0].quoted && Trim(fields[0].text).empty())
      continue;  // a blank line
    ok = ok && ToEntry(fields, now_ms, &entry, &header, &error);
    if (!ok) {
      result.entries.clear();
      result.bad_line = first_line;
      result.error = "line " + std::to_string(first_line) + ": " + error;
      return result;
    }
    if (!header)
      result.entries.push_back(std::move(entry));
  }
  return result;
}

}  // namespace spate::queue
