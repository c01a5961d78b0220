#include "core/daemon/options.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace spate::daemon {

queue::Spool::Options SpoolOptions(const Config& c) {
  queue::Spool::Options o;
  o.path = c.spool_path;
  o.sync = c.spool_sync;
  o.min_free_bytes = c.spool_min_free_bytes;
  o.min_free_ratio = c.spool_min_free_ratio;
  o.body_log_min_bytes = c.spool_body_log_min_bytes;
  o.body_log_segment_bytes = c.spool_body_log_segment_bytes;
  o.body_log_compact_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(c.spool_body_log_compact_after);
  o.suppression = c.spool_suppression;
  o.suppression_ttl = c.spool_suppression_ttl;
  return o;
}

server::Options ServerOptions(const Config& c) {
  server::Options o;
  o.hostname = c.hostname;
  o.max_message_size = c.max_message_size;
  o.max_recipients = c.max_recipients;
  o.command_timeout = c.command_timeout;
  o.max_connections = c.server_max_connections;
  o.max_connections_per_client = c.max_connections_per_client;
  o.min_data_rate = c.min_data_rate;
  o.data_rate_grace = c.data_rate_grace;
  o.greeting_delay = c.greeting_delay;
  o.relay_networks = c.relay_networks;
  if (c.proxy_protocol)
    o.proxy_networks = c.proxy_networks;
  o.local_domains = c.local_domains;
  o.tls_handshake_timeout = c.tls_handshake_timeout;
  o.auth_plaintext = c.auth_plaintext;
  o.auth_max_failures = c.auth_max_failures;
  o.auth_failure_window = c.auth_failure_window;
  o.postmaster = c.postmaster;
  o.campaign_header = c.campaign_header;
  o.campaign_priority.insert(c.campaign_priority.begin(), c.campaign_priority.end());
  o.dsn = c.dsn;
  o.bare_lf = c.bare_lf_normalise ? smtp::BareLfPolicy::kNormalise : smtp::BareLfPolicy::kReject;
  o.nul = c.nul_strip ? smtp::NulPolicy::kStrip : smtp::NulPolicy::kReject;
  return o;
}

delivery::Options DeliveryOptions(const Config& c) {
  delivery::Options o;
  o.helo_name = c.helo_name;
  o.hostname = c.hostname;
  o.max_connections = c.max_connections;
  o.max_messages_per_connection = c.max_messages_per_connection;
  o.max_recipients_per_transaction = c.max_recipients_per_transaction;
  o.pipeline_next = c.pipeline_next;
  o.connect_timeout = c.connect_timeout;
  o.reply_timeout = c.reply_timeout;
  o.greeting_timeout = c.greeting_timeout;
  o.data_dot_timeout = c.data_dot_timeout;
  o.idle_timeout = c.idle_timeout;
  o.retry_base = c.retry_base;
  o.retry_max = c.retry_max;
  o.max_age = c.max_age;
  o.dsn = c.dsn;
  o.delay_warning = c.delay_warning;
  o.suppress_classes = 0;
  for (const std::string& name : c.suppression_classes) {
    if (std::optional<delivery::BounceClass> k = delivery::BounceClassFromName(name))
      o.suppress_classes |= 1u << static_cast<unsigned>(*k);  // names checked by ParseConfig
  }
  o.log_deliveries = c.log_deliveries;
  auto mode = [](const std::string& m) {
    if (m == "off")
      return delivery::TlsMode::kOff;
    if (m == "required")
      return delivery::TlsMode::kRequired;
    if (m == "verify")
      return delivery::TlsMode::kVerify;
    return delivery::TlsMode::kOpportunistic;
  };
  o.tls = mode(c.delivery_tls);
  for (const auto& [domain, m] : c.tls_policy)
    o.tls_policy.emplace(domain, mode(m));
  o.tls_handshake_timeout = c.tls_handshake_timeout;
  o.max_body_bytes = c.max_body_memory / std::max(1u, c.shards);
  return o;
}

bool LoadShaping(const Config& c, std::shared_ptr<const delivery::Shaping>* out, std::string* error,
                 std::vector<std::string>* warnings) {
  out->reset();
  warnings->clear();
  if (c.shaping == "none")
    return true;
  std::string text;
  std::string_view source = DefaultShapingText();
  if (!c.shaping.empty()) {
    std::ifstream in(c.shaping, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    if (!in) {
      *error = c.shaping + ": cannot be read";
      return false;
    }
    text = all.str();
    source = text;
  }
  std::optional<delivery::Shaping> shaping = delivery::Shaping::FromToml(source, error, warnings);
  const std::string name = c.shaping.empty() ? "the shipped shaping" : c.shaping;
  if (!shaping) {
    *error = name + ": " + *error;
    return false;
  }
  for (std::string& w : *warnings)
    w = name + ": " + w;
  *out = std::make_shared<const delivery::Shaping>(std::move(*shaping));
  return true;
}

std::unique_ptr<delivery::StaticRouting> MakeRouting(const Config& c) {
  std::optional<Endpoint> smarthost;
  if (!c.smarthost_text.empty())
    smarthost = c.smarthost;
  return std::make_unique<delivery::StaticRouting>(c.routes, smarthost);
}

delivery::MxRouting::Options MxRoutingOptions(const Config& c) {
  delivery::MxRouting::Options o;
  o.addresses.port = static_cast<uint16_t>(c.mx_port);
  o.addresses.prohibited = c.prohibited_networks;
  o.addresses.max_addresses = c.max_addresses;
  o.min_ttl = c.dns_min_ttl;
  o.max_ttl = c.dns_max_ttl;
  o.negative_ttl = c.dns_negative_ttl;
  o.addresses.family = c.address_order == "ipv6_first"  ? delivery::mx::Family::kIpv6First
                       : c.address_order == "ipv4_only" ? delivery::mx::Family::kIpv4Only
                       : c.address_order == "ipv6_only" ? delivery::mx::Family::kIpv6Only
                                                        : delivery::mx::Family::kIpv4First;
  return o;
}

dns::Resolver::Options ResolverOptions(const Config& c) {
  dns::Resolver::Options o;
  o.nameservers = c.dns_nameservers;
  o.timeout = c.dns_timeout;
  o.max_inflight = c.dns_max_inflight;
  o.trust_anchor_file = c.dns_trust_anchor_file;
  o.trust_ad = c.dns_trust_ad;
  return o;
}

Journal::Options RecordsOptions(const Config& c) {
  Journal::Options o;
  o.path = c.records;
  o.max_size = c.records_max_size;
  o.max_age = c.records_max_age;
  o.keep = c.records_keep;
  o.compress = c.records_compress;
  return o;
}

}  // namespace spate::daemon
