// delivery/pool.h
//
// A Destination is one domain's outbound side on the shard that owns it: its route, its ready
// queue and its pool of reused SMTP connections.
//
// Ready queue: jobs that are due wait in `pending_` without a body or in `ready_` with one.
// Bodies are loaded from the spool only once the pool has a connection ready for transactions
// (greeting and EHLO done), one for every fourth such connection and one more (at most
// Options::max_loaded_bodies, loaded or being loaded), so a destination that is down, or a deep
// backlog, holds envelopes only.
//
// Pool invariants: open connections <= max_connections; each open connection is connecting,
// busy with one transaction, or idle (on idle_, with an idle timer); a connection carries at most
// max_messages_per_connection messages, then QUITs. After a failed connection attempt no new one
// is opened for a short hold (a refusing host is not hammered); when no connection of the pool
// works, everything waiting is deferred at once.
//
// Outcomes go to the Engine (delivery.cc), which owns the spool, the scheduler and the backoff.
// Threading: lives on its shard.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "core/reactor.h"
#include "core/smtp/reply.h"
#include "delivery/job.h"
#include "delivery/options.h"
#include "delivery/routing.h"
#include "delivery/stats.h"

namespace spate::delivery {

class Destination;
class ClientConnection;

// What a destination needs from the engine of its shard.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual Reactor& reactor() = 0;
  virtual const Options& options() const = 0;
  virtual Routing& routing() = 0;
  virtual bool shutting_down() const = 0;
  // The outcome of recipient `i` of `job`; a 4xx appends it to `deferred`.
  virtual void Record(Destination& dest, const Job& job, size_t i, const smtp::Reply& reply,
                      std::vector<Recipient>* deferred) = 0;
  // The transaction is over: `deferred` (may be empty) are tried again later.
  virtual void Reschedule(Job&& job, std::vector<Recipient>&& deferred) = 0;
  // Reads job.message's body, then gives the job back with dest.OnBodyLoaded() (the destination
  // stays while a load is out: it is not idle).
  virtual void LoadBody(Destination& dest, Job&& job) = 0;
};

class Destination {
 public:
  Destination(Engine& engine, std::string domain, DomainStats& stats);
  ~Destination();  // precondition: no connection open
  Destination(const Destination&) = delete;
  Destination& operator=(const Destination&) = delete;

  // A job that is due.
  void Add(Job&& job);
  void OnBodyLoaded(Job&& job);
  // A load failed: the job goes back to the engine, counted as not loading.
  void OnBodyLost();

  // Nothing queued, loading or connected, no timer: the engine may forget it.
  bool idle() const;
  // Shutdown: drops the queues (they stay in the spool) and aborts the connections.
  void Shutdown();

  const std::string& domain() const { return domain_; }
  DomainStats& stats() { return stats_; }
  size_t queued_jobs() const { return pending_.size() + ready_.size() + loading_; }
  size_t loaded_bodies() const { return ready_.size() + loading_; }
  size_t open_connections() const { return open_.size(); }
  size_t idle_connections() const { return idle_.size(); }

  // For the engine's sweep of idle destinations.
  Reactor::Clock::time_point idle_since{};

 private:
  friend class ClientConnection;
  enum class RouteState : uint8_t { kUnknown, kResolving, kResolved };

  void Queue(Job&& job);
  void Pump();
  void OnRouted(RouteRef route);
  void DeferWaiting(const smtp::Reply& why);
  void OnIdle(ClientConnection* conn);
  void OnConnectionGone(ClientConnection* conn, bool ever_ready, const smtp::Reply& why);

  Engine& engine_;
  std::string domain_;
  DomainStats& stats_;
  RouteState route_state_ = RouteState::kUnknown;
  RouteRef route_;
  std::deque<Job> pending_;  // due, body not loaded
  std::deque<Job> ready_;    // due, body loaded
  unsigned loading_ = 0;     // bodies being read for this destination
  std::vector<ClientConnection*> open_;
  std::vector<ClientConnection*> idle_;
  unsigned connecting_ = 0;  // open connections not yet ready for a transaction
  // Failover (RFC 5321 §5.1): each of the route's addresses is held on its own after a failed
  // attempt (refused, timed out, a 421 or 5xx greeting, a 4xx to EHLO); a new connection takes
  // the first address in the route's order that is not held, so one attempt goes on to the next
  // address and the next MX. hold_until_ is when the first held one is free again, once every
  // one is.
  std::vector<Reactor::Clock::time_point> host_hold_;  // by index in route_->hosts
  uint64_t route_generation_ = 0;                      // a connection's index is of this route
  Reactor::Clock::time_point hold_until_{};
  Reactor::TimerId hold_timer_;

 public:
  // The index of the first address not held now, or -1 when every one is (then hold_until_).
  int PickHost();
  void HoldHost(uint64_t generation, size_t index, const smtp::Reply& why);
};

}  // namespace spate::delivery
