#include "delivery/stats.h"

#include <algorithm>

namespace spate::delivery {

DomainStats& Stats::Table::For(std::string_view domain, size_t max) {
  if (auto it = index.find(domain); it != index.end())
    return *it->second;
  std::string key(domain);
  if (index.size() >= max) {
    key = "other";
    // Overflow domains are not remembered one by one: that index would be the unbounded
    // thing this bound exists to prevent.
    if (auto it = index.find(key); it != index.end())
      return *it->second;
  }
  DomainStats* entry;
  {
    std::lock_guard lock(mu);
    entry = &entries.emplace_back();
    entry->domain = key;
  }
  index.emplace(key, entry);
  return *entry;
}

void Stats::Table::ForEach(const std::function<void(const DomainStats&)>& fn) const {
  std::lock_guard lock(mu);
  for (const DomainStats& d : entries)
    fn(d);
}

void QueueAges::Add(std::string_view domain, int64_t received_ms, int64_t n) {
  if (received_ms <= 0 || n == 0)
    return;
  const int64_t minute = received_ms / 60000;
  Stripe& s = stripes_[std::hash<std::string_view>{}(domain) % kStripes];
  std::lock_guard lock(s.mu);
  auto it = s.domains.find(domain);
  if (it == s.domains.end() && n < 0)
    it = s.domains.find(std::string_view("other"));  // it joined past the bound
  if (it == s.domains.end()) {
    if (n < 0)
      return;
    std::string key(domain);
    if (domains_.load(std::memory_order_relaxed) >= max_domains_)
      key = "other";
    it = s.domains.find(key);
    if (it == s.domains.end()) {
      it = s.domains.emplace(std::move(key), std::map<int64_t, Minute>{}).first;
      domains_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  std::map<int64_t, Minute>& minutes = it->second;
  auto m = minutes.find(minute);
  if (m == minutes.end()) {
    if (n < 0)
      return;
    m = minutes.emplace(minute, Minute{0, received_ms}).first;
  }
  m->second.count += n;
  if (n > 0)
    m->second.first_ms = std::min(m->second.first_ms, received_ms);
  if (m->second.count <= 0)
    minutes.erase(m);
  // An empty domain stays (its entry is the bound's to count, as the labels are).
}

void QueueAges::ForEachOldest(const std::function<void(const std::string&, int64_t)>& fn) const {
  for (const Stripe& s : stripes_) {
    std::lock_guard lock(s.mu);
    for (const auto& [domain, minutes] : s.domains) {
      if (!minutes.empty())
        fn(domain, minutes.begin()->second.first_ms);
    }
  }
}

RuleStats& Stats::ForRule(std::string_view site, std::string_view rule) {
  std::pair<std::string, std::string> key{std::string(site), std::string(rule)};
  if (auto it = rule_index_.find(key); it != rule_index_.end())
    return *it->second;
  if (rule_index_.size() >= max_domains_)
    key.first = "other";
  if (auto it = rule_index_.find(key); it != rule_index_.end())
    return *it->second;
  RuleStats* entry;
  {
    std::lock_guard lock(rules_mu_);
    entry = &rules_.emplace_back();
    entry->site = key.first;
    entry->rule = key.second;
  }
  rule_index_.emplace(std::move(key), entry);
  return *entry;
}

void Stats::ForEachRule(const std::function<void(const RuleStats&)>& fn) const {
  std::lock_guard lock(rules_mu_);
  for (const RuleStats& r : rules_)
    fn(r);
}

void Stats::CountTls(const std::string& version, const std::string& cipher) {
  std::lock_guard lock(tls_mu_);
  ++tls_[{version, cipher}];  // bounded: BoringSSL has a few versions and ciphers
}

void Stats::ForEachTls(
    const std::function<void(const std::string&, const std::string&, uint64_t)>& fn) const {
  std::lock_guard lock(tls_mu_);
  for (const auto& [key, n] : tls_)
    fn(key.first, key.second, n);
}

}  // namespace spate::delivery
