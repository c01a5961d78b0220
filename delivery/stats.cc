#include "delivery/stats.h"

namespace spate::delivery {

DomainStats& Stats::ForDomain(std::string_view domain) {
  if (auto it = index_.find(std::string(domain)); it != index_.end())
    return *it->second;
  std::string key(domain);
  if (index_.size() >= max_domains_) {
    key = "other";
    // Overflow domains are not remembered one by one: that index would be the unbounded
    // thing this bound exists to prevent.
    if (auto it = index_.find(key); it != index_.end())
      return *it->second;
  }
  DomainStats* entry;
  {
    std::lock_guard lock(mu_);
    entry = &entries_.emplace_back();
    entry->domain = key;
  }
  index_.emplace(key, entry);
  return *entry;
}

void Stats::ForEachDomain(const std::function<void(const DomainStats&)>& fn) const {
  std::lock_guard lock(mu_);
  for (const DomainStats& d : entries_)
    fn(d);
}

}  // namespace spate::delivery
