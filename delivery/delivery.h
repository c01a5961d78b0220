// delivery/delivery.h
//
// Delivery is the outbound side of one shard: a queue per destination domain that this shard
// owns (OwnerOf(domain)), a pool of reused SMTP client connections per destination, and the
// outcome of every recipient:
//   2xx        delivered: the recipient leaves the spool;
//   4xx, I/O   deferred: retried after a backoff (retry_base doubling up to retry_max, with
//              jitter); the new attempt time is written to the spool;
//   5xx        failed: recorded and removed (DSNs come with the bounce work).
//
// Routing: a static route per domain from the config, else the smarthost; without either the
// recipients are deferred with "no route" (MX lookup is not built yet: this is its seam).
//
// Pool invariants, per destination: open connections <= max_connections; every open
// connection is connecting, busy with one transaction, or idle (on the idle list, with an idle
// timer); a connection sends at most max_messages_per_connection messages, then QUITs.
// Bodies: a fresh job carries its body (moved from the submission path); retries and recovered
// jobs load it from the spool's reader thread before they join the ready queue.
// Threading: lives on its shard; Enqueue() only there (other shards Post() to it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/shard.h"
#include "core/stats.h"
#include "queue/spool.h"

namespace spate::delivery {

struct Recipient {
  uint32_t index = 0;  // in the message's envelope (the spool's key)
  std::string address;
  uint16_t attempts = 0;
};

// The recipients of one message for one destination domain.
struct Job {
  queue::MessageId id = 0;
  std::string mail_from;
  std::string domain;  // lower case
  bool body_8bit = false;
  bool smtputf8 = false;  // RFC 6531: must go out with SMTPUTF8
  uint64_t body_size = 0;
  std::vector<Recipient> recipients;
  std::optional<std::string> body;  // absent until loaded
  int64_t due_ms = 0;               // unix ms; 0: now
};

class Delivery : public Service {
 public:
  Delivery(Shard& shard, const Config& config, queue::Spool& spool, ShardStats& stats);
  ~Delivery() override;

  // A job for a domain this shard owns. Loads the body when absent, waits until due_ms.
  void Enqueue(Job&& job);

  void Shutdown() noexcept override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Splits a message's recipients by destination domain (lower-cased), in first-seen order.
std::vector<Job> SplitByDomain(queue::MessageId id, const std::string& mail_from,
                               const std::vector<Recipient>& recipients, bool body_8bit,
                               bool smtputf8, uint64_t body_size, std::optional<std::string> body);

}  // namespace spate::delivery
