// core/server/admission.h
//
// Who may connect and who may try AUTH again: the tables every shard's submission server shares
// (core/server/submission.h), and the key a client is counted under in them.
//  - ClientConnections: open connections per client, for [server] max_connections_per_client.
//  - AuthFailures: failed AUTH per client within [auth] failure_window, for [auth] max_failures.
// SO_REUSEPORT spreads one client's connections over the shards by source port, so a table per
// shard would let a client have up to shards times either limit: these are shared, and locked on
// the cold path only (accept and close; an AUTH beginning and its verdict).
// A client is its IPv4 address or its IPv6 /64 (ClientKey()).
// Threading: the tables are any thread (each has its own mutex); the helpers are pure. Nothing
// here blocks but on those mutexes.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include <sys/socket.h>

namespace spate::server {

// A peer address as the session wants it for Received: (RFC 5321 §4.1.3): "192.0.2.1" or
// "IPv6:2001:db8::1". An IPv4-mapped IPv6 address is shown as IPv4; another family "unknown".
std::string ClientAddress(const sockaddr_storage& peer);

// The key a client is counted under, for AUTH failures and connection limits: the IPv4
// address, or the /64 of an IPv6 address ("2001:db8::/64"; one IPv6 host usually has a whole
// /64 to pick addresses from).
std::string ClientKey(const sockaddr_storage& peer);

// Open submission connections per client, shared by every shard's server so that [server]
// max_connections_per_client holds exactly whichever shards the kernel picks. Used at accept and
// close only (the cold path), so one mutex is enough. Only clients with a connection open have
// an entry: its size is bounded by the connections themselves.
// Threading: any thread.
class ClientConnections {
 public:
  explicit ClientConnections(unsigned max_per_client) : max_per_client_(max_per_client) {}

  // Counts one more connection of `client`; false, counting nothing, when it already has
  // max_per_client (0: no limit).
  bool TryAdd(const std::string& client);
  // Each successful TryAdd() is matched by one Remove().
  void Remove(const std::string& client);

 private:
  const unsigned max_per_client_;
  std::mutex mu_;
  std::unordered_map<std::string, unsigned> open_;  // guarded by mu_
};

// Failed AUTH per client (IPv4 address or IPv6 /64), shared by every shard's server so that
// [auth] max_failures holds in total whichever shards the kernel picks. Used when an AUTH
// begins (Blocked) and when its verdict arrives (RecordFailure) only, the cold path, so one
// mutex is enough. A client's failures are forgotten `window` after its last one. The table
// holds at most `max_entries`; past that, expired entries are dropped and, if that is not
// enough, an arbitrary one (an attacker with many addresses only makes it forget some).
// Attempts already being verified when a client reaches the limit still complete (at most one
// per open connection of that client); each then closes its connection too.
// Threading: any thread.
class AuthFailures {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kDefaultMaxEntries = 65536;

  AuthFailures(unsigned max_failures, Clock::duration window,
               size_t max_entries = kDefaultMaxEntries);

  // True when `client` has reached max_failures within the window and may not try again yet.
  bool Blocked(const std::string& client, Clock::time_point now);
  // Counts one failure of `client`; true when it has now reached max_failures.
  bool RecordFailure(const std::string& client, Clock::time_point now);
  size_t size();

 private:
  struct Entry {
    unsigned count = 0;
    Clock::time_point expires{};
  };
  const unsigned max_failures_;
  const Clock::duration window_;
  const size_t max_entries_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> failures_;  // guarded by mu_
};

}  // namespace spate::server
