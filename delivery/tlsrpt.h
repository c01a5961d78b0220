// delivery/tlsrpt.h
//
// SMTP TLS reporting (RFC 8460): what spate's sessions found of the destinations' TLS
// policies, MTA-STS and DANE, counted per policy domain and UTC day and written as the
// aggregate report of RFC 8460 §4, one JSON file per domain per day:
// <directory>/<YYYY-MM-DD>/<domain>.json. spate does not send them (the `rua` of the domain's
// _smtp._tls record, §3); the files are what an operator's job, or a TLSRPT sender, mails or
// posts.
//
// A "session" is one attempt to set up TLS with an MX host under a policy (§4.4's
// total-successful-session-count and total-failure-session-count): a connection's
// handshake, or the policy failure that kept a host from being tried (a bogus TLSA lookup,
// a fetch of the MTA-STS policy that failed). Domains without a policy are not reported.
//
// DomainReport, Encode() and Decode() are sans-I/O. Reports is shared by the shards (a mutex)
// and writes the files on a thread of its own, every flush_interval and when it stops; it reads
// the day's files back when it starts, so a restart goes on counting.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include "core/clock.h"
#include "core/tls/dane.h"
#include "core/tls/tls.h"
#include "delivery/mta_sts.h"

namespace spate::delivery::tlsrpt {

enum class PolicyType : uint8_t { kSts, kTlsa };  // RFC 8460 §4.4 "policy-type"

// RFC 8460 §4.3: why a session failed.
enum class ResultType : uint8_t {
  kStarttlsNotSupported,     // §4.3.1
  kCertificateHostMismatch,  // §4.3.1
  kCertificateExpired,       // §4.3.1
  kCertificateNotTrusted,    // §4.3.1
  kValidationFailure,        // §4.3.1: any other failure to establish TLS under the policy
  kTlsaInvalid,              // §4.3.2.1
  kDnssecInvalid,            // §4.3.2.1
  kStsPolicyFetchError,      // §4.3.2.2
  kStsPolicyInvalid,         // §4.3.2.2
  kStsWebpkiInvalid,         // §4.3.2.2
};
inline constexpr int kResultTypeCount = 10;
const char* ResultTypeName(ResultType type);  // "certificate-expired", ...
std::optional<ResultType> ResultTypeFromName(std::string_view name);
// A certificate check's finding as a result type (validation-failure when none is named).
ResultType FromCertProblem(tls::TlsSession::CertProblem problem);

// One line of "failure-details" (§4.4), without its count.
struct Failure {
  ResultType type = ResultType::kValidationFailure;
  std::string sending_ip;    // the address spate connected from; "" when none was made
  std::string receiving_mx;  // the MX host's name
  std::string receiving_ip;  // its address; "" when none was made
  std::string detail;        // "additional-information": what spate saw, short

  auto operator<=>(const Failure&) const = default;
};

struct PolicyReport {
  PolicyType type = PolicyType::kSts;
  std::vector<std::string> policy_string;  // §4.4: the policy's lines, or the TLSA records
  std::vector<std::string> mx_host;        // §4.4: the MTA-STS mx patterns, or the TLSA's host
  uint64_t successes = 0;
  uint64_t failures = 0;
  std::map<Failure, uint64_t> details;  // at most kMaxDetails; failures counts every one

  bool operator==(const PolicyReport&) const = default;
};
inline constexpr size_t kMaxDetails = 100;

// One policy domain's report for one UTC day. Policies by key: "sts", or "tlsa <mx host>"
// (a TLSA RRset belongs to one MX host).
struct DomainReport {
  std::string domain;
  int64_t day = 0;  // days since 1970-01-01, UTC
  std::map<std::string, PolicyReport> policies;

  bool operator==(const DomainReport&) const = default;
};

// §4.4's policy-string and mx-host: an MTA-STS policy's lines (RFC 8461 §3.2) and its mx
// patterns; a host's TLSA records in presentation form ("3 1 1 <hex>") and the host.
void DescribeSts(const sts::Policy& policy, PolicyReport* report);
void DescribeTlsa(std::string_view host, const std::vector<tls::Tlsa>* records,
                  PolicyReport* report);

// The IP address of `addr` alone ("192.0.2.1", "2001:db8::1"): sending-mta-ip and
// receiving-ip. "" for anything but IPv4 and IPv6.
std::string IpOf(const sockaddr_storage& addr);

struct Meta {
  std::string organization;  // "organization-name"
  std::string contact;       // "contact-info"
  std::string node;          // in the report-id, so that two nodes' reports differ
};

// RFC 8460 §4.4's JSON: organization-name, date-range (the whole day), contact-info,
// report-id, and one entry per policy with its summary and failure details.
std::string Encode(const DomainReport& report, const Meta& meta);
// Reads back what Encode() wrote (the day from its date-range). nullopt, and *error, for
// anything else.
std::optional<DomainReport> Decode(std::string_view json, std::string* error);
// "2026-12-01" for a day number; and back (nullopt for anything else).
std::string DayName(int64_t day);
std::optional<int64_t> DayFromName(std::string_view name);

class Reports {
 public:
  struct Options {
    std::string directory;
    Meta meta;
    Seconds flush_interval{60};
    unsigned keep_days = 30;         // day directories older than this are removed
    std::function<int64_t()> today;  // the UTC day now; unset: the system clock's (tests set it)
  };
  // Fills in a new policy's policy_string and mx_host; called once per policy per day.
  using Describe = std::function<void(PolicyReport*)>;

  explicit Reports(Options options);
  ~Reports();  // writes what is pending and stops its thread
  Reports(const Reports&) = delete;
  Reports& operator=(const Reports&) = delete;

  // Reads today's files (a restart goes on counting), then writes on a thread every
  // flush_interval. Without Start(), Flush() alone writes (the tests).
  void Start();

  // What a shard saw. `key`: "" for MTA-STS; the MX host for DANE. Any thread.
  void Success(std::string_view domain, PolicyType type, std::string_view key,
               const Describe& describe);
  void Fail(std::string_view domain, PolicyType type, std::string_view key,
            const Describe& describe, Failure failure);

  // Writes the changed domains' files of the current day, and of a day that has ended (then
  // forgets it); removes day directories past keep_days. The files written.
  size_t Flush();
  // Reads the files of today back (at start).
  size_t Load();
  // The day's report of `domain`, as it stands (for tests and the admin API).
  std::optional<DomainReport> Get(std::string_view domain) const;

 private:
  PolicyReport& Entry(std::string_view domain, PolicyType type, std::string_view key,
                      const Describe& describe);
  int64_t Today() const;
  void Roll(int64_t today);
  size_t Write(const std::vector<DomainReport>& reports) const;
  void Prune(int64_t today);

  Options options_;
  mutable std::mutex mu_;
  int64_t day_ = 0;
  std::map<std::string, DomainReport, std::less<>> today_;
  std::set<std::string> dirty_;      // today's reports changed since the last Flush()
  std::vector<DomainReport> ended_;  // of a day that has ended, not written yet
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace spate::delivery::tlsrpt
