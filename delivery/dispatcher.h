// delivery/dispatcher.h
//
// Dispatcher hands every accepted or recovered message to delivery: it makes the message's
// shared envelope (job.h) and its shared body once, splits the recipients by destination domain
// (lower-cased, in first-seen order), and posts each shard the jobs of the domains it owns
// (OwnerOf(domain)): one post per shard per message, straight from the calling thread (the
// spool's commit thread for new mail, the main thread for recovery), never through another
// shard.
// Threading: Attach() before any Dispatch*(); then Dispatch*() from any thread (the table of
// shards is read-only by then).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/reactor.h"
#include "core/shard.h"
#include "delivery/delivery.h"
#include "delivery/job.h"
#include "queue/spool.h"

namespace spate::delivery {

// It is also where a shard hands a job to the shard that owns the job's site (SiteOwners).
class Dispatcher final : public SiteOwners {
 public:
  // `postmaster` takes every recipient without a domain (the server already stores
  // "<postmaster>" as it, so only a spool written before that rule holds one): no job is ever
  // made for a recipient that cannot be routed.
  explicit Dispatcher(ShardId shards, std::string postmaster = {});

  // Shard `id`'s engine, reached through `reactor` (which runs it).
  void Attach(ShardId id, Reactor* reactor, Delivery* delivery);
  // Where the Reception records of accepted messages go (null: none); called on the thread
  // that dispatches (the spool's commit thread).
  void SetAccounting(Accounting* accounting) { accounting_ = accounting; }

  // A message just made durable: its body is taken (moved into the shared buffer).
  void DispatchAccepted(queue::MessageId id, queue::NewMessage&& message);
  // A message found in the spool at start-up: every pending recipient keeps its attempts and
  // retry time; its body is read from the spool when a connection is ready for it.
  void DispatchRecovered(queue::RecoveredMessage&& message);

  ShardId shards() const override { return static_cast<ShardId>(targets_.size()); }
  void PostToSite(ShardId owner, std::string site, TlsMode tls, bool own_domain, RouteRef route,
                  Job&& job) override;

 private:
  struct Target {
    Reactor* reactor = nullptr;
    Delivery* delivery = nullptr;
  };
  struct DomainJob {
    std::string domain;
    Job job;
  };

  // Groups `message`'s recipients (with `state` (attempts, delay notice) and `due` per
  // position, may be empty) by domain and posts them.
  void Split(MessageRef message, Body body, const std::vector<Recipient>& state,
             const std::vector<int64_t>& due_ms);

  std::string_view Routable(std::string_view address) const;

  std::vector<Target> targets_;
  std::string postmaster_;
  Accounting* accounting_ = nullptr;
};

}  // namespace spate::delivery
