// metrics/exporter.h
//
// Exporter serves Prometheus' /metrics (prometheus-cpp's pull exposer, its own HTTP threads).
// At scrape time it asks for a Sample: the daemon fills it from every shard's counters (the
// submission server's, delivery's per domain) and the spool's figures, and the exporter sums
// and renders it. The shards never take a lock or touch a prometheus-cpp object on their hot
// path, and this module depends on no other module: it knows only the Sample.
//
// Families (see README.md for the full list): spate_messages_received_total,
// spate_deliveries_total{domain,outcome}, spate_queue_recipients{domain},
// spate_outbound_connections{domain}, spate_spool_* and the submission counters.
// Threading: created and destroyed on the main thread; Collect() runs on the exposer's thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/result.h"

namespace spate::metrics {

struct SpoolSample {
  uint64_t batches = 0;
  uint64_t accepted = 0;
  double commit_seconds = 0;
  uint64_t pending_messages = 0;
  uint64_t memtable_bytes = 0;
  uint64_t block_cache_bytes = 0;
  // Health (queue/spool.h): its name ("ok", "low_space", "failed", "stalled"), the free space
  // of the spool's file system, and what it refused or had to write again.
  std::string health = "ok";
  uint64_t free_bytes = 0;
  uint64_t refused = 0;
  uint64_t write_errors = 0;
  uint64_t outcomes_retried = 0;
  // The body log (queue/body_log.h): its files and their size; messages removed at start-up
  // because their body was not in it.
  uint64_t body_log_files = 0;
  uint64_t body_log_bytes = 0;
  uint64_t lost_bodies = 0;
};

// One destination domain's figures on one shard ("other" may come from several: summed).
struct DomainSample {
  std::string domain;
  uint64_t delivered = 0;
  uint64_t deferred = 0;
  uint64_t failed = 0;
  int64_t queued = 0;
  int64_t connections = 0;
};

// DNS and MX routing, summed over the shards.
struct DnsSample {
  // lookups[type][status]: type 0 MX, 1 A, 2 AAAA, 3 TXT, 4 TLSA; status as dns::Status (ok,
  // nodata, nxdomain, servfail, timeout, bogus, error).
  uint64_t lookups[5][7] = {};
  uint64_t route_cache_hits = 0;
  uint64_t routes_resolved = 0;
  uint64_t routes_failed = 0;
};

// Outbound TLS, summed over the shards.
struct TlsSample {
  std::map<std::pair<std::string, std::string>, uint64_t> sessions;  // (version, cipher) -> n
  uint64_t failures = 0;     // handshakes that failed or timed out
  uint64_t fallbacks = 0;    // opportunistic sites sent in the clear after a failure
  uint64_t unavailable = 0;  // TLS required, not offered or refused: deferred
};

// A histogram summed over the shards: each bucket's own count (not cumulative), the last one
// +Inf; `bounds` the upper bounds of the others.
struct HistogramSample {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  uint64_t count = 0;
  double sum = 0;
  // Adds another shard's (the same bounds).
  void Add(const std::vector<double>& b, const std::vector<uint64_t>& c, uint64_t n, double s);
};

// One site's shaping now (issue 11): its limits in force, suspension, queue by priority.
struct SiteShapingSample {
  std::string site;
  int64_t connection_limit = 0;
  int64_t max_deliveries_per_connection = 0;
  int64_t max_recipients_per_batch = 0;
  double max_message_rate = 0;  // per second; 0: none
  double max_connection_rate = 0;
  int64_t suspended = 0;
  uint64_t suspensions = 0;
  int64_t pipeline_next_refused = 0;    // its server refused commands behind an end of data
  int64_t queued_by_priority[19] = {};  // index: MT-PRIORITY + 9
};

// One automation rule on one site.
struct RuleSample {
  std::string site;
  std::string rule;
  int64_t active = 0;
  uint64_t fired = 0;
};

// Everything one scrape shows, summed over the shards by whoever fills it.
struct Sample {
  uint64_t messages_received = 0;
  uint64_t recipients_received = 0;
  uint64_t connections_accepted = 0;
  uint64_t connections_refused = 0;
  uint64_t proxy_header_errors = 0;
  bool draining = false;  // spate ctl drain: no longer accepting
  // [cluster] (delivery/cluster.h), when configured: the shards by mode, the live nodes Redis
  // counts, the commands it did not answer.
  bool cluster = false;
  std::string cluster_fallback;  // "divided" or "held": the mode of a shard that lost Redis
  unsigned cluster_shards_shared = 0;
  unsigned cluster_shards_fallback = 0;
  unsigned cluster_nodes = 0;
  uint64_t cluster_redis_errors = 0;  // [server] proxy_protocol:
                                      // closed without a valid header
  int64_t inbound_connections = 0;
  uint64_t output_paused = 0;   // submission connections that stopped reading (backpressure)
  uint64_t commits_failed = 0;  // messages refused after their data: the spool could not take them
  uint64_t log_dropped = 0;     // log lines dropped: the log writer could not keep up
  uint64_t expired = 0;         // recipients that reached [delivery] max_age deferred
  uint64_t dsns = 0;            // delivery status notifications stored for senders
  uint64_t dsns_failed = 0;     // mail from <> that failed for good: dropped, never bounced
  // Failures for good by (destination domain, bounce class); outcomes by campaign (`domain`
  // is the campaign), both bounded like the domains.
  std::map<std::pair<std::string, std::string>, uint64_t> bounces;
  std::vector<DomainSample> campaigns;
  // Jobs routed by their destination's TLS policy: (domain, policy, result) -> n.
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> tls_policy;
  // Operators' controls in force, by (action, scope): "suspend"/"bounce", "domain"/"site"/
  // "campaign".
  std::map<std::pair<std::string, std::string>, double> admin_controls;
  // DKIM (issue 12): signatures made by (d= domain, algorithm); messages left unsigned for an
  // error (no From:, two of them).
  std::map<std::pair<std::string, std::string>, uint64_t> dkim_signed;
  uint64_t dkim_failures = 0;
  uint64_t suppressed = 0;           // RCPTs refused: the recipient is on the suppression list
  uint64_t suppression_entries = 0;  // addresses on the list
  // The accounting records writer ([log] records): lines written, dropped, failed writes.
  uint64_t records_written = 0;
  uint64_t records_dropped = 0;
  uint64_t records_write_errors = 0;
  unsigned shards = 0;
  std::vector<DomainSample> domains;
  std::vector<DomainSample> sites;  // `domain` is the site's name
  std::vector<SiteShapingSample> site_shaping;
  // Issue 13: deferrals by (domain, bounce class); accepted -> 2xx by domain; end of data ->
  // 250; per domain the acceptance time (unix ms) of the oldest queued recipient, and now.
  std::map<std::pair<std::string, std::string>, uint64_t> deferrals;
  std::map<std::string, HistogramSample> delivery_latency;
  HistogramSample accept_latency;
  std::map<std::string, int64_t> queue_oldest_ms;
  int64_t now_ms = 0;
  std::vector<RuleSample> rules;
  SpoolSample spool;
  TlsSample tls;
  DnsSample dns;
};

class Exporter {
 public:
  // Binds `listen` ("host:port"; port 0 picks one) and starts serving /metrics.
  // `sample` runs on the exposer's thread at every scrape.
  static Result<std::unique_ptr<Exporter>> Start(const std::string& listen,
                                                 std::function<Sample()> sample,
                                                 std::string* error);
  ~Exporter();

  int port() const;

 private:
  struct Impl;
  explicit Exporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace spate::metrics
