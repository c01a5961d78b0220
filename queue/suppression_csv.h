// queue/suppression_csv.h
//
// The suppression list's entry and its CSV form (the `spate suppression` commands, and the admin
// API later). Pure functions on strings: no RocksDB, no clock, no I/O, so a fuzz target drives
// them alone (tests/fuzz/suppression_csv_fuzz.cc).
//
// CSV (RFC 4180): a header line "address,since,class,reason", then one line per entry, CRLF.
//   address  normalized (NormalizeAddress)
//   since    RFC 3339 UTC, "2026-12-01T16:42:33Z" (".123" before the Z when the milliseconds
//            are not zero)
//   class    the bounce class, e.g. "InvalidRecipient", "BadDomain"; "Manual" when imported
//            without one
//   reason   the reply text that put the address on the list, at most kMaxReason octets
// A field is quoted when it holds a comma, a quote, CR or LF (a quote doubled inside).
// Parsing accepts more: the header optional (any record whose first field is "address" is a
// header, so exports can be concatenated), LF or CRLF, blank lines, 1 to 4 fields (since empty
// or missing: now; class empty or missing: "Manual"; reason missing: empty), spaces around the
// address, since and class. A bad record fails the whole parse, naming its (first) line:
// importing is all or nothing, so a file is fixed and imported again, never half-imported.
// Threading: none (value functions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spate::queue {

struct SuppressionEntry {
  std::string address;   // normalized
  int64_t since_ms = 0;  // unix time in ms when it was put on the list
  std::string klass;     // bounce class ("InvalidRecipient", "BadDomain", "Manual", ...)
  std::string reason;    // the reply text

  friend bool operator==(const SuppressionEntry&, const SuppressionEntry&) = default;
};

inline constexpr size_t kMaxSuppressionAddress = 256;  // RFC 5321 4.5.3.1.3: a path
inline constexpr size_t kMaxSuppressionClass = 64;
inline constexpr size_t kMaxSuppressionReason = 512;  // one reply line (RFC 5321 4.5.3.1.5)
inline constexpr const char* kDefaultSuppressionClass = "Manual";

// The key of an address: the whole address in ASCII lower case (octets past ASCII unchanged).
// RFC 5321 2.4 lets a local part be case-sensitive, but mailbox providers treat it as
// case-insensitive in practice, and PowerMTA and KumoMTA suppress the same way: "Bob@x" bounced,
// so "bob@x" would too.
std::string NormalizeAddress(std::string_view address);

// An address as the list takes it: 1..kMaxSuppressionAddress octets, an '@' with something on
// both sides, no blanks or controls.
bool ValidSuppressionAddress(std::string_view address);
// A class: 1..kMaxSuppressionClass octets of letters, digits, '.', '_', '-'.
bool ValidSuppressionClass(std::string_view klass);

// "2026-12-01T16:42:33Z", with ".mmm" when ms % 1000 != 0. `ms` is clamped to the years
// 1970..9999.
std::string FormatRfc3339(int64_t ms);
// RFC 3339 in UTC: "YYYY-MM-DDTHH:MM:SS[.fraction]Z" ('t', 'z' and a space for the 'T' too; an
// offset "+00:00" or "-00:00" for the Z). A fraction is cut to milliseconds. nullopt otherwise.
std::optional<int64_t> ParseRfc3339(std::string_view text);

inline constexpr std::string_view kSuppressionCsvHeader = "address,since,class,reason\r\n";
// Appends one CSV line (with its CRLF).
void AppendSuppressionCsv(const SuppressionEntry& entry, std::string* out);
// The header, then each entry in the order given.
std::string FormatSuppressionCsv(const std::vector<SuppressionEntry>& entries);

struct SuppressionCsv {
  std::vector<SuppressionEntry> entries;  // in input order (a later duplicate wins on import)
  size_t bad_line = 0;                    // 0: parsed; else the line the bad record starts on
  std::string error;                      // "line 7: since: want RFC 3339 ..."
  bool ok() const { return bad_line == 0; }
};
// Parses a whole CSV text; `now_ms` is the since of an entry without one.
SuppressionCsv ParseSuppressionCsv(std::string_view text, int64_t now_ms);

}  // namespace spate::queue
