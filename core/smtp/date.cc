// core/smtp/date.cc
#include "core/smtp/date.h"

#include <cstdio>
#include <cstring>

namespace spate::smtp {
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

// Two and four decimal digits, written by hand: snprintf() was a fifth of the server's
// instructions per message (four dates and three compact stamps each; callgrind, bench/README).
void Put2(char* p, unsigned v) {
  p[0] = static_cast<char>('0' + v / 10 % 10);
  p[1] = static_cast<char>('0' + v % 10);
}

void Put4(char* p, int v) {
  const unsigned u = static_cast<unsigned>(v);
  Put2(p, u / 100);
  Put2(p + 2, u % 100);
}

bool FourDigitYear(const CivilTime& c) {
  return c.year >= 0 && c.year <= 9999;
}

}  // namespace

// RFC 5322 §3.3 date-time, in UTC: "Tue, 02 Jan 2024 03:04:05 +0000".
std::string FormatDate(std::chrono::system_clock::time_point t) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const CivilTime c = ToCivil(t);
  if (!FourDigitYear(c)) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s, %02u %s %04d %02d:%02d:%02d +0000", kDays[c.weekday % 7],
                  c.day, kMonths[(c.month + 11) % 12], c.year, c.hour, c.minute, c.second);
    return buf;
  }
  std::string out = "Sun, 00 Jan 0000 00:00:00 +0000";
  char* p = out.data();
  std::memcpy(p, kDays[c.weekday % 7], 3);
  Put2(p + 5, c.day);
  std::memcpy(p + 8, kMonths[(c.month + 11) % 12], 3);
  Put4(p + 12, c.year);
  Put2(p + 17, static_cast<unsigned>(c.hour));
  Put2(p + 20, static_cast<unsigned>(c.minute));
  Put2(p + 23, static_cast<unsigned>(c.second));
  return out;
}

// "20240102030405", for Message-IDs.
std::string CompactTime(std::chrono::system_clock::time_point t) {
  const CivilTime c = ToCivil(t);
  if (!FourDigitYear(c)) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%04d%02u%02u%02d%02d%02d", c.year, c.month, c.day, c.hour,
                  c.minute, c.second);
    return buf;
  }
  std::string out(14, '0');
  char* p = out.data();
  Put4(p, c.year);
  Put2(p + 4, c.month);
  Put2(p + 6, c.day);
  Put2(p + 8, static_cast<unsigned>(c.hour));
  Put2(p + 10, static_cast<unsigned>(c.minute));
  Put2(p + 12, static_cast<unsigned>(c.second));
  return out;
}

}  // namespace spate::smtp
