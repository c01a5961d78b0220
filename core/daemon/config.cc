#include "core/daemon/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <netdb.h>
#include <unistd.h>

// toml++ header-only and without exceptions: project code never throws (STYLE.md), and the
// header-only build does not depend on how Debian's shared library was compiled.
#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include "core/connection.h"
#include "core/server/submission.h"
#include "core/toml_check.h"
#include "delivery/bounce_class.h"

#include <toml++/toml.h>

namespace spate {
namespace {

// Reads one table with a fixed set of keys; remembers the first error.
class TableReader {
 public:
  TableReader(const toml::table* table, std::string name, std::string* error)
      : table_(table), name_(std::move(name)), error_(error) {}

  bool ok() const { return error_->empty(); }

  void String(const char* key, std::string* out) {
    seen_.insert(key);
    const toml::node* n = Get(key);
    if (n == nullptr)
      return;
    if (auto v = n->value<std::string>()) {
      *out = *v;
    } else {
      Fail(key, "must be a string");
    }
  }

  void Bool(const char* key, bool* out) {
    seen_.insert(key);
    const toml::node* n = Get(key);
    if (n == nullptr)
      return;
    if (auto v = n->value<bool>()) {
      *out = *v;
    } else {
      Fail(key, "must be true or false");
    }
  }

  // An array of strings.
  void StringList(const char* key, std::vector<std::string>* out) {
    seen_.insert(key);
    const toml::node* n = Get(key);
    if (n == nullptr)
      return;
    const toml::array* a = n->as_array();
    if (a == nullptr) {
      Fail(key, "must be an array of strings");
      return;
    }
    out->clear();
    for (const toml::node& e : *a) {
      auto v = e.value<std::string>();
      if (!v) {
        Fail(key, "must be an array of strings");
        return;
      }
      out->push_back(*v);
    }
  }

  template <typename T>
  void Unsigned(const char* key, T* out, int64_t min, int64_t max) {
    seen_.insert(key);
    const toml::node* n = Get(key);
    if (n == nullptr)
      return;
    auto v = n->value<int64_t>();
    if (!v || *v < min || *v > max) {
      Fail(key, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
      return;
    }
    *out = static_cast<T>(*v);
  }

  void Duration(const char* key, Seconds* out) {
    seen_.insert(key);
    const toml::node* n = Get(key);
    if (n == nullptr)
      return;
    Result<Seconds> d = Unexpected{std::make_error_code(std::errc::invalid_argument)};
    if (auto s = n->value<std::string>()) {
      d = ParseDuration(*s);
    } else if (auto i = n->value<double>()) {
      d = Seconds(*i);
    }
    if (!d || d->count() < 0) {
      Fail(key, "must be a duration such as \"250ms\", \"30s\", \"5m\" or \"1h\"");
      return;
    }
    *out = *d;
  }

  // Every key of the table must have been read: a typo is an error, not a silent default.
  void RejectUnknown() {
    if (table_ == nullptr || !ok())
      return;
    for (const auto& [k, v] : *table_) {
      if (seen_.count(std::string(k.str())) == 0) {
        Fail(std::string(k.str()).c_str(), "is not a known setting");
        return;
      }
    }
  }

  void Fail(const std::string& key, const std::string& what) {
    if (ok())
      *error_ = "[" + name_ + "] " + key + " " + what;
  }

 private:
  const toml::node* Get(const char* key) {
    if (table_ == nullptr)
      return nullptr;
    return table_->get(key);
  }

  const toml::table* table_;
  std::string name_;
  std::string* error_;
  std::set<std::string> seen_;
};

bool ResolveEndpoint(const std::string& text, Endpoint* out) {
  out->text = text;
  auto addr = ParseEndpoint(text, &out->len);
  if (!addr)
    return false;
  out->addr = *addr;
  return true;
}

// The machine's fully qualified name, as Postfix's myhostname: gethostname(), and when that has
// no dot, the canonical name the resolver gives it (/etc/hosts first, as nsswitch.conf says).
// Called once, at start-up, before any reactor runs.
constexpr const char* kTlsModes = "\"opportunistic\", \"required\", \"verify\" or \"off\"";

// Domains compare without case (RFC 5321 §2.4): every configured one is kept in lower case.
std::string LowerCase(std::string_view text) {
  std::string out(text);
  for (char& ch : out)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

bool ParseTlsMode(std::string_view mode) {
  return mode == "opportunistic" || mode == "required" || mode == "verify" || mode == "off";
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0')
    return "localhost";
  std::string name = buf;
  if (name.find('.') != std::string::npos)
    return name;
  addrinfo hints{};
  hints.ai_flags = AI_CANONNAME;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(name.c_str(), nullptr, &hints, &res) == 0 && res != nullptr) {
    if (res->ai_canonname != nullptr && std::strchr(res->ai_canonname, '.') != nullptr)
      name = res->ai_canonname;
    freeaddrinfo(res);
  }
  return name;
}

}  // namespace

Result<Seconds> ParseDuration(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.'))
    ++i;
  if (i == 0)
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  double value = 0;
  std::istringstream in{std::string(text.substr(0, i))};
  if (!(in >> value) || !in.eof())  // all of it a number: "1.2.3" is not
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  std::string_view unit = text.substr(i);
  double scale;
  if (unit.empty() || unit == "s") {
    scale = 1;
  } else if (unit == "ms") {
    scale = 0.001;
  } else if (unit == "m") {
    scale = 60;
  } else if (unit == "h") {
    scale = 3600;
  } else if (unit == "d") {
    scale = 86400;
  } else {
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  return Seconds(value * scale);
}

bool ParseFreeSpace(std::string_view text, uint64_t* bytes, double* ratio) {
  size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.'))
    ++i;
  if (i == 0)
    return false;
  double value = 0;
  std::istringstream in{std::string(text.substr(0, i))};
  if (!(in >> value) || !in.eof() || value < 0)
    return false;
  std::string unit(text.substr(i));
  for (char& ch : unit)
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (unit == "%") {
    if (value > 50)
      return false;  // a watermark over half the disk is a typo
    *ratio = std::max(*ratio, value / 100);
    return true;
  }
  static const std::pair<const char*, double> kUnits[] = {{"B", 1},
                                                          {"KB", 1024.0},
                                                          {"MB", 1024.0 * 1024},
                                                          {"GB", 1024.0 * 1024 * 1024},
                                                          {"TB", 1024.0 * 1024 * 1024 * 1024}};
  for (const auto& [name, scale] : kUnits) {
    if (unit == name) {
      const double b = value * scale;
      if (b > 1e18)
        return false;
      *bytes = std::max(*bytes, static_cast<uint64_t>(b));
      return true;
    }
  }
  return false;
}

Result<Config> ParseConfig(std::string_view text, std::string* error) {
  error->clear();
  // What toml++ would abort on is refused first, with its line (core/toml_check.h).
  if (!CheckTomlText(text, error))
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  toml::parse_result parsed = toml::parse(text);
  if (!parsed) {
    const auto& e = parsed.error();
    *error = "line " + std::to_string(e.source().begin.line) + ": " + std::string(e.description());
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  const toml::table& root = parsed.table();
  for (const auto& [k, v] : root) {
    static const std::set<std::string> kTables = {
        "server",    "spool", "metrics", "shards",  "delivery",   "routes",
        "log",       "tls",   "auth",    "dns",     "tls_policy", "suppression",
        "campaigns", "admin", "inject",  "mta_sts", "tlsrpt",     "cluster"};
    if (k.str() == "dkim") {
      if (!v.is_array_of_tables()) {
        *error = "dkim must be [[dkim]] entries (domain, selector, key)";
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      continue;
    }
    if (kTables.count(std::string(k.str())) == 0 || !v.is_table()) {
      *error = "unknown section [" + std::string(k.str()) + "]";
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
  }

  Config c;
  std::string listen = "127.0.0.1:2525";
  std::string metrics_listen = "127.0.0.1:9464";
  c.max_message_size = 50 << 20;
  c.max_recipients = 100;
  c.command_timeout = Seconds(300);
  c.server_max_connections = 10000;
  c.max_connections_per_client = 100;
  c.min_data_rate = 1024;
  c.data_rate_grace = Seconds(30);
  c.spool_path = "./var/spool";
  c.spool_suppression_ttl = Seconds(90 * 86400);
  c.metrics_max_domains = 1000;
  c.max_connections = 16;
  c.max_messages_per_connection = 1000;
  c.max_recipients_per_transaction = 100;
  c.connect_timeout = Seconds(30);
  c.reply_timeout = Seconds(300);
  c.greeting_timeout = Seconds(300);
  c.data_dot_timeout = Seconds(600);
  c.idle_timeout = Seconds(5);
  c.retry_base = Seconds(60);
  c.retry_max = Seconds(3600);
  c.log_level = "info";
  std::string implicit_tls_listen;
  std::vector<std::string> relay_networks = {"127.0.0.0/8", "::1/128"};
  c.tls_handshake_timeout = Seconds(30);
  c.auth_max_failures = 5;
  c.auth_failure_window = Seconds(600);
  c.auth_verify_threads = 1;

  TableReader server(root["server"].as_table(), "server", error);
  server.String("listen", &listen);
  server.String("hostname", &c.hostname);
  c.campaign_header = "X-Campaign";
  server.String("campaign_header", &c.campaign_header);
  server.Unsigned("dkim_threads", &c.dkim_threads, 0, 256);
  server.Unsigned("max_message_size", &c.max_message_size, 1024, int64_t{1} << 40);
  server.Unsigned("max_recipients", &c.max_recipients, 1, 1000000);
  server.Duration("command_timeout", &c.command_timeout);
  server.Unsigned("max_connections", &c.server_max_connections, 1, 10000000);
  server.Unsigned("max_connections_per_client", &c.max_connections_per_client, 0, 10000000);
  server.Unsigned("min_data_rate", &c.min_data_rate, 0, int64_t{1} << 30);
  server.Duration("data_rate_grace", &c.data_rate_grace);
  server.Duration("greeting_delay", &c.greeting_delay);
  server.String("implicit_tls_listen", &implicit_tls_listen);
  server.StringList("relay_networks", &relay_networks);
  server.Bool("proxy_protocol", &c.proxy_protocol);
  std::vector<std::string> proxy_networks;
  server.StringList("proxy_networks", &proxy_networks);
  server.StringList("local_domains", &c.local_domains);
  server.String("postmaster", &c.postmaster);
  std::string bare_lf = "reject";
  std::string nul = "reject";
  server.String("bare_lf", &bare_lf);
  server.String("nul", &nul);
  if (bare_lf != "reject" && bare_lf != "normalise")
    server.Fail("bare_lf", "must be \"reject\" or \"normalise\"");
  if (nul != "reject" && nul != "strip")
    server.Fail("nul", "must be \"reject\" or \"strip\"");
  c.bare_lf_normalise = bare_lf == "normalise";
  c.nul_strip = nul == "strip";
  server.RejectUnknown();

  TableReader tls(root["tls"].as_table(), "tls", error);
  tls.String("certificate", &c.tls_certificate);
  tls.String("key", &c.tls_key);
  tls.Duration("handshake_timeout", &c.tls_handshake_timeout);
  tls.RejectUnknown();

  TableReader auth(root["auth"].as_table(), "auth", error);
  auth.String("users_file", &c.auth_users_file);
  auth.Bool("plaintext", &c.auth_plaintext);
  auth.Unsigned("max_failures", &c.auth_max_failures, 1, 1000000);
  auth.Duration("failure_window", &c.auth_failure_window);
  auth.Unsigned("verify_threads", &c.auth_verify_threads, 1, 64);
  auth.RejectUnknown();

  TableReader spool(root["spool"].as_table(), "spool", error);
  spool.String("path", &c.spool_path);
  spool.Bool("sync", &c.spool_sync);
  std::vector<std::string> min_free = {"2%", "256MB"};
  if (const toml::table* t = root["spool"].as_table(); t != nullptr &&
                                                       t->get("min_free_space") != nullptr &&
                                                       t->get("min_free_space")->is_string()) {
    min_free.assign(1, "");
    spool.String("min_free_space", &min_free[0]);
  } else {
    spool.StringList("min_free_space", &min_free);
  }
  for (const std::string& m : min_free) {
    if (!ParseFreeSpace(m, &c.spool_min_free_bytes, &c.spool_min_free_ratio)) {
      spool.Fail("min_free_space",
                 "must be a share of the disk such as \"2%\" or a size such as \"256MB\" (or "
                 "a list of both), not \"" +
                     m + "\"");
      break;
    }
  }
  {
    // A size (64 KB by default; "0": every body), or "off": every body in RocksDB.
    std::string body_log_min = "64KB";
    spool.String("body_log_min_size", &body_log_min);
    double ratio = 0;
    uint64_t bytes = 0;
    if (body_log_min == "off") {
      c.spool_body_log_min_bytes = UINT64_MAX;
    } else if (body_log_min == "0") {
      c.spool_body_log_min_bytes = 0;  // every body
    } else if (ParseFreeSpace(body_log_min, &bytes, &ratio) && ratio == 0) {
      c.spool_body_log_min_bytes = bytes;
    } else {
      spool.Fail("body_log_min_size",
                 "must be a size such as \"64KB\" or \"off\", not \"" + body_log_min + "\"");
    }
  }
  spool.Duration("body_log_compact_after", &c.spool_body_log_compact_after);
  {
    std::string segment = "64MB";
    spool.String("body_log_segment_size", &segment);
    double ratio = 0;
    uint64_t bytes = 0;
    if (ParseFreeSpace(segment, &bytes, &ratio) && ratio == 0 && bytes >= (4 << 10)) {
      c.spool_body_log_segment_bytes = bytes;
    } else {
      spool.Fail("body_log_segment_size",
                 "must be a size of at least 4KB such as \"64MB\", not \"" + segment + "\"");
    }
  }
  spool.RejectUnknown();

  TableReader metrics(root["metrics"].as_table(), "metrics", error);
  metrics.String("listen", &metrics_listen);
  metrics.Unsigned("max_domains", &c.metrics_max_domains, 1, 1000000);
  metrics.RejectUnknown();

  // [admin]: the admin API (core/daemon/admin.h); "" listen: off.
  c.admin_listen = "127.0.0.1:8025";
  TableReader admin(root["admin"].as_table(), "admin", error);
  admin.String("listen", &c.admin_listen);
  admin.String("token_file", &c.admin_token_file);
  admin.RejectUnknown();

  // [inject]: HTTP injection on the admin listener (core/daemon/inject_api.h).
  TableReader inject(root["inject"].as_table(), "inject", error);
  inject.Bool("enabled", &c.inject_enabled);
  inject.Unsigned("max_request_size", &c.inject_max_request_size, 1024, int64_t{1} << 32);
  inject.Unsigned("max_recipients", &c.inject_max_recipients, 1, 1000000);
  inject.RejectUnknown();

  TableReader shards(root["shards"].as_table(), "shards", error);
  shards.Unsigned("count", &c.shards, 0, 1024);
  shards.RejectUnknown();

  TableReader delivery(root["delivery"].as_table(), "delivery", error);
  delivery.String("helo_name", &c.helo_name);
  delivery.String("smarthost", &c.smarthost_text);
  delivery.Unsigned("max_connections", &c.max_connections, 1, 100000);
  delivery.Unsigned("max_messages_per_connection", &c.max_messages_per_connection, 1, 100000000);
  delivery.Unsigned("max_recipients_per_transaction", &c.max_recipients_per_transaction, 1, 100000);
  delivery.Bool("pipeline_next", &c.pipeline_next);
  delivery.Duration("connect_timeout", &c.connect_timeout);
  delivery.Duration("reply_timeout", &c.reply_timeout);
  delivery.Duration("greeting_timeout", &c.greeting_timeout);
  delivery.Duration("data_dot_timeout", &c.data_dot_timeout);
  delivery.Duration("idle_timeout", &c.idle_timeout);
  delivery.Duration("retry_base", &c.retry_base);
  delivery.Duration("retry_max", &c.retry_max);
  c.max_age = Seconds(5 * 86400);
  delivery.Duration("max_age", &c.max_age);
  delivery.Bool("dsn", &c.dsn);
  c.delay_warning = Seconds(4 * 3600);
  delivery.Duration("delay_warning", &c.delay_warning);
  delivery.Unsigned("mx_port", &c.mx_port, 1, 65535);
  std::vector<std::string> prohibited = {"0.0.0.0/8", "127.0.0.0/8", "::1/128", "::/128"};
  delivery.StringList("prohibited_networks", &prohibited);
  c.address_order = "ipv4_first";
  delivery.String("address_order", &c.address_order);
  if (c.address_order != "ipv4_first" && c.address_order != "ipv6_first" &&
      c.address_order != "ipv4_only" && c.address_order != "ipv6_only") {
    delivery.Fail("address_order",
                  "must be \"ipv4_first\", \"ipv6_first\", \"ipv4_only\" or \"ipv6_only\"");
  }
  delivery.Unsigned("max_addresses", &c.max_addresses, 1, 100);
  c.delivery_tls = "opportunistic";
  delivery.String("tls", &c.delivery_tls);
  if (!ParseTlsMode(c.delivery_tls))
    delivery.Fail("tls", std::string("must be ") + kTlsModes);
  std::string body_memory = "256MB";
  delivery.String("max_body_memory", &body_memory);
  delivery.String("bounce_rules", &c.bounce_rules);
  delivery.String("shaping", &c.shaping);
  {
    double ratio = 0;
    c.max_body_memory = 0;
    if (!ParseFreeSpace(body_memory, &c.max_body_memory, &ratio) || ratio > 0)
      delivery.Fail("max_body_memory",
                    "must be a size such as \"256MB\", not \"" + body_memory + "\"");
  }
  c.tls_ca_file = "/etc/ssl/certs/ca-certificates.crt";
  delivery.String("tls_ca_file", &c.tls_ca_file);
  delivery.RejectUnknown();
  for (const std::string& entry : prohibited) {
    auto network = ParseNetwork(entry);
    if (!network) {
      delivery.Fail("prohibited_networks", "\"" + entry + "\" is not a network");
      break;
    }
    c.prohibited_networks.push_back(std::move(network).value());
  }

  // [mta_sts]: RFC 8461 policies of the destinations (delivery/mta_sts_policies.h).
  TableReader mta_sts(root["mta_sts"].as_table(), "mta_sts", error);
  mta_sts.Bool("enabled", &c.mta_sts_enabled);
  mta_sts.Unsigned("port", &c.mta_sts_port, 1, 65535);
  c.mta_sts_ca_file = c.tls_ca_file;
  mta_sts.String("ca_file", &c.mta_sts_ca_file);
  mta_sts.Duration("fetch_timeout", &c.mta_sts_fetch_timeout);
  mta_sts.RejectUnknown();

  // [cluster]: nodes sharing the shaping limits in Redis (delivery/cluster.h).
  TableReader cluster(root["cluster"].as_table(), "cluster", error);
  cluster.String("redis", &c.cluster_redis);
  cluster.String("node", &c.cluster_node);
  cluster.String("redis_username", &c.cluster_redis_username);
  cluster.String("redis_password_file", &c.cluster_redis_password_file);
  cluster.String("fallback", &c.cluster_fallback);
  cluster.Unsigned("nodes", &c.cluster_nodes, 1, 10000);
  cluster.Duration("lease_ttl", &c.cluster_lease_ttl);
  cluster.Duration("timeout", &c.cluster_timeout);
  cluster.RejectUnknown();
  if (c.cluster_fallback != "divide" && c.cluster_fallback != "hold")
    cluster.Fail("fallback", "must be \"divide\" or \"hold\"");
  if (!c.cluster_redis.empty()) {
    socklen_t len = 0;
    auto endpoint = ParseEndpoint(c.cluster_redis, &len);
    if (!endpoint) {
      cluster.Fail("redis", "\"" + c.cluster_redis + "\" is not host:port");
    } else {
      c.cluster_redis_endpoint.text = c.cluster_redis;
      c.cluster_redis_endpoint.addr = *endpoint;
      c.cluster_redis_endpoint.len = len;
    }
    if (c.cluster_lease_ttl.count() < 3)
      cluster.Fail("lease_ttl", "must be at least 3s (leases are renewed every third of it)");
  }

  // [tlsrpt]: RFC 8460 reports of the destinations' TLS policies, one file per domain per day.
  TableReader tlsrpt(root["tlsrpt"].as_table(), "tlsrpt", error);
  tlsrpt.Bool("enabled", &c.tlsrpt_enabled);
  c.tlsrpt_directory = "./var/log/tlsrpt";
  tlsrpt.String("directory", &c.tlsrpt_directory);
  tlsrpt.String("organization", &c.tlsrpt_organization);
  tlsrpt.String("contact", &c.tlsrpt_contact);
  tlsrpt.Unsigned("keep_days", &c.tlsrpt_keep_days, 1, 3650);
  tlsrpt.RejectUnknown();
  if (c.tlsrpt_enabled && c.tlsrpt_directory.empty())
    tlsrpt.Fail("directory", "must name a directory");

  TableReader dns(root["dns"].as_table(), "dns", error);
  dns.StringList("nameservers", &c.dns_nameservers);
  dns.String("trust_anchor_file", &c.dns_trust_anchor_file);
  dns.Bool("trust_ad", &c.dns_trust_ad);
  c.dns_timeout = Seconds(10);
  dns.Duration("timeout", &c.dns_timeout);
  c.dns_max_inflight = 256;
  dns.Unsigned("max_inflight", &c.dns_max_inflight, 1, 100000);
  c.dns_min_ttl = Seconds(30);
  c.dns_max_ttl = Seconds(3600);
  c.dns_negative_ttl = Seconds(30);
  dns.Duration("min_ttl", &c.dns_min_ttl);
  dns.Duration("max_ttl", &c.dns_max_ttl);
  dns.Duration("negative_ttl", &c.dns_negative_ttl);
  dns.RejectUnknown();
  if (c.dns_max_ttl < c.dns_min_ttl)
    c.dns_max_ttl = c.dns_min_ttl;
  for (const std::string& ns : c.dns_nameservers) {
    socklen_t len = 0;
    auto endpoint = ParseEndpoint(ns, &len);
    if (!endpoint) {
      dns.Fail("nameservers", "\"" + ns + "\" is not host:port");
      break;
    }
    // glibc's resolver, which sends the trust_ad queries, takes IPv4 servers with a port.
    if (c.dns_trust_ad && endpoint->ss_family != AF_INET) {
      dns.Fail("nameservers", "\"" + ns +
                                  "\": with trust_ad, an IPv4 address (an IPv6 resolver can "
                                  "come from /etc/resolv.conf, leaving nameservers empty)");
      break;
    }
  }
  if (c.dns_trust_ad && !c.dns_trust_anchor_file.empty())
    dns.Fail("trust_ad", "excludes trust_anchor_file: validate here, or trust the resolver's AD");
  if (c.dns_trust_ad && c.dns_nameservers.size() > 3)
    dns.Fail("nameservers", "at most 3 with trust_ad (glibc's resolver)");

  TableReader suppression(root["suppression"].as_table(), "suppression", error);
  suppression.Bool("enabled", &c.spool_suppression);
  suppression.Duration("ttl", &c.spool_suppression_ttl);
  c.suppression_classes = {"InvalidRecipient", "BadDomain"};
  suppression.StringList("classes", &c.suppression_classes);
  for (const std::string& name : c.suppression_classes) {
    if (!delivery::BounceClassFromName(name))
      suppression.Fail("classes",
                       "\"" + name + "\" is no bounce class (README.md, \"Bounce classes\")");
  }
  suppression.RejectUnknown();

  TableReader logt(root["log"].as_table(), "log", error);
  logt.String("level", &c.log_level);
  logt.Bool("deliveries", &c.log_deliveries);
  c.records = "./var/log/records.jsonl";
  logt.String("records", &c.records);
  std::string records_max_size = "1GB";
  logt.String("records_max_size", &records_max_size);
  {
    double ratio = 0;
    if (!ParseFreeSpace(records_max_size, &c.records_max_size, &ratio) || ratio > 0)
      logt.Fail("records_max_size", "want a size such as \"1GB\"");
  }
  c.records_max_age = Seconds(86400);
  logt.Duration("records_max_age", &c.records_max_age);
  c.records_keep = 10;
  logt.Unsigned("records_keep", &c.records_keep, 1, 100000);
  logt.Bool("records_compress", &c.records_compress);
  logt.RejectUnknown();
  if (!error->empty())
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};

  if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
      c.log_level != "error") {
    *error = "[log] level must be debug, info, warn or error";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (!ResolveEndpoint(listen, &c.listen)) {
    *error = "[server] listen: cannot resolve \"" + listen + "\" (want host:port)";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (!ResolveEndpoint(metrics_listen, &c.metrics_listen)) {
    *error = "[metrics] listen: cannot resolve \"" + metrics_listen + "\" (want host:port)";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (!c.smarthost_text.empty() && !ResolveEndpoint(c.smarthost_text, &c.smarthost)) {
    *error = "[delivery] smarthost: cannot resolve \"" + c.smarthost_text + "\"";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (!implicit_tls_listen.empty() &&
      !ResolveEndpoint(implicit_tls_listen, &c.implicit_tls_listen)) {
    *error = "[server] implicit_tls_listen: cannot resolve \"" + implicit_tls_listen +
             "\" (want host:port)";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  for (const std::string& entry : relay_networks) {
    auto network = ParseNetwork(entry);
    if (!network) {
      *error = "[server] relay_networks: \"" + entry +
               "\" is not a network (want \"192.0.2.0/24\" or \"2001:db8::/32\")";
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
    c.relay_networks.push_back(std::move(network).value());
  }
  for (const std::string& entry : proxy_networks) {
    auto network = ParseNetwork(entry);
    if (!network) {
      *error = "[server] proxy_networks: \"" + entry +
               "\" is not a network (want \"192.0.2.0/24\" or \"2001:db8::/32\")";
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
    c.proxy_networks.push_back(std::move(network).value());
  }
  if (c.proxy_protocol && c.proxy_networks.empty()) {
    *error =
        "[server] proxy_protocol: name the load balancers' addresses in proxy_networks "
        "(only they may say who the client is)";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  for (std::string& domain : c.local_domains) {
    domain = LowerCase(domain);
    if (domain.empty() || domain.find_first_of(" @<>[]") != std::string::npos) {
      *error = "[server] local_domains: \"" + domain + "\" is not a domain";
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
  }
  if (c.tls_certificate.empty() != c.tls_key.empty()) {
    *error = "[tls] certificate and key go together: set both or neither";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (!c.implicit_tls_listen.text.empty() && c.tls_certificate.empty()) {
    *error = "[server] implicit_tls_listen needs [tls] certificate and key";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (!c.auth_users_file.empty() && c.tls_certificate.empty() && !c.auth_plaintext) {
    // AUTH would never be offered: say so instead of silently running without it.
    *error = "[auth] users_file needs [tls] certificate and key (or [auth] plaintext = true)";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (const toml::table* routes = root["routes"].as_table()) {
    for (const auto& [k, v] : *routes) {
      const std::string domain = LowerCase(k.str());
      auto target = v.value<std::string>();
      Endpoint ep;
      if (!target || !ResolveEndpoint(*target, &ep)) {
        *error = "[routes] \"" + domain + "\" must be \"host:port\" that resolves";
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      c.routes.emplace(domain, std::move(ep));
    }
  }
  if (const toml::table* policy = root["tls_policy"].as_table()) {
    // [tls_policy] "example.com" = "required": the domain's own mode, whatever its site.
    for (const auto& [k, v] : *policy) {
      const std::string domain = LowerCase(k.str());
      auto mode = v.value<std::string>();
      if (!mode || !ParseTlsMode(*mode)) {
        *error = "[tls_policy] \"" + domain + "\" must be " + kTlsModes;
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      c.tls_policy.emplace(domain, *mode);
    }
  }
  if (const toml::table* campaigns = root["campaigns"].as_table()) {
    // [campaigns."spring-sale"] priority = -3: what its messages get when their client set no
    // MT-PRIORITY (RFC 6710) the server honours. The name is the [server] campaign_header value
    // as kept (server::ToSpoolMessage): one it could never be would silently match nothing.
    for (const auto& [k, v] : *campaigns) {
      const std::string name(k.str());
      const std::string section = "campaigns.\"" + name + "\"";
      const bool label =
          !name.empty() && name.size() <= server::kMaxCampaign &&
          std::all_of(name.begin(), name.end(), [](char ch) { return ch > ' ' && ch < 127; });
      if (!label) {
        *error = "[" + section + "] is no campaign name (printable US-ASCII without spaces, " +
                 "at most " + std::to_string(server::kMaxCampaign) + " octets)";
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      if (!v.is_table()) {
        *error = "[" + section + "] must be a table, such as priority = -9 to 9";
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      int8_t priority = 0;
      TableReader campaign(v.as_table(), section, error);
      campaign.Unsigned("priority", &priority, -9, 9);
      campaign.RejectUnknown();
      if (!error->empty())
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      c.campaign_priority.emplace(name, priority);
    }
  }
  if (const toml::array* entries = root["dkim"].as_array()) {
    // [[dkim]]: RFC 6376 signing entries. The keys are read later (dkim::Signer::Create), so
    // that a bad one is refused naming its file, at start, on --check-config and on a reload.
    size_t n = 0;
    for (const toml::node& node : *entries) {
      TableReader entry(node.as_table(), "dkim", error);
      ++n;
      dkim::KeySpec spec;
      entry.String("domain", &spec.domain);
      entry.String("selector", &spec.selector);
      entry.String("key", &spec.key_file);
      entry.StringList("headers", &spec.headers);
      entry.Bool("default", &spec.is_default);
      entry.RejectUnknown();
      if (!error->empty()) {
        *error = "[[dkim]] entry " + std::to_string(n) + ":" + error->substr(6);  // "[dkim]"
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      spec.domain = LowerCase(spec.domain);
      if (!spec.domain.empty() && spec.domain.back() == '.')
        spec.domain.pop_back();
      const std::string where = "[[dkim]] entry " + std::to_string(n);
      auto bad_label = [](const std::string& s, bool dots) {
        return s.empty() || s.size() > 253 || std::any_of(s.begin(), s.end(), [dots](char ch) {
                 return !(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ||
                          (dots && ch == '.'));
               });
      };
      if (bad_label(spec.domain, true)) {
        *error = where + ": domain must be a domain name (the d= of its signatures)";
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      if (bad_label(spec.selector, true)) {
        *error = where + " (" + spec.domain + "): selector must be a DNS label, such as \"s1\"";
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      if (spec.key_file.empty()) {
        *error = where + " (" + spec.domain + "): key must name a PEM private key file";
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      c.dkim.push_back(std::move(spec));
    }
  }
  if (c.hostname.empty())
    c.hostname = HostName();
  if (c.cluster_node.empty())
    c.cluster_node = c.hostname;
  if (c.tlsrpt_organization.empty())
    c.tlsrpt_organization = c.hostname;
  if (c.tlsrpt_contact.empty())
    c.tlsrpt_contact = "postmaster@" + c.hostname;
  if (c.helo_name.empty())
    c.helo_name = c.hostname;
  if (c.postmaster.empty())
    c.postmaster = "postmaster@" + c.hostname;
  {
    // A mailbox with a domain: the point is that no recipient is ever queued without one.
    const size_t at = c.postmaster.rfind('@');
    if (at == 0 || at == std::string::npos || at + 1 == c.postmaster.size() ||
        c.postmaster.find_first_of(" <>\r\n") != std::string::npos) {
      *error = "[server] postmaster: \"" + c.postmaster + "\" is not a mailbox (want user@domain)";
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
  }
  if (c.shards == 0)
    c.shards = std::max(1u, std::thread::hardware_concurrency());
  if (c.retry_max < c.retry_base)
    c.retry_max = c.retry_base;
  return c;
}

Result<Config> LoadConfig(const std::string& path, std::string* error) {
  return path.empty() ? ParseConfig(DefaultConfigText(), error) : LoadConfigFile(path, error);
}

Result<Config> LoadConfigFile(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path;
    return Unexpected{std::make_error_code(std::errc::no_such_file_or_directory)};
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto c = ParseConfig(text.str(), error);
  if (!c)
    *error = path + ": " + *error;
  return c;
}

}  // namespace spate
