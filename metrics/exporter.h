// metrics/exporter.h
//
// Exporter serves Prometheus' /metrics (prometheus-cpp's pull exposer, its own HTTP threads).
// At scrape time it reads every shard's ShardStats (core/stats.h) and sums them; the shards
// never take a lock or touch a prometheus-cpp object on their hot path.
//
// Families (see README.md for the full list): spate_messages_received_total,
// spate_deliveries_total{domain,outcome}, spate_queue_recipients{domain},
// spate_outbound_connections{domain}, spate_spool_* and the submission counters.
// Threading: created and destroyed on the main thread; Collect() runs on the exposer's thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/result.h"
#include "core/stats.h"

namespace spate::metrics {

// Spool figures, read through a callback so that metrics/ does not depend on queue/.
struct SpoolSample {
  uint64_t batches = 0;
  uint64_t accepted = 0;
  double commit_seconds = 0;
  uint64_t pending_messages = 0;
};

class Exporter {
 public:
  // Binds `listen` ("host:port"; port 0 picks one) and starts serving /metrics.
  static Result<std::unique_ptr<Exporter>> Start(const std::string& listen,
                                                 std::vector<const ShardStats*> shards,
                                                 std::function<SpoolSample()> spool,
                                                 std::string* error);
  ~Exporter();

  int port() const;

 private:
  struct Impl;
  explicit Exporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spate::metrics
