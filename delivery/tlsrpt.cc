#include "delivery/tlsrpt.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "core/log.h"

#include <nlohmann/json.hpp>

namespace spate::delivery::tlsrpt {
namespace {

using nlohmann::json;

constexpr const char* kResultNames[kResultTypeCount] = {
    "starttls-not-supported",  "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure",        "tlsa-invalid",
    "dnssec-invalid",          "sts-policy-fetch-error",    "sts-policy-invalid",
    "sts-webpki-invalid",
};

int64_t SystemToday() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::seconds>(now).count() / 86400;
}

std::string PolicyKey(PolicyType type, std::string_view key) {
  return type == PolicyType::kSts ? "sts" : "tlsa " + std::string(key);
}

// A domain name as a file name: what routing hands over is lower-case letters, digits, '-',
// '.', '_'; anything else (never expected) is written as '_', and no name starts with '.'.
std::string FileName(std::string_view domain) {
  std::string out;
  for (char c : domain) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || out.front() == '.')
    out.insert(out.begin(), '_');
  return out + ".json";
}

}  // namespace

const char* ResultTypeName(ResultType type) {
  return kResultNames[static_cast<int>(type)];
}

std::optional<ResultType> ResultTypeFromName(std::string_view name) {
  for (int i = 0; i < kResultTypeCount; ++i) {
    if (name == kResultNames[i])
      return static_cast<ResultType>(i);
  }
  return std::nullopt;
}

ResultType FromCertProblem(tls::TlsSession::CertProblem problem) {
  using P = tls::TlsSession::CertProblem;
  switch (problem) {
    case P::kHostMismatch:
      return ResultType::kCertificateHostMismatch;
    case P::kExpired:
      return ResultType::kCertificateExpired;
    case P::kNotTrusted:
      return ResultType::kCertificateNotTrusted;
    case P::kNone:
    case P::kOther:
      break;
  }
  return ResultType::kValidationFailure;
}

void DescribeSts(const sts::Policy& policy, PolicyReport* report) {
  report->policy_string = {"version: STSv1", "mode: " + std::string(sts::ModeName(policy.mode))};
  for (const std::string& mx : policy.mx)
    report->policy_string.push_back("mx: " + mx);
  report->policy_string.push_back("max_age: " + std::to_string(policy.max_age_s));
  report->mx_host = policy.mx;
}

void DescribeTlsa(std::string_view host, const std::vector<tls::Tlsa>* records,
                  PolicyReport* report) {
  static constexpr char kHex[] = "0123456789abcdef";
  report->policy_string.clear();
  for (const tls::Tlsa& t : records != nullptr ? *records : std::vector<tls::Tlsa>{}) {
    std::string line = std::to_string(t.usage) + " " + std::to_string(t.selector) + " " +
                       std::to_string(t.matching_type) + " ";
    for (unsigned char c : t.data) {
      line.push_back(kHex[c >> 4]);
      line.push_back(kHex[c & 0xf]);
    }
    report->policy_string.push_back(std::move(line));
  }
  report->mx_host = {std::string(host)};
}

std::string IpOf(const sockaddr_storage& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, buf, sizeof buf);
  else if (addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, buf, sizeof buf);
  return buf;
}

std::string DayName(int64_t day) {
  const time_t t = static_cast<time_t>(day * 86400);
  tm utc{};
  gmtime_r(&t, &utc);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday);
  return buf;
}

std::optional<int64_t> DayFromName(std::string_view name) {
  if (name.size() != 10 || name[4] != '-' || name[7] != '-')
    return std::nullopt;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (name[i] < '0' || name[i] > '9')
      return std::nullopt;
  }
  tm utc{};
  utc.tm_year = std::stoi(std::string(name.substr(0, 4))) - 1900;
  utc.tm_mon = std::stoi(std::string(name.substr(5, 2))) - 1;
  utc.tm_mday = std::stoi(std::string(name.substr(8, 2)));
  if (utc.tm_mon > 11 || utc.tm_mday < 1 || utc.tm_mday > 31)
    return std::nullopt;
  const int64_t day = static_cast<int64_t>(timegm(&utc)) / 86400;
  if (DayName(day) != name)  // 2026-02-30 and the like
    return std::nullopt;
  return day;
}

std::string Encode(const DomainReport& report, const Meta& meta) {
  const std::string date = DayName(report.day);
  json policies = json::array();
  for (const auto& [key, p] : report.policies) {
    json policy = {{"policy-type", p.type == PolicyType::kSts ? "sts" : "tlsa"},
                   {"policy-string", p.policy_string},
                   {"policy-domain", report.domain}};
    if (!p.mx_host.empty())
      policy["mx-host"] = p.mx_host;
    json entry = {{"policy", std::move(policy)},
                  {"summary",
                   {{"total-successful-session-count", p.successes},
                    {"total-failure-session-count", p.failures}}}};
    json details = json::array();
    for (const auto& [f, count] : p.details) {
      json d = {{"result-type", ResultTypeName(f.type)}, {"failed-session-count", count}};
      if (!f.sending_ip.empty())
        d["sending-mta-ip"] = f.sending_ip;
      if (!f.receiving_mx.empty())
        d["receiving-mx-hostname"] = f.receiving_mx;
      if (!f.receiving_ip.empty())
        d["receiving-ip"] = f.receiving_ip;
      if (!f.detail.empty())
        d["additional-information"] = f.detail;
      details.push_back(std::move(d));
    }
    if (!details.empty())
      entry["failure-details"] = std::move(details);
    policies.push_back(std::move(entry));
  }
  json doc = {
      {"organization-name", meta.organization},
      {"date-range",
       {{"start-datetime", date + "T00:00:00Z"}, {"end-datetime", date + "T23:59:59Z"}}},
      {"contact-info", meta.contact},
      {"report-id", date + "T00:00:00Z_" + report.domain + "@" + meta.node},
      {"policies", std::move(policies)},
  };
  // Invalid UTF-8 (a server's text in a detail) is replaced, never a throw.
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::optional<DomainReport> Decode(std::string_view text, std::string* error) {
  json doc = json::parse(text, nullptr, false);
  auto fail = [&](const std::string& why) -> std::optional<DomainReport> {
    *error = why;
    return std::nullopt;
  };
  if (doc.is_discarded() || !doc.is_object())
    return fail("not a JSON object");
  DomainReport r;
  const json* range = doc.contains("date-range") ? &doc["date-range"] : nullptr;
  if (range == nullptr || !range->is_object() || !range->contains("start-datetime") ||
      !(*range)["start-datetime"].is_string())
    return fail("no date-range");
  const std::string start = (*range)["start-datetime"].get<std::string>();
  std::optional<int64_t> day = DayFromName(std::string_view(start).substr(0, 10));
  if (!day || start.size() != 20 || start.substr(10) != "T00:00:00Z")
    return fail("date-range: not a whole UTC day");
  r.day = *day;
  if (!doc.contains("policies") || !doc["policies"].is_array())
    return fail("no policies");
  for (const json& entry : doc["policies"]) {
    if (!entry.is_object() || !entry.contains("policy") || !entry["policy"].is_object() ||
        !entry.contains("summary") || !entry["summary"].is_object())
      return fail("a policy without policy or summary");
    const json& policy = entry["policy"];
    const json& summary = entry["summary"];
    auto str = [](const json& o, const char* k) -> std::optional<std::string> {
      if (!o.contains(k) || !o[k].is_string())
        return std::nullopt;
      return o[k].get<std::string>();
    };
    auto count = [](const json& o, const char* k) -> std::optional<uint64_t> {
      if (!o.contains(k) || !o[k].is_number_unsigned())
        return std::nullopt;
      return o[k].get<uint64_t>();
    };
    auto strings = [](const json& o, const char* k, std::vector<std::string>* out) {
      if (!o.contains(k))
        return true;
      if (!o[k].is_array())
        return false;
      for (const json& s : o[k]) {
        if (!s.is_string())
          return false;
        out->push_back(s.get<std::string>());
      }
      return true;
    };
    PolicyReport p;
    const std::optional<std::string> type = str(policy, "policy-type");
    const std::optional<std::string> domain = str(policy, "policy-domain");
    if (!type || (*type != "sts" && *type != "tlsa") || !domain)
      return fail("a policy without a known policy-type or a policy-domain");
    if (!r.domain.empty() && r.domain != *domain)
      return fail("policies of two domains");
    r.domain = *domain;
    p.type = *type == "sts" ? PolicyType::kSts : PolicyType::kTlsa;
    if (!strings(policy, "policy-string", &p.policy_string) ||
        !strings(policy, "mx-host", &p.mx_host))
      return fail("policy-string or mx-host not strings");
    const std::optional<uint64_t> ok = count(summary, "total-successful-session-count");
    const std::optional<uint64_t> failed = count(summary, "total-failure-session-count");
    if (!ok || !failed)
      return fail("a summary without its counts");
    p.successes = *ok;
    p.failures = *failed;
    if (entry.contains("failure-details")) {
      if (!entry["failure-details"].is_array())
        return fail("failure-details not an array");
      for (const json& d : entry["failure-details"]) {
        if (!d.is_object())
          return fail("a failure detail not an object");
        const std::optional<std::string> name = str(d, "result-type");
        const std::optional<ResultType> rt = name ? ResultTypeFromName(*name) : std::nullopt;
        const std::optional<uint64_t> n = count(d, "failed-session-count");
        if (!rt || !n)
          return fail("a failure detail without a known result-type or its count");
        Failure f;
        f.type = *rt;
        f.sending_ip = str(d, "sending-mta-ip").value_or("");
        f.receiving_mx = str(d, "receiving-mx-hostname").value_or("");
        f.receiving_ip = str(d, "receiving-ip").value_or("");
        f.detail = str(d, "additional-information").value_or("");
        if (p.details.size() < kMaxDetails)
          p.details[f] += *n;
      }
    }
    const std::string key =
        PolicyKey(p.type, p.type == PolicyType::kTlsa && !p.mx_host.empty() ? p.mx_host[0] : "");
    r.policies[key] = std::move(p);
  }
  if (r.domain.empty())
    return fail("no policy");
  return r;
}

Reports::Reports(Options options) : options_(std::move(options)), day_(Today()) {}

int64_t Reports::Today() const {
  return options_.today ? options_.today() : SystemToday();
}

Reports::~Reports() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable())
    writer_.join();
  Flush();
}

void Reports::Start() {
  const size_t n = Load();
  if (n > 0)
    SPATE_LOG(kInfo, "tlsrpt: %zu reports of today read back from %s", n,
              options_.directory.c_str());
  writer_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, options_.flush_interval, [this] { return stop_; });
      if (stop_)
        break;
      lock.unlock();
      Flush();
      lock.lock();
    }
  });
}

PolicyReport& Reports::Entry(std::string_view domain, PolicyType type, std::string_view key,
                             const Describe& describe) {
  Roll(Today());
  auto it = today_.find(domain);
  if (it == today_.end()) {
    it = today_.emplace(std::string(domain), DomainReport{}).first;
    it->second.domain = std::string(domain);
    it->second.day = day_;
  }
  dirty_.insert(it->first);
  auto [p, fresh] = it->second.policies.try_emplace(PolicyKey(type, key));
  if (fresh) {
    p->second.type = type;
    if (describe)
      describe(&p->second);
  }
  return p->second;
}

void Reports::Success(std::string_view domain, PolicyType type, std::string_view key,
                      const Describe& describe) {
  std::lock_guard lock(mu_);
  ++Entry(domain, type, key, describe).successes;
}

void Reports::Fail(std::string_view domain, PolicyType type, std::string_view key,
                   const Describe& describe, Failure failure) {
  std::lock_guard lock(mu_);
  PolicyReport& p = Entry(domain, type, key, describe);
  ++p.failures;
  if (failure.detail.size() > 200)
    failure.detail.resize(200);
  if (auto it = p.details.find(failure); it != p.details.end())
    ++it->second;
  else if (p.details.size() < kMaxDetails)
    p.details.emplace(std::move(failure), 1);
}

void Reports::Roll(int64_t today) {
  // Under mu_. A new day: the old day's reports are written as they stand by the next
  // Flush(), then forgotten here.
  if (today == day_)
    return;
  for (const std::string& domain : dirty_)
    ended_.push_back(std::move(today_[domain]));
  today_.clear();
  dirty_.clear();
  day_ = today;
}

size_t Reports::Write(const std::vector<DomainReport>& reports) const {
  namespace fs = std::filesystem;
  size_t written = 0;
  for (const DomainReport& r : reports) {
    const fs::path dir = fs::path(options_.directory) / DayName(r.day);
    std::error_code ec;
    fs::create_directories(dir, ec);
    const fs::path path = dir / FileName(r.domain);
    const fs::path tmp = path.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << Encode(r, options_.meta);
      if (!out) {
        SPATE_LOG(kWarn, "tlsrpt: cannot write %s", tmp.c_str());
        continue;
      }
    }
    fs::rename(tmp, path, ec);  // a reader sees the old file or the new one, whole
    if (ec) {
      SPATE_LOG(kWarn, "tlsrpt: cannot rename %s: %s", tmp.c_str(), ec.message().c_str());
      continue;
    }
    ++written;
  }
  return written;
}

size_t Reports::Flush() {
  const int64_t today = Today();
  std::vector<DomainReport> out;
  {
    std::lock_guard lock(mu_);
    Roll(today);
    out = std::move(ended_);
    ended_.clear();
    for (const std::string& domain : dirty_)
      out.push_back(today_.at(domain));
    dirty_.clear();
  }
  const size_t written = Write(out);  // off the lock: the shards never wait on the disk
  Prune(today);
  return written;
}

void Reports::Prune(int64_t today) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::directory_iterator it(options_.directory, ec), end; !ec && it != end; it.increment(ec)) {
    const std::optional<int64_t> day = DayFromName(it->path().filename().string());
    if (day && *day + options_.keep_days < today)
      fs::remove_all(it->path(), ec);
  }
}

size_t Reports::Load() {
  namespace fs = std::filesystem;
  std::lock_guard lock(mu_);
  const fs::path dir = fs::path(options_.directory) / DayName(day_);
  std::error_code ec;
  size_t n = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".json")
      continue;
    std::ifstream in(it->path());
    std::stringstream text;
    text << in.rdbuf();
    std::string error;
    std::optional<DomainReport> r = Decode(text.str(), &error);
    if (!r || r->day != day_) {
      SPATE_LOG(kWarn, "tlsrpt: %s is not a report of today (%s); its counts start again",
                it->path().c_str(), r ? "another day" : error.c_str());
      continue;
    }
    today_[r->domain] = std::move(*r);
    ++n;
  }
  return n;
}

std::optional<DomainReport> Reports::Get(std::string_view domain) const {
  std::lock_guard lock(mu_);
  auto it = today_.find(domain);
  if (it == today_.end())
    return std::nullopt;
  return it->second;
}

}  // namespace spate::delivery::tlsrpt
