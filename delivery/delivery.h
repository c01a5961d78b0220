// delivery/delivery.h
//
// Delivery is the outbound engine of one shard, for the destination domains that shard owns
// (OwnerOf(domain)). It ties the parts together:
//   scheduler.h  jobs not yet due (deferred, recovered with a retry time), in time buckets;
//   routing.h    where a domain's mail goes (static routes, the smarthost, MX records);
//   pool.h       per site (the domains that share an MX host set and a TLS policy): the ready
//                queue, body loading, the connection pool;
//   spool_port.h outcomes and body reads, to the spool.
// Outcomes of each recipient:
//   2xx        delivered: the recipient leaves the spool;
//   4xx, I/O   deferred: retried after a backoff (retry_base doubling up to retry_max, +-20%
//              jitter); the new attempt time is written to the spool; the body is let go;
//   5xx        failed: recorded and removed (DSNs come with the bounce work).
// A job is routed on the shard that has it (the domain's owner, or wherever its retry came due):
// its domain's route (cached by the routing) names its site, and the site lives on the shard
// OwnerOf(site name), so a site's pool and limits are one for every domain of it, whichever shard
// owns each domain. A domain that is a site of its own is owned by the same shard as the domain:
// no hop. Sites with nothing queued and no connection are forgotten after idle_timeout, so
// memory stays flat in the number of domains seen.
// Threading: lives on its shard; Enqueue() and EnqueueForSite() only there (the Dispatcher
// posts to it).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/reactor.h"
#include "core/shard.h"
#include "delivery/controls.h"
#include "delivery/job.h"
#include "delivery/options.h"
#include "delivery/routing.h"
#include "delivery/shaping.h"
#include "delivery/spool_port.h"
#include "delivery/stats.h"
#include "delivery/throttle.h"

namespace spate::tls {
class TlsContext;
}  // namespace spate::tls

namespace spate::delivery {

class Accounting;
class Cluster;
namespace tlsrpt {
class Reports;
}

// Hands a routed job to the shard that owns its site (the Dispatcher, which knows every shard).
class SiteOwners {
 public:
  virtual ~SiteOwners() = default;
  virtual ShardId shards() const = 0;
  // Runs owner's Delivery::EnqueueForSite() on its reactor.
  virtual void PostToSite(ShardId owner, std::string site, TlsMode tls, bool own_domain,
                          RouteRef route, Job&& job) = 0;
};

class Delivery : public Service {
 public:
  // Borrows everything for its life. `seed` seeds the backoff jitter.
  Delivery(Reactor& reactor, const Options& options, SpoolPort& spool, Routing& routing,
           Stats& stats, uint64_t seed = 0);
  ~Delivery() override;

  // Before any job: the shards (null, or one shard: every site is local) and the client TLS
  // context for STARTTLS (null: none; "required" sites then defer). Both borrowed.
  void SetSiteOwners(SiteOwners* owners, ShardId self);
  void SetTlsContext(const tls::TlsContext* context);
  // Where every outcome's record goes (null: none); borrowed, called on this shard.
  void SetAccounting(Accounting* accounting);
  // Where TLS sessions under a destination's policy are counted (TLSRPT; null: nowhere).
  void SetTlsReports(tlsrpt::Reports* reports);
  // [cluster]: this shard's share of the fleet's limits in Redis (null: this node alone).
  void SetCluster(Cluster* cluster);

  // A job for `domain` (lower case), owned by this shard: held until job.due_ms, then delivered.
  void Enqueue(const std::string& domain, Job&& job);
  // A job routed on another shard to `site`, which this shard owns (`own_domain`: the site is
  // its domain's own, SitePolicy).
  void EnqueueForSite(std::string site, TlsMode tls, bool own_domain, RouteRef route, Job&& job);

  // The shaping file in force (null: none, [delivery] alone): set before any job, and again
  // on a reload (then every site here takes the new one). Shared with the other shards.
  void SetShaping(std::shared_ptr<const Shaping> shaping);
  // The provider-wide limits' state, shared by every shard (borrowed); unset: this engine's
  // own (one shard, tests).
  void SetProviderLimits(ProviderLimits* limits);
  // Where the queued recipients' acceptance times are kept for the oldest-age metric, shared
  // by the shards (borrowed; null: not kept).
  void SetQueueAges(QueueAges* ages);

  // Operators' suspensions and bounces (controls.h), shared by the shards (borrowed; null:
  // none). Set before any job.
  void SetControls(const Controls* controls);
  // After a control was set: what waits in this shard's site queues and a control matches is
  // held or bounced now, and so is every scheduled job a bounce matches. How many recipients
  // were bounced.
  size_t ApplyControls();
  // After a control was lifted: every job held by a suspension goes on at once (held again if
  // another still matches). How many jobs.
  size_t ReleaseHeld();

  // An operator's flush: every deferred job of `domain` (lower case; "" every domain) is tried
  // now instead of at its retry time. How many jobs.
  size_t Flush(std::string_view domain);

  void Shutdown() noexcept override;

  // For tests and introspection.
  size_t sites() const;
  size_t scheduled() const;
  // -1 when the site (a domain's own name, or an MX host set) is not known here.
  long open_connections(const std::string& site) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace spate::delivery
