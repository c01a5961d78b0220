// core/daemon/config.h
//
// The daemon's configuration: a TOML file (toml++), or the embedded default, which is
// deploy/spate.toml compiled in. Unknown keys and bad values are errors with a message that
// names the key, so a typo never silently runs with a default.
// Only the daemon reads it: it maps these fields onto each module's own Options
// (core/daemon/options.cc), so no module depends on this struct.
// Threading: parsed once at start-up (may block: reads the file, resolves route host names);
// then read-only and shared by every thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <sys/socket.h>

#include "core/clock.h"
#include "core/dkim/dkim.h"
#include "core/net.h"
#include "core/result.h"

namespace spate {

struct Config {
  // [server]: the submission listener (one SO_REUSEPORT socket per shard).
  Endpoint listen;
  std::string hostname;         // greeting and Received: name; default: the host name
  size_t max_message_size = 0;  // octets; SIZE (RFC 1870)
  size_t max_recipients = 0;    // per message
  Seconds command_timeout{};    // RFC 5321 §4.5.3.2.7
  // [server] connection limits, checked at accept; over them a client gets 421 4.7.0 and is
  // closed before any session exists. max_connections is split across shards (each takes
  // ceil(max_connections / shards), no shared state); max_connections_per_client is exact
  // across shards (one table shared by all, locked at accept and close only) and counts an
  // IPv6 client per /64; 0: no per-client limit.
  unsigned server_max_connections = 0;
  unsigned max_connections_per_client = 0;
  // [server] slow clients: once data_rate_grace has passed in the data phase (DATA or BDAT),
  // the average rate since it began must be at least min_data_rate octets/s, or 421 4.4.2 and
  // close. 0: no minimum.
  size_t min_data_rate = 0;
  Seconds data_rate_grace{};
  // [server] the greeting waits this long; a client that talks first gets 554 5.5.0 and is
  // closed (RFC 5321 §3.1; Postfix postscreen's pregreet test). 0: greet at once.
  Seconds greeting_delay{};
  // [server] implicit TLS (RFC 8314 §3.3): a second listener per shard; empty text: none.
  Endpoint implicit_tls_listen;
  // [server] relay control: clients in these networks may send to any domain; others only to
  // local_domains unless they authenticated.
  std::vector<Network> relay_networks;
  // [server] proxy_protocol: connections from proxy_networks begin with a PROXY header (v1 or
  // v2) naming the real client (core/proxy/proxy_protocol.h).
  bool proxy_protocol = false;
  std::vector<Network> proxy_networks;
  std::vector<std::string> local_domains;  // lower case
  // [server] where "RCPT TO:<postmaster>" goes (RFC 5321 §4.5.1); default postmaster@hostname.
  std::string postmaster;
  // [server] message text with a bare CR or LF: "reject" (550 5.6.0) or "normalise" (CRLF);
  // with a NUL: "reject" (550 5.6.0) or "strip".
  bool bare_lf_normalise = false;
  bool nul_strip = false;
  // [tls]: PEM paths, loaded at start-up. Both empty: no STARTTLS and no implicit TLS.
  std::string tls_certificate;
  std::string tls_key;
  Seconds tls_handshake_timeout{};
  // [auth]: SMTP AUTH (RFC 4954) against a users file; empty: AUTH is not offered.
  std::string auth_users_file;
  bool auth_plaintext = false;       // also offer AUTH on connections without TLS
  unsigned auth_max_failures = 0;    // per client address (all shards), then 421 and close
  Seconds auth_failure_window{};     // how long failures are remembered
  unsigned auth_verify_threads = 0;  // PBKDF2 workers (auth::Verifier), off the reactors
  // [[dkim]]: the signing entries (core/dkim: domain, selector, key, headers, default); their
  // keys are read by dkim::Signer::Create at start and on a reload. [server] dkim_threads:
  // the signing workers (server::SigningStore), 0 one per core.
  std::vector<dkim::KeySpec> dkim;
  unsigned dkim_threads = 0;
  // [admin]: the admin API's listener ("" off) and the file of its bearer token ("" none: then
  // the listener must be on loopback).
  std::string admin_listen;
  std::string admin_token_file;
  // [inject]: POST /api/inject/v1 on the admin listener; its request body's bound (a larger one
  // gets 413) and its recipients' (one message each).
  bool inject_enabled = true;
  size_t inject_max_request_size = 10 << 20;
  size_t inject_max_recipients = 10000;
  // [spool]
  std::string spool_path;
  bool spool_sync = true;  // fsync each commit batch before the 250
  // [spool] min_free_space: "2%", "256MB", or a list of both; new mail is refused (452 4.3.1)
  // while less than the larger is free on the spool's file system.
  uint64_t spool_min_free_bytes = 0;
  double spool_min_free_ratio = 0;
  // [spool] body_log_min_size: bodies this large or larger go to the spool's body log
  // (queue/body_log.h); UINT64_MAX ("off"): none.
  uint64_t spool_body_log_min_bytes = uint64_t{64} << 10;
  // [spool] body_log_compact_after: a body log segment full this long with half of its bodies
  // or fewer still needed has those moved out, and goes (queue/body_log.h, "Space").
  Seconds spool_body_log_compact_after{600};
  // [spool] body_log_segment_size: the size past which a body log file is full.
  uint64_t spool_body_log_segment_bytes = uint64_t{64} << 20;
  // [suppression] enabled, ttl, classes: the suppression list (queue/suppression.h), and the
  // bounce classes whose hard bounces go on it.
  bool spool_suppression = true;
  Seconds spool_suppression_ttl{};
  std::vector<std::string> suppression_classes;
  // [server] campaign_header: the header whose value names a message's campaign ("" none).
  std::string campaign_header;
  // [campaigns."NAME"] priority = N: campaign name (exact) -> the priority, -9 to 9, of its
  // messages whose client set no MT-PRIORITY the server honoured (RFC 6710).
  std::map<std::string, int8_t> campaign_priority;
  // [delivery] bounce_rules: a rules file in KumoMTA's shape; "" the built-in rules.
  std::string bounce_rules;
  // [delivery] shaping: the traffic shaping file (delivery/shaping.h); "" the shipped one
  // (deploy/shaping.toml, embedded: DefaultShapingText()); "none" no shaping at all.
  std::string shaping;
  // [metrics]
  Endpoint metrics_listen;
  size_t metrics_max_domains = 0;  // per shard; further domains are counted as "other"
  // [shards]
  unsigned shards = 0;  // 0: one per core
  // [delivery]
  std::string helo_name;         // default: hostname
  std::string smarthost_text;    // "host:port" or empty
  Endpoint smarthost;            // valid when smarthost_text is not empty
  unsigned max_connections = 0;  // per destination
  unsigned max_messages_per_connection = 0;
  unsigned max_recipients_per_transaction = 0;
  bool pipeline_next = true;  // [delivery] pipeline_next: the next MAIL behind the end of data
  Seconds connect_timeout{};
  Seconds reply_timeout{};     // per command, client side
  Seconds greeting_timeout{};  // for the server's 220
  Seconds data_dot_timeout{};  // for the reply to the end of data
  Seconds idle_timeout{};      // an idle pooled connection is closed after this
  Seconds retry_base{};        // first retry delay; doubles per attempt
  Seconds retry_max{};         // cap of the retry delay
  Seconds max_age{};           // a recipient deferred this long after acceptance expires; 0: never
  bool dsn = true;             // [delivery] dsn: RFC 3464 notifications to senders
  Seconds delay_warning{};     // a DELAY notice once deferred this long after acceptance; 0: never
  // [delivery] MX routing (RFC 5321 §5), for domains without a route when there is no
  // smarthost: the port of MX hosts, the networks never connected to, the order of the address
  // families ("ipv4_first", "ipv6_first", "ipv4_only", "ipv6_only"), addresses per attempt.
  unsigned mx_port = 25;
  std::vector<Network> prohibited_networks;
  std::string address_order;
  unsigned max_addresses = 5;
  // [delivery] tls: outbound STARTTLS, "opportunistic" | "required" | "verify" | "off"; the
  // roots "verify" trusts; [tls_policy]: lower-case domain -> its own mode.
  // [delivery] max_body_memory: bodies of fresh mail kept in the ready queues, all shards.
  uint64_t max_body_memory = 0;
  std::string delivery_tls;
  std::string tls_ca_file;
  // [mta_sts]: MTA-STS (RFC 8461) on by default; the policy host's port (443; another only for
  // tests), the trust store of the policy fetches ([delivery] tls_ca_file unless set), their
  // time limit.
  bool mta_sts_enabled = true;
  unsigned mta_sts_port = 443;
  std::string mta_sts_ca_file;
  Seconds mta_sts_fetch_timeout{10};
  std::map<std::string, std::string> tls_policy;
  // [dns]: "host:port" servers to ask (empty: /etc/resolv.conf), per-lookup timeout, lookups at
  // once per shard.
  std::vector<std::string> dns_nameservers;
  // [dns] trust_anchor_file: DNSSEC validation by libunbound (DANE needs it); "" none.
  std::string dns_trust_anchor_file;
  // [cluster] (delivery/cluster.h): redis "host:port" ("" off), this node's name, the fallback
  // while Redis cannot be reached ("divide" or "hold"), the node count to divide by until
  // Redis has counted them, and how long a connection's lease lasts unrenewed.
  std::string cluster_redis;
  Endpoint cluster_redis_endpoint;
  std::string cluster_node;
  std::string cluster_redis_username;
  std::string cluster_redis_password_file;  // read at start; "" no AUTH
  std::string cluster_fallback = "divide";
  unsigned cluster_nodes = 1;
  Seconds cluster_lease_ttl{30};
  Seconds cluster_timeout{1};
  // [tlsrpt]: RFC 8460 daily report files (delivery/tlsrpt.h); organization and contact ""
  // default to the hostname and postmaster@hostname.
  bool tlsrpt_enabled = false;
  std::string tlsrpt_directory;
  std::string tlsrpt_organization;
  std::string tlsrpt_contact;
  unsigned tlsrpt_keep_days = 30;
  // [dns] trust_ad: the nameservers validate, their AD bit says secure (core/dns/stub.h).
  bool dns_trust_ad = false;
  Seconds dns_timeout{};
  unsigned dns_max_inflight = 0;
  // [dns] how long a domain's route (or a permanent failure) is kept: its records' TTL, within
  // min_ttl and max_ttl; a temporary failure (SERVFAIL, a timeout) for negative_ttl.
  Seconds dns_min_ttl{};
  Seconds dns_max_ttl{};
  Seconds dns_negative_ttl{};
  // [routes]: domain (lower case) -> where its mail goes.
  std::map<std::string, Endpoint> routes;
  // [log]
  std::string log_level;
  bool log_deliveries = true;  // one line per delivery outcome
  // [log] records: the accounting records (JSON lines, core/journal.h); "" none. Rotated by
  // size and age, `records_keep` kept, zstd-compressed with records_compress.
  std::string records;
  uint64_t records_max_size = 0;
  Seconds records_max_age{};
  unsigned records_keep = 0;
  bool records_compress = true;
};

// Parses `text` (TOML). On failure, `error` says what and where.
Result<Config> ParseConfig(std::string_view text, std::string* error);
Result<Config> LoadConfigFile(const std::string& path, std::string* error);
// The file at `path`, or the embedded default (DefaultConfigText()) when `path` is empty.
Result<Config> LoadConfig(const std::string& path, std::string* error);

// The embedded default configuration (deploy/spate.toml), as text.
std::string_view DefaultConfigText();
// deploy/shaping.toml, compiled in: the shaping in force when [delivery] shaping is unset.
std::string_view DefaultShapingText();

// "250ms", "5s", "2m", "1h", or a bare number of seconds.
Result<Seconds> ParseDuration(std::string_view text);

// A free-space threshold: "5%" (of the file system, 0-50) or a size, "512MB" (B, KB, MB, GB,
// TB; powers of 1024). Adds to whichever of *ratio and *bytes it names (the larger wins).
bool ParseFreeSpace(std::string_view text, uint64_t* bytes, double* ratio);

}  // namespace spate
