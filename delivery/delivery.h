// delivery/delivery.h
//
// Delivery is the outbound engine of one shard, for the destination domains that shard owns
// (OwnerOf(domain)). It ties the parts together:
//   scheduler.h  jobs not yet due (deferred, recovered with a retry time), in time buckets;
//   pool.h       per destination: the ready queue, body loading, the connection pool;
//   routing.h    where a domain's mail goes (static routes and smarthost; MX plugs in there);
//   spool_port.h outcomes and body reads, to the spool.
// Outcomes of each recipient:
//   2xx        delivered: the recipient leaves the spool;
//   4xx, I/O   deferred: retried after a backoff (retry_base doubling up to retry_max, +-20%
//              jitter); the new attempt time is written to the spool; the body is let go;
//   5xx        failed: recorded and removed (DSNs come with the bounce work).
// Destinations with nothing queued and no connection are forgotten after idle_timeout, so memory
// stays flat in the number of domains seen.
// Threading: lives on its shard; Enqueue() only there (the Dispatcher posts to it).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/reactor.h"
#include "core/shard.h"
#include "delivery/job.h"
#include "delivery/options.h"
#include "delivery/routing.h"
#include "delivery/spool_port.h"
#include "delivery/stats.h"

namespace spate::delivery {

class Delivery : public Service {
 public:
  // Borrows everything for its life. `seed` seeds the backoff jitter.
  Delivery(Reactor& reactor, const Options& options, SpoolPort& spool, Routing& routing,
           Stats& stats, uint64_t seed = 0);
  ~Delivery() override;

  // A job for `domain` (lower case), owned by this shard: held until job.due_ms, then delivered.
  void Enqueue(const std::string& domain, Job&& job);

  void Shutdown() noexcept override;

  // For tests and introspection.
  size_t destinations() const;
  size_t scheduled() const;
  // -1 when the destination is not known (never seen, or forgotten).
  long open_connections(const std::string& domain) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace spate::delivery
