// delivery/pool.h
//
// A Site is the outbound side of one or more destination domains on the shard that owns it: a
// ready queue and a pool of reused SMTP connections. Domains whose MX host sets are equal, and
// whose TLS policy is the same, share one site (MX rollup, as KumoMTA's sites): one queue, one
// pool, one set of limits. The policy is decided per domain before the rollup, so a domain's
// requirement never applies to its MX siblings, nor theirs to it. A domain with a static route
// (or the smarthost) is a site of its own, named by the domain.
//
// Ready queue: jobs that are due wait in `pending_` without a body or in `ready_` with one.
// Bodies are loaded from the spool only once the pool has a connection ready for transactions
// (greeting, EHLO and STARTTLS done), one for every fourth such connection and one more (at most
// Options::max_loaded_bodies, loaded or being loaded), so a site that is down, or a deep
// backlog, holds envelopes only. A fresh job keeps the body it came with while the shard's body
// budget (Options::max_body_bytes, for all its sites) has room.
//
// Shaping (issue 11, delivery/shaping.h): a site runs with SiteLimits, [delivery]'s settings
// under the shaping layers of the domain that made it (default < provider < domain), moved by
// its automation rules (delivery/adaptive.h) while its server pushes back:
//  - connection_limit connections open at once, at most max_connection_rate new ones;
//  - max_deliveries_per_connection messages per connection, then QUIT;
//  - max_recipients_per_batch recipients per transaction;
//  - max_message_rate transactions started (GCRA, delivery/throttle.h), checked when a job
//    would go to a connection: a connection waits idle for its turn;
//  - a provider's provider_connection_limit and provider_max_message_rate, over every site of
//    the provider on every shard (ProviderLimits, atomics);
//  - idle_timeout; retry_interval, max_retry_interval and max_age (delivery.cc's backoff).
// Suspended, the site opens nothing and closes its idle connections; its mail waits queued.
// Bouncing, what it holds and gets fails. A 421 (RFC 5321 §3.8, in any phase: the session
// closes) holds the whole site off for kPushbackHold.
//
// Ready queue order: MT-PRIORITY (delivery/ready_queue.h), highest first, with a share for the
// lowest so that it never starves.
//
// Pool invariants: open connections <= connection_limit; each open connection is connecting,
// busy with one transaction, or idle (on idle_, with an idle timer); a connection carries at most
// max_deliveries_per_connection messages, then QUITs. After a failed connection attempt no new
// one is opened to that address for a short hold (a refusing host is not hammered); when no
// address of the route works, everything waiting is deferred at once.
//
// Outbound STARTTLS (RFC 3207) by the site's TlsMode: the session asks for it after EHLO, the
// connection runs the handshake through core/tls and the session says EHLO again inside it.
//
// Outcomes go to the Engine (delivery.cc), which owns the spool, the scheduler and the backoff.
// Threading: lives on its shard.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/reactor.h"
#include "core/smtp/reply.h"
#include "core/tls/tls.h"
#include "delivery/adaptive.h"
#include "delivery/cluster.h"
#include "delivery/dsn.h"
#include "delivery/job.h"
#include "delivery/options.h"
#include "delivery/ready_queue.h"
#include "delivery/routing.h"
#include "delivery/shaping.h"
#include "delivery/stats.h"
#include "delivery/throttle.h"
#include "delivery/tlsrpt.h"

namespace spate::delivery {

class Site;
class ClientConnection;

// The server a connection talks to, for the log line and the accounting records.
struct Peer {
  std::string name;         // the MX host's name; "" for a configured route
  std::string address;      // "192.0.2.1:25"
  std::string tls_version;  // "" in the clear
  std::string tls_cipher;
  std::string log;    // " mx=HOST[ADDRESS]:PORT tls=VERSION/CIPHER" (or "tls=none")
  bool dane = false;  // the peer was authenticated by DANE (RFC 7672)
};

// What one transaction's recipients came to: gathered by Engine::Record() for each recipient,
// acted on by Engine::Reschedule() at its end. One per transaction, held by whoever runs it (a
// connection, or a site deferring what waits): transactions of several connections overlap.
struct Outcomes {
  std::vector<Recipient> deferred;  // tried again later
  // Refused with 452 4.5.3 "too many recipients" (RFC 5321 §4.5.3.1.10): sent again at once
  // in the next transaction when this one took some, else deferred with `resend_reply`.
  std::vector<Recipient> resend;
  size_t accepted = 0;
  // The site that ran the transaction (its retry settings); null for one decided before any.
  Site* site = nullptr;
  smtp::Reply resend_reply;
  Site* resend_site = nullptr;
  Peer resend_peer;
  // The server took the DSN parameters (it offered DSN): notices of success and delay are
  // its to send from here on (RFC 3461 §6.2).
  bool peer_dsn = false;
  // Recipients whose sender gets a DSN: failed for good (they leave the spool once their DSN
  // is stored), relayed (NOTIFY=SUCCESS to a server without DSN) or delayed (NOTIFY=DELAY).
  struct Bounced {
    Recipient recipient;
    smtp::Reply reply;
    bool expired = false;
    std::string remote;  // the host that answered, "" if none did
    dsn::Action action = dsn::Action::kFailed;
  };
  std::vector<Bounced> bounced;
};

// What a destination needs from the engine of its shard.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual Reactor& reactor() = 0;
  virtual const Options& options() const = 0;
  virtual Stats& stats() = 0;
  // The client context for STARTTLS (trust store loaded); null: no TLS outbound.
  virtual const tls::TlsContext* tls_context() const = 0;
  // TLSRPT (RFC 8460): where sessions under a destination's TLS policy are counted; null: off.
  virtual tlsrpt::Reports* tls_reports() = 0;
  // [cluster]: the fleet's shared limits, this shard's (null: this node alone).
  virtual Cluster* cluster() = 0;
  virtual bool shutting_down() const = 0;
  // The outcome of recipient `i` of `job`, gathered in `outcomes` (a 4xx in its deferred).
  // `site` is null for an outcome decided before any site (a route failure); `peer` is the
  // server that answered (null: none did).
  virtual void Record(Site* site, const Job& job, size_t i, const smtp::Reply& reply,
                      Outcomes* outcomes, const Peer* peer = nullptr) = 0;
  // The transaction is over: its deferred recipients (maybe none) are tried again later.
  virtual void Reschedule(Job&& job, Outcomes&& outcomes) = 0;
  // Reads job.message's body (or takes the one another job of the message holds: LoadedBody),
  // then gives the job back with site.OnBodyLoaded(), always later from the loop, never inside
  // the call (the site is in its Pump()); the site stays while a load is out: it is not idle.
  // While shutting down the job is dropped instead (the spool still has it).
  virtual void LoadBody(Site& site, Job&& job) = 0;
  // An opportunistic handshake with the site failed: it goes in plaintext for a while.
  // The shard's budget for bodies held in ready queues (Options::max_body_bytes): Hold says
  // whether `bytes` more fit (and takes them when they do, or always with `force`).
  virtual bool HoldBody(size_t bytes, bool force = false) = 0;
  virtual void ReleaseBody(size_t bytes) = 0;
  virtual bool TlsBroken(const std::string& site) = 0;
  virtual void MarkTlsBroken(const std::string& site) = 0;
  // The provider-wide limits' state, shared by every shard.
  virtual ProviderLimits& provider_limits() = 0;
  // `job` goes into a transaction of `site`: counted in flight until Reschedule().
  virtual void Submitted(Site& site, Job& job) = 0;
  // An automation rule of `site` fired, recovers or ended (`reply`: what fired it, else
  // null): logged and recorded.
  virtual void RecordAutomation(Site& site, const Automation& rule, AutomationState::Event event,
                                const smtp::Reply* reply,
                                std::chrono::steady_clock::time_point until) = 0;
};

// How a site is shaped, from the shaping file, for the domain whose job made the site.
struct SitePolicy {
  std::string domain;    // the domain whose job made the site (resolved again on a reload)
  ShapingValues values;  // default < provider < domain
  std::string provider;  // its provider's name; "" for none
  // A site of its own domain (a static route, the smarthost, or a domain with a shaping table
  // of its own): its name is the domain's.
  bool own_domain = false;
};

class Site {
 public:
  // A 421 holds the whole site off this long (every address: the provider is saying so).
  static constexpr std::chrono::seconds kPushbackHold{5};

  // `name` is the site's key (delivery.cc); `route` its first route; `tls` its mode.
  Site(Engine& engine, std::string name, RouteRef route, TlsMode tls, SitePolicy policy);
  ~Site();  // precondition: no connection open
  Site(const Site&) = delete;
  Site& operator=(const Site&) = delete;

  // A job that is due, for one of the site's domains, with the route that domain resolved to
  // now: when its addresses differ from the site's (a TTL ran out, the DNS changed), the new
  // route replaces the old one for the connections to come.
  void Add(Job&& job, const RouteRef& route);
  void OnBodyLoaded(Job&& job);
  // A load failed: the job goes back to the engine, counted as not loading.
  void OnBodyLost();
  // A reload: the new shaping for this site (the rules that stay keep their state).
  void SetPolicy(SitePolicy policy);

  // Nothing queued, loading or connected, no timer: the engine may forget it.
  bool idle() const;
  // Shutdown: drops the queues (they stay in the spool) and aborts the connections.
  void Shutdown();
  // Takes out of the queues every job `take` says yes to (an operator's suspension or bounce).
  std::vector<Job> TakeIf(const std::function<bool(const Job&)>& take);

  const std::string& name() const { return name_; }
  TlsMode tls() const { return tls_; }
  DomainStats& stats() { return stats_; }
  // The domain's entry when the site is a domain of its own (a static route); else null.
  DomainStats* own_domain_stats() { return domain_stats_; }
  const SiteLimits& limits() const { return limits_; }
  const SitePolicy& policy() const { return policy_; }
  const RouteRef& route() const { return route_; }
  bool suspended() const { return automation_.suspended(); }
  // A server of this site refused commands pipelined behind an end of data (Haraka does): its
  // new connections wait for each end-of-data reply (no wasted round trip on each).
  bool pipeline_next_refused() const { return pipeline_next_refused_; }
  void NotePipelineNextRefused(const std::string& peer);
  bool has_rules() const { return !automation_.rules().empty(); }
  // The Bounce rule in force (null: none) and the 5xx it fails mail with.
  const Automation* bouncing() const { return automation_.bouncing(); }
  const smtp::Reply& bounce_reply() const { return bounce_reply_; }
  size_t queued_jobs() const { return pending_.size() + ready_.size() + loading_; }
  size_t loaded_bodies() const { return ready_.size() + loading_; }
  size_t open_connections() const { return open_.size(); }
  size_t idle_connections() const { return idle_.size(); }

  // For the engine's sweep of idle sites.
  Reactor::Clock::time_point idle_since{};

 private:
  friend class ClientConnection;

  void SetRoute(RouteRef route);
  void Queue(Job&& job);
  // The queued-by-priority gauges: `sign` +1 as `job` joins a queue, -1 as it leaves.
  void CountQueued(const Job& job, int sign);
  Job PopPending();
  // ready_ with the shard's body budget kept (a job in ready_ has its body).
  void PushReady(Job&& job, bool force);
  Job PopReady();
  void Pump();
  void DeferWaiting(const smtp::Reply& why);
  // Fails everything waiting with the Bounce rule's reply.
  void BounceWaiting();
  // A reply from the site's server (not 2xx): its automation rules look at it.
  void SawReply(const smtp::Reply& reply);
  void OnAutomationEvents(const std::vector<AutomationState::Event>& events,
                          const smtp::Reply* reply);
  // limits_ (and the throttles, and the metrics) from the automation state now.
  void UpdateLimits();
  // Zero when a transaction may start now (its cell taken, of the site's rate and of the
  // provider's); else how long until one may.
  Reactor::Clock::duration TakeMessageSlot(Reactor::Clock::time_point now);
  // [cluster]: one cell of the fleet's rate `kind` ("msg", "conn") for this site, asked of
  // Redis ahead of use: zero when one is taken now; else how long until it may be asked again
  // (an answer wakes the site sooner).
  struct SharedCell {
    bool asking = false;
    bool granted = false;
    Reactor::Clock::time_point retry_at{};
  };
  Reactor::Clock::duration TakeShared(SharedCell& cell, const std::string& key,
                                      Reactor::Clock::duration interval,
                                      Reactor::Clock::time_point now);
  // [cluster]: a lease on one of the fleet's `limit` connections of `key` (the site's, the
  // provider's), asked once at a time; `ready` holds it when granted.
  struct SharedLease {
    uint64_t ready = 0;
    bool asking = false;
    Reactor::Clock::time_point retry_at{};
  };
  // Zero when `lease` holds one now; else when to look again (an answer wakes the site).
  Reactor::Clock::duration TakeLease(SharedLease& lease, const std::string& key, unsigned limit,
                                     Reactor::Clock::time_point now);
  // The provider's limits on this node: the fleet's divided by the nodes while Redis is out.
  unsigned NodeShare() const;
  // Pump() again at `at` (the earliest of what was asked).
  void WakeAt(Reactor::Clock::time_point at);
  void QuitIdle();
  void OnIdle(ClientConnection* conn);
  // The next ready job to `conn`, if one waits and the message rate allows: true if it went.
  bool SubmitReady(ClientConnection* conn);
  // `conn` sent an end of data and may take one more job behind it (pipeline_next): a ready
  // job if one waits and the message rate allows, else nothing (OnIdle follows the reply).
  void OnReadyForNext(ClientConnection* conn);
  void OnConnectionGone(ClientConnection* conn, bool ever_ready, bool tls_failed,
                        const smtp::Reply& why);
  void UpdateConnections();
  // The index of the first address not held now, or -1 when every one is (then hold_until_).
  int PickHost();
  void HoldHost(uint64_t generation, size_t index, const smtp::Reply& why);

  Engine& engine_;
  bool pipeline_next_refused_ = false;
  std::string name_;
  TlsMode tls_;
  DomainStats& stats_;
  DomainStats* domain_stats_;  // the domain's own, when it is a site of its own; else null
  RouteRef route_;
  SitePolicy policy_;
  AutomationState automation_;
  SiteLimits limits_;
  std::optional<Gcra> message_rate_;
  std::optional<Gcra> connection_rate_;
  ProviderLimits::Entry* provider_ = nullptr;  // null: no provider-wide limit
  Reactor::Clock::duration provider_interval_{};
  Reactor::Clock::time_point pushback_until_{};  // a 421's hold
  smtp::Reply bounce_reply_;                     // the reply that fired a Bounce rule
  ReadyQueue pending_;                           // due, body not loaded
  ReadyQueue ready_;                             // due, body loaded
  unsigned loading_ = 0;                         // bodies being read for this site
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
  Reactor::TimerId wake_timer_;  // a hold, a throttle, a rule's next change
  // [cluster] (cluster.h): the fleet's cells and leases, and the cluster's generation the
  // limits were computed for (a change of mode or node count computes them again).
  SharedCell message_cell_;
  SharedCell connection_cell_;
  SharedCell provider_cell_;
  SharedLease site_lease_;
  SharedLease provider_lease_;
  uint64_t cluster_generation_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for Redis's answers
};

}  // namespace spate::delivery
