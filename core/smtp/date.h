// core/smtp/date.h
//
// Dates as mail writes them: RFC 5322 §3.3 date-time in UTC (Received:, Date:, and the dates of
// a delivery status notification, RFC 3464 §2.1.5), and a compact form for Message-IDs.
// Threading: pure functions.
#pragma once

#include <chrono>
#include <string>

namespace spate::smtp {

// "Tue, 02 Jan 2024 03:04:05 +0000".
std::string FormatDate(std::chrono::system_clock::time_point t);
// "20240102030405".
std::string CompactTime(std::chrono::system_clock::time_point t);

}  // namespace spate::smtp
