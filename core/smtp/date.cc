// core/smtp/date.cc
#include "core/smtp/date.h"

#include <cstdio>

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

}  // namespace

// RFC 5322 §3.3 date-time, in UTC: "Tue, 02 Jan 2024 03:04:05 +0000".
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

// "20240102030405", for Message-IDs.
std::string CompactTime(std::chrono::system_clock::time_point t) {
  const CivilTime c = ToCivil(t);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d%02u%02u%02d%02d%02d", c.year, c.month, c.day, c.hour,
                c.minute, c.second);
  return buf;
}

}  // namespace spate::smtp
