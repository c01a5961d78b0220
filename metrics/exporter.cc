#include "metrics/exporter.h"

#include <algorithm>
#include <limits>
#include <map>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

namespace spate::metrics {

namespace {

prometheus::ClientMetric Value(prometheus::MetricType type, double v,
                               std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

// Prometheus' cumulative buckets from each bucket's own count.
prometheus::ClientMetric HistogramValue(const HistogramSample& h,
                                        std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    prometheus::ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < h.bounds.size() ? h.bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  return m;
}

class SampleCollector : public prometheus::Collectable {
 public:
  explicit SampleCollector(std::function<Sample()> sample) : sample_(std::move(sample)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    Sample sample = sample_();
    struct Sums {
      uint64_t delivered = 0, deferred = 0, failed = 0;
      int64_t queued = 0, connections = 0;
    };
    // Sorted: stable exposition order. A name may come from several shards ("other"; a
    // domain whose mail was recorded on the shards of its sites): summed.
    auto sum_up = [](const std::vector<DomainSample>& samples) {
      std::map<std::string, Sums> sums;
      for (const DomainSample& d : samples) {
        Sums& sum = sums[d.domain];
        sum.delivered += d.delivered;
        sum.deferred += d.deferred;
        sum.failed += d.failed;
        sum.queued += d.queued;
        sum.connections += d.connections;
      }
      return sums;
    };
    const std::map<std::string, Sums> domains = sum_up(sample.domains);
    const std::map<std::string, Sums> sites = sum_up(sample.sites);
    const uint64_t received = sample.messages_received;
    const uint64_t rcpts = sample.recipients_received;
    const uint64_t accepted_conns = sample.connections_accepted;
    const uint64_t refused_conns = sample.connections_refused;
    const int64_t inbound = sample.inbound_connections;
    std::vector<prometheus::MetricFamily> out;
    auto scalar = [&](const char* name, const char* help, MetricType type, double v) {
      auto f = Family(name, help, type);
      f.metric.push_back(Value(type, v));
      out.push_back(std::move(f));
    };
    // A counter family of two labels from a map keyed by their values.
    auto by_pair = [&](const char* name, const char* help, const char* first, const char* second,
                       const std::map<std::pair<std::string, std::string>, uint64_t>& counts) {
      auto f = Family(name, help, MetricType::Counter);
      for (const auto& [key, n] : counts) {
        f.metric.push_back(Value(MetricType::Counter, static_cast<double>(n),
                                 {{first, key.first}, {second, key.second}}));
      }
      out.push_back(std::move(f));
    };
    scalar("spate_messages_received_total",
           "Messages accepted on the submission port (durable, answered 250).", MetricType::Counter,
           static_cast<double>(received));
    scalar("spate_recipients_received_total", "Recipients of the accepted messages.",
           MetricType::Counter, static_cast<double>(rcpts));
    scalar("spate_connections_accepted_total", "Submission connections accepted.",
           MetricType::Counter, static_cast<double>(accepted_conns));
    scalar("spate_connections_refused_total",
           "Submission connections turned away at accept (over a connection limit).",
           MetricType::Counter, static_cast<double>(refused_conns));
    scalar("spate_proxy_header_errors_total",
           "Connections from [server] proxy_networks closed for want of a valid PROXY protocol "
           "header.",
           MetricType::Counter, static_cast<double>(sample.proxy_header_errors));
    scalar("spate_draining",
           "1 while the node drains (spate ctl drain): it accepts nothing new and delivers what "
           "it holds.",
           MetricType::Gauge, sample.draining ? 1.0 : 0.0);
    scalar("spate_inbound_connections", "Submission connections open now.", MetricType::Gauge,
           static_cast<double>(inbound));
    scalar("spate_commits_failed_total",
           "Messages refused after their data because the spool could not store them (451 "
           "4.3.0, or 452 4.3.1 for a full disk).",
           MetricType::Counter, static_cast<double>(sample.commits_failed));
    scalar("spate_log_lines_dropped_total",
           "Log lines dropped because the log writer could not keep up.", MetricType::Counter,
           static_cast<double>(sample.log_dropped));
    scalar("spate_connections_output_paused_total",
           "Times a submission connection stopped reading its client because the client was "
           "not reading its replies (more than 64 KiB queued).",
           MetricType::Counter, static_cast<double>(sample.output_paused));
    scalar("spate_expirations_total",
           "Recipients that reached [delivery] max_age still deferred, and failed (also in "
           "spate_deliveries_total{outcome=\"failed\"}).",
           MetricType::Counter, static_cast<double>(sample.expired));
    scalar("spate_dsns_sent_total",
           "Delivery status notifications (RFC 3464) stored to go back to senders.",
           MetricType::Counter, static_cast<double>(sample.dsns));
    scalar("spate_dsns_failed_total",
           "Mail from the null sender (our DSNs among it) that failed for good: dropped and "
           "logged, never bounced (RFC 3461 §6.1).",
           MetricType::Counter, static_cast<double>(sample.dsns_failed));
    scalar("spate_shards", "Reactor shards running.", MetricType::Gauge,
           static_cast<double>(sample.shards));

    // Per domain and per site: outcomes, and open connections (and, per domain, the queue).
    auto outcomes = [&](const std::map<std::string, Sums>& sums, const char* label,
                        const char* name, const char* help, const char* conns_name,
                        const char* conns_help, const char* queued_name, const char* queued_help) {
      auto deliveries = Family(name, help, MetricType::Counter);
      auto conns = Family(conns_name, conns_help, MetricType::Gauge);
      auto queued = Family(queued_name != nullptr ? queued_name : "",
                           queued_help != nullptr ? queued_help : "", MetricType::Gauge);
      for (const auto& [key, sum] : sums) {
        for (auto [outcome, v] :
             {std::pair{"delivered", sum.delivered}, std::pair{"deferred", sum.deferred},
              std::pair{"failed", sum.failed}}) {
          deliveries.metric.push_back(Value(MetricType::Counter, static_cast<double>(v),
                                            {{label, key}, {"outcome", outcome}}));
        }
        queued.metric.push_back(
            Value(MetricType::Gauge, static_cast<double>(sum.queued), {{label, key}}));
        conns.metric.push_back(
            Value(MetricType::Gauge, static_cast<double>(sum.connections), {{label, key}}));
      }
      out.push_back(std::move(deliveries));
      if (queued_name != nullptr)
        out.push_back(std::move(queued));
      out.push_back(std::move(conns));
    };
    outcomes(domains, "domain", "spate_deliveries_total",
             "Recipient delivery attempts by destination domain and outcome (delivered, "
             "deferred, failed).",
             "spate_outbound_connections", "Open delivery connections by destination domain.",
             "spate_queue_recipients",
             "Recipients in the queue by destination domain (waiting or in flight).");
    outcomes(sites, "site", "spate_site_deliveries_total",
             "Recipient delivery attempts by site (the domains sharing an MX host set and one "
             "connection pool) and outcome.",
             "spate_site_outbound_connections", "Open delivery connections by site.", nullptr,
             nullptr);

    {
      // Shaping per site: a site lives on one shard, so its figures come once (but for
      // "other", the sites past the bound: the largest limit, the summed queue).
      std::map<std::string, SiteShapingSample> shaping;
      for (const SiteShapingSample& s : sample.site_shaping) {
        SiteShapingSample& t = shaping[s.site];
        t.connection_limit = std::max(t.connection_limit, s.connection_limit);
        t.max_deliveries_per_connection =
            std::max(t.max_deliveries_per_connection, s.max_deliveries_per_connection);
        t.max_recipients_per_batch =
            std::max(t.max_recipients_per_batch, s.max_recipients_per_batch);
        t.max_message_rate = std::max(t.max_message_rate, s.max_message_rate);
        t.max_connection_rate = std::max(t.max_connection_rate, s.max_connection_rate);
        t.suspended += s.suspended;
        t.suspensions += s.suspensions;
        t.pipeline_next_refused = std::max(t.pipeline_next_refused, s.pipeline_next_refused);
        for (int p = 0; p < 19; ++p)
          t.queued_by_priority[p] += s.queued_by_priority[p];
      }
      auto per_site = [&](const char* name, const char* help, MetricType type, auto value) {
        auto f = Family(name, help, type);
        for (const auto& [site, s] : shaping) {
          if (s.connection_limit > 0)  // a site seen here, not only an outcome's entry
            f.metric.push_back(Value(type, static_cast<double>(value(s)), {{"site", site}}));
        }
        out.push_back(std::move(f));
      };
      per_site("spate_site_connection_limit",
               "Connections a site may have open now (shaping connection_limit, as automation "
               "rules move it).",
               MetricType::Gauge, [](const SiteShapingSample& s) { return s.connection_limit; });
      per_site("spate_site_max_message_rate",
               "Messages per second a site may start now (shaping max_message_rate); 0: none.",
               MetricType::Gauge, [](const SiteShapingSample& s) { return s.max_message_rate; });
      per_site("spate_site_max_connection_rate",
               "New connections per second a site may open now; 0: none.", MetricType::Gauge,
               [](const SiteShapingSample& s) { return s.max_connection_rate; });
      per_site("spate_site_max_deliveries_per_connection",
               "Messages a site's connection carries before QUIT.", MetricType::Gauge,
               [](const SiteShapingSample& s) { return s.max_deliveries_per_connection; });
      per_site("spate_site_max_recipients_per_batch", "Recipients per transaction of a site.",
               MetricType::Gauge,
               [](const SiteShapingSample& s) { return s.max_recipients_per_batch; });
      per_site("spate_site_suspended", "1 while a site is suspended by an automation rule.",
               MetricType::Gauge, [](const SiteShapingSample& s) { return s.suspended; });
      per_site("spate_site_suspensions_total", "Times a site was suspended by an automation rule.",
               MetricType::Counter, [](const SiteShapingSample& s) { return s.suspensions; });
      per_site("spate_site_pipeline_next_refused",
               "1 once a site's server refused commands pipelined behind an end of data (RFC "
               "2920 3.1): its transactions then wait for each end-of-data reply.",
               MetricType::Gauge,
               [](const SiteShapingSample& s) { return s.pipeline_next_refused; });
      auto queued = Family("spate_site_queued_recipients",
                           "Recipients waiting in a site's ready queue, by MT-PRIORITY (RFC "
                           "6710); priorities with none waiting are left out.",
                           MetricType::Gauge);
      for (const auto& [site, s] : shaping) {
        for (int p = 0; p < 19; ++p) {
          if (s.queued_by_priority[p] != 0 || (p == 9 && s.connection_limit > 0)) {
            queued.metric.push_back(Value(MetricType::Gauge,
                                          static_cast<double>(s.queued_by_priority[p]),
                                          {{"site", site}, {"priority", std::to_string(p - 9)}}));
          }
        }
      }
      out.push_back(std::move(queued));
      std::map<std::pair<std::string, std::string>, RuleSample> rules;
      for (const RuleSample& r : sample.rules) {
        RuleSample& t = rules[{r.site, r.rule}];
        t.active = std::max(t.active, r.active);
        t.fired += r.fired;
      }
      auto active = Family("spate_automation_active",
                           "1 while a shaping automation rule holds on a site (recovery "
                           "included), by site and rule (\"provider.NAME:LINE\").",
                           MetricType::Gauge);
      auto fired = Family("spate_automation_fired_total",
                          "Times a shaping automation rule fired on a site.", MetricType::Counter);
      for (const auto& [key, r] : rules) {
        active.metric.push_back(Value(MetricType::Gauge, static_cast<double>(r.active),
                                      {{"site", key.first}, {"rule", key.second}}));
        fired.metric.push_back(Value(MetricType::Counter, static_cast<double>(r.fired),
                                     {{"site", key.first}, {"rule", key.second}}));
      }
      out.push_back(std::move(active));
      out.push_back(std::move(fired));
    }

    {
      by_pair("spate_deferrals_total",
              "Recipients deferred (to be tried again), by destination domain and bounce class "
              "of the reply.",
              "domain", "class", sample.deferrals);
      auto latency = Family("spate_delivery_latency_seconds",
                            "From a message's acceptance to a recipient's 2xx, by destination "
                            "domain (retries included).",
                            MetricType::Histogram);
      for (const auto& [domain, h] : sample.delivery_latency)
        latency.metric.push_back(HistogramValue(h, {{"domain", domain}}));
      out.push_back(std::move(latency));
      auto accept = Family("spate_accept_latency_seconds",
                           "From the end of a message's data to its reply (the durable commit, "
                           "DKIM signing included).",
                           MetricType::Histogram);
      accept.metric.push_back(HistogramValue(sample.accept_latency, {}));
      out.push_back(std::move(accept));
      auto oldest = Family("spate_queue_oldest_age_seconds",
                           "Age of the oldest recipient queued (waiting or in flight) for a "
                           "destination domain, from its acceptance.",
                           MetricType::Gauge);
      for (const auto& [domain, ms] : sample.queue_oldest_ms) {
        oldest.metric.push_back(Value(
            MetricType::Gauge, std::max<double>(0, static_cast<double>(sample.now_ms - ms) / 1000),
            {{"domain", domain}}));
      }
      out.push_back(std::move(oldest));
    }

    {
      by_pair("spate_bounces_total",
              "Recipients that failed for good (expired included), by destination domain and "
              "bounce class (README.md, \"Bounce classes\").",
              "domain", "class", sample.bounces);
      std::map<std::string, Sums> campaigns;
      for (const DomainSample& c : sample.campaigns) {
        Sums& s = campaigns[c.domain];
        s.delivered += c.delivered;
        s.deferred += c.deferred;
        s.failed += c.failed;
        s.queued += c.queued;
      }
      auto campaign_queued =
          Family("spate_campaign_queued_recipients",
                 "Recipients queued (waiting or in flight) by campaign.", MetricType::Gauge);
      for (const auto& [key, sum] : campaigns) {
        campaign_queued.metric.push_back(
            Value(MetricType::Gauge, static_cast<double>(sum.queued), {{"campaign", key}}));
      }
      out.push_back(std::move(campaign_queued));
      auto tls_policy =
          Family("spate_tls_policy_total",
                 "Jobs routed by their destination's TLS policy (none, "
                 "mta-sts-testing, mta-sts-enforce) and result (ok; mismatch: no MX "
                 "host matches; tempfail: a TLS handshake it asked to verify failed).",
                 MetricType::Counter);
      for (const auto& [key, n] : sample.tls_policy) {
        tls_policy.metric.push_back(Value(MetricType::Counter, static_cast<double>(n),
                                          {{"domain", std::get<0>(key)},
                                           {"policy", std::get<1>(key)},
                                           {"result", std::get<2>(key)}}));
      }
      out.push_back(std::move(tls_policy));
      auto held = Family("spate_admin_controls",
                         "Operators' suspensions and bounces in force (spate ctl suspend, bounce), "
                         "by action and scope.",
                         MetricType::Gauge);
      for (const char* action : {"suspend", "bounce"}) {
        for (const char* scope : {"domain", "site", "campaign"}) {
          auto it = sample.admin_controls.find({action, scope});
          held.metric.push_back(Value(MetricType::Gauge,
                                      it == sample.admin_controls.end() ? 0.0 : it->second,
                                      {{"action", action}, {"scope", scope}}));
        }
      }
      out.push_back(std::move(held));
      if (sample.cluster) {
        auto mode = Family("spate_cluster_mode",
                           "Shards by how they apply the fleet's limits ([cluster]): shared in "
                           "Redis, or the fallback while it cannot be reached (divided: each "
                           "limit divided by the nodes; held: no delivery).",
                           MetricType::Gauge);
        for (const char* m : {"shared", "divided", "held"}) {
          const double n = std::string_view(m) == "shared" ? sample.cluster_shards_shared
                           : sample.cluster_fallback == m  ? sample.cluster_shards_fallback
                                                           : 0;
          mode.metric.push_back(Value(MetricType::Gauge, n, {{"mode", m}}));
        }
        out.push_back(std::move(mode));
        auto nodes = Family("spate_cluster_nodes", "Live nodes of the fleet, as Redis counts them.",
                            MetricType::Gauge);
        nodes.metric.push_back(Value(MetricType::Gauge, sample.cluster_nodes, {}));
        out.push_back(std::move(nodes));
        auto errors = Family("spate_cluster_redis_errors_total",
                             "Commands to Redis that were not answered (no connection, a late or "
                             "wrong reply).",
                             MetricType::Counter);
        errors.metric.push_back(
            Value(MetricType::Counter, static_cast<double>(sample.cluster_redis_errors), {}));
        out.push_back(std::move(errors));
      }
      auto by_campaign = Family("spate_campaign_deliveries_total",
                                "Recipient delivery attempts by campaign ([server] "
                                "campaign_header) and outcome.",
                                MetricType::Counter);
      for (const auto& [key, sum] : campaigns) {
        for (auto [outcome, v] :
             {std::pair{"delivered", sum.delivered}, std::pair{"deferred", sum.deferred},
              std::pair{"failed", sum.failed}}) {
          by_campaign.metric.push_back(Value(MetricType::Counter, static_cast<double>(v),
                                             {{"campaign", key}, {"outcome", outcome}}));
        }
      }
      out.push_back(std::move(by_campaign));
      by_pair("spate_dkim_signed_total",
              "DKIM signatures made, by signing domain (d=) and algorithm.", "domain", "algorithm",
              sample.dkim_signed);
      scalar("spate_dkim_failures_total",
             "Messages that went unsigned because they could not be signed (no From:, two).",
             MetricType::Counter, static_cast<double>(sample.dkim_failures));
      scalar("spate_suppressed_total",
             "Recipients refused at RCPT (550 5.1.1) because they are on the suppression list.",
             MetricType::Counter, static_cast<double>(sample.suppressed));
      scalar("spate_suppression_entries", "Addresses on the suppression list.", MetricType::Gauge,
             static_cast<double>(sample.suppression_entries));
      scalar("spate_records_written_total", "Accounting records written ([log] records).",
             MetricType::Counter, static_cast<double>(sample.records_written));
      scalar("spate_records_dropped_total",
             "Accounting records dropped because the disk could not keep up.", MetricType::Counter,
             static_cast<double>(sample.records_dropped));
      scalar("spate_records_write_errors_total",
             "Failed writes of the accounting records file (retried).", MetricType::Counter,
             static_cast<double>(sample.records_write_errors));
    }

    {
      by_pair("spate_outbound_tls_sessions_total",
              "Outbound STARTTLS handshakes done, by TLS version and cipher.", "version", "cipher",
              sample.tls.sessions);
      scalar("spate_outbound_tls_failures_total",
             "Outbound TLS handshakes that failed or timed out.", MetricType::Counter,
             static_cast<double>(sample.tls.failures));
      scalar("spate_outbound_tls_fallbacks_total",
             "Opportunistic sites sent in plaintext after a failed handshake.", MetricType::Counter,
             static_cast<double>(sample.tls.fallbacks));
      scalar("spate_outbound_tls_unavailable_total",
             "Connections closed unused: TLS required but not offered or refused by the server.",
             MetricType::Counter, static_cast<double>(sample.tls.unavailable));
    }

    {
      const SpoolSample& sp = sample.spool;
      scalar("spate_spool_commit_batches_total", "Synced spool write batches (group commits).",
             MetricType::Counter, static_cast<double>(sp.batches));
      scalar("spate_spool_messages_committed_total", "Messages made durable in the spool.",
             MetricType::Counter, static_cast<double>(sp.accepted));
      scalar("spate_spool_commit_seconds_total", "Time spent writing and syncing batches.",
             MetricType::Counter, sp.commit_seconds);
      scalar("spate_spool_messages", "Messages in the spool with recipients pending.",
             MetricType::Gauge, static_cast<double>(sp.pending_messages));
      scalar("spate_spool_memtable_bytes", "Memory of the spool's RocksDB memtables.",
             MetricType::Gauge, static_cast<double>(sp.memtable_bytes));
      scalar("spate_spool_block_cache_bytes", "Memory of the spool's RocksDB block cache.",
             MetricType::Gauge, static_cast<double>(sp.block_cache_bytes));
      auto state = Family("spate_spool_state",
                          "The spool's health: 1 for its state now (ok; low_space: under "
                          "min_free_space, new mail 452 4.3.1; failed: a write or RocksDB "
                          "failed, 451 4.3.0; stalled: RocksDB stopped writes), 0 for the others.",
                          MetricType::Gauge);
      for (const char* s : {"ok", "low_space", "failed", "stalled"}) {
        state.metric.push_back(
            Value(MetricType::Gauge, sp.health == s ? 1.0 : 0.0, {{"state", s}}));
      }
      out.push_back(std::move(state));
      scalar("spate_spool_free_bytes", "Free space of the spool's file system (last check).",
             MetricType::Gauge, static_cast<double>(sp.free_bytes));
      scalar("spate_spool_refused_total",
             "Messages the spool refused to store for its health (no space, failed writes).",
             MetricType::Counter, static_cast<double>(sp.refused));
      scalar("spate_spool_write_errors_total", "Spool batches whose write failed.",
             MetricType::Counter, static_cast<double>(sp.write_errors));
      scalar("spate_spool_outcomes_retried_total",
             "Delivery outcomes written again after a failed batch (none is dropped).",
             MetricType::Counter, static_cast<double>(sp.outcomes_retried));
      scalar("spate_spool_body_log_files", "Files of the spool's body log (large bodies).",
             MetricType::Gauge, static_cast<double>(sp.body_log_files));
      scalar("spate_spool_body_log_bytes", "Size of the spool's body log files together.",
             MetricType::Gauge, static_cast<double>(sp.body_log_bytes));
      scalar("spate_spool_lost_bodies_total",
             "Messages removed at start-up: their body was not in the body log.",
             MetricType::Counter, static_cast<double>(sp.lost_bodies));
    }
    {
      const DnsSample& d = sample.dns;
      auto lookups = Family("spate_dns_lookups_total",
                            "DNS lookups (MX routing, MTA-STS, DANE) by record type and result.",
                            MetricType::Counter);
      static constexpr const char* kTypes[] = {"MX", "A", "AAAA", "TXT", "TLSA"};
      static constexpr const char* kResults[] = {"ok",      "nodata", "nxdomain", "servfail",
                                                 "timeout", "bogus",  "error"};
      for (int t = 0; t < 5; ++t) {
        for (int r = 0; r < 7; ++r) {
          lookups.metric.push_back(Value(MetricType::Counter, static_cast<double>(d.lookups[t][r]),
                                         {{"type", kTypes[t]}, {"result", kResults[r]}}));
        }
      }
      out.push_back(std::move(lookups));
      scalar("spate_mx_route_cache_hits_total",
             "Jobs routed from the MX route cache, without a lookup.", MetricType::Counter,
             static_cast<double>(d.route_cache_hits));
      scalar("spate_mx_routes_resolved_total", "MX routes found by DNS lookups.",
             MetricType::Counter, static_cast<double>(d.routes_resolved));
      scalar("spate_mx_routes_failed_total",
             "Domains DNS gave no route for (null MX, NXDOMAIN, lookup failures...).",
             MetricType::Counter, static_cast<double>(d.routes_failed));
    }
    return out;
  }

 private:
  std::function<Sample()> sample_;
};

}  // namespace

struct Exporter::Impl {
  // The exposer goes first (its HTTP threads are joined), then the collector a scrape may be
  // running: the exposer only holds it weakly, from a library TSan cannot see into.
  ~Impl() { exposer.reset(); }
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<SampleCollector> collector;
};

Exporter::Exporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Exporter::~Exporter() = default;

Result<std::unique_ptr<Exporter>> Exporter::Start(const std::string& listen,
                                                  std::function<Sample()> sample,
                                                  std::string* error) {
  auto impl = std::make_unique<Impl>();
  // civetweb throws when it cannot bind: the one exception boundary, converted here.
  try {
    impl->exposer = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    *error = "metrics: cannot listen on " + listen + ": " + e.what();
    return Unexpected{std::make_error_code(std::errc::address_in_use)};
  }
  impl->collector = std::make_shared<SampleCollector>(std::move(sample));
  impl->exposer->RegisterCollectable(impl->collector, "/metrics");
  return std::unique_ptr<Exporter>(new Exporter(std::move(impl)));
}

int Exporter::port() const {
  auto ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? -1 : ports.front();
}

void HistogramSample::Add(const std::vector<double>& b, const std::vector<uint64_t>& c, uint64_t n,
                          double s) {
  if (counts.empty()) {
    bounds = b;
    counts.assign(c.size(), 0);
  }
  for (size_t i = 0; i < c.size() && i < counts.size(); ++i)
    counts[i] += c[i];
  count += n;
  sum += s;
}

}  // namespace spate::metrics
