#include "delivery/stats.h"

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
