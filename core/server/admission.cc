// core/server/admission.cc
//
// The admission tables and client keys (see admission.h for the contract).
#include "core/server/admission.h"

#include <algorithm>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "core/check.h"

namespace spate::server {

std::string ClientAddress(const sockaddr_storage& peer) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (peer.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, buf, sizeof buf);
    return buf;
  }
  if (peer.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      inet_ntop(AF_INET, a.s6_addr + 12, buf, sizeof buf);
      return buf;
    }
    inet_ntop(AF_INET6, &a, buf, sizeof buf);
    return std::string("IPv6:") + buf;
  }
  return "unknown";
}

std::string ClientKey(const sockaddr_storage& peer) {
  if (peer.ss_family == AF_INET6) {
    in6_addr a = reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr;
    if (!IN6_IS_ADDR_V4MAPPED(&a)) {
      std::memset(a.s6_addr + 8, 0, 8);
      char buf[INET6_ADDRSTRLEN] = {};
      inet_ntop(AF_INET6, &a, buf, sizeof buf);
      return std::string(buf) + "/64";
    }
  }
  return ClientAddress(peer);
}

bool ClientConnections::TryAdd(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  unsigned& open = open_[client];
  // Refused only with open > 0: an entry is never left at 0.
  if (max_per_client_ != 0 && open >= max_per_client_)
    return false;
  ++open;
  return true;
}

void ClientConnections::Remove(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(client);
  SPATE_CHECK(it != open_.end() && it->second > 0);
  if (--it->second == 0)
    open_.erase(it);
}

AuthFailures::AuthFailures(unsigned max_failures, Clock::duration window, size_t max_entries)
    : max_failures_(max_failures), window_(window), max_entries_(max_entries) {}

bool AuthFailures::Blocked(const std::string& client, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(client);
  if (it == failures_.end())
    return false;
  if (it->second.expires <= now) {
    failures_.erase(it);
    return false;
  }
  return it->second.count >= max_failures_;
}

bool AuthFailures::RecordFailure(const std::string& client, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failures_.size() >= max_entries_ && failures_.count(client) == 0) {
    std::erase_if(failures_, [now](const auto& e) { return e.second.expires <= now; });
    if (failures_.size() >= max_entries_)
      failures_.erase(failures_.begin());
  }
  Entry& f = failures_[client];
  if (f.expires <= now)
    f.count = 0;  // the earlier failures have aged out
  ++f.count;
  // Shards read their reactor's clock once per loop turn, so `now` may run a little behind
  // another shard's: the later expiry wins.
  f.expires = std::max(f.expires, now + window_);
  return f.count >= max_failures_;
}

size_t AuthFailures::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_.size();
}

}  // namespace spate::server
