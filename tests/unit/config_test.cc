// tests/unit/config_test.cc
//
// The configuration as an operator meets it: the shipped file (compiled in as the default) runs
// as documented, an empty file means the same thing, every typo or bad value is refused with a
// message that names the offending key, and durations read the way the comments say.
#include "core/daemon/config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include <unistd.h>

#include <gtest/gtest.h>

#include "core/connection.h"
#include "core/daemon/options.h"
#include "delivery/bounce_class.h"

namespace spate {
namespace {

using namespace std::chrono_literals;

Config MustParse(std::string_view text) {
  std::string error;
  Result<Config> c = ParseConfig(text, &error);
  EXPECT_TRUE(c.has_value()) << error << "\nin:\n" << text;
  EXPECT_TRUE(!c.has_value() || error.empty()) << error;
  return c.has_value() ? std::move(c).value() : Config{};
}

unsigned ExpectedShards() {
  return std::max(1u, std::thread::hardware_concurrency());
}

TEST(ConfigTest, EmbeddedDefaultParsesAsDocumented) {
  ASSERT_FALSE(DefaultConfigText().empty());
  Config c = MustParse(DefaultConfigText());
  EXPECT_EQ(c.listen.text, "127.0.0.1:2525");
  EXPECT_EQ(FormatAddress(c.listen.addr), "127.0.0.1:2525");
  EXPECT_EQ(c.listen.len, sizeof(sockaddr_in));
  EXPECT_EQ(c.metrics_listen.text, "127.0.0.1:9464");
  EXPECT_EQ(FormatAddress(c.metrics_listen.addr), "127.0.0.1:9464");
  EXPECT_EQ(c.spool_path, "./var/spool");
  EXPECT_TRUE(c.spool_sync);
  EXPECT_TRUE(c.spool_suppression);
  EXPECT_EQ(c.spool_suppression_ttl, Seconds(90 * 86400));
  EXPECT_EQ(c.shards, ExpectedShards());  // count = 0: one per core
  EXPECT_GE(c.shards, 1u);
  EXPECT_EQ(c.max_message_size, 52428800u);
  EXPECT_EQ(c.max_recipients, 100u);
  EXPECT_EQ(c.command_timeout, 300s);
  EXPECT_EQ(c.server_max_connections, 10000u);
  EXPECT_EQ(c.max_connections_per_client, 100u);
  EXPECT_EQ(c.min_data_rate, 1024u);
  EXPECT_EQ(c.data_rate_grace, 30s);
  EXPECT_EQ(c.greeting_delay, 0s);
  EXPECT_EQ(c.metrics_max_domains, 1000u);
  EXPECT_FALSE(c.hostname.empty());  // "" means this host's name
  EXPECT_EQ(c.helo_name, c.hostname);
  EXPECT_EQ(c.postmaster, "postmaster@" + c.hostname);     // "" means postmaster@hostname
  EXPECT_FALSE(c.bare_lf_normalise);                       // "reject"
  EXPECT_FALSE(c.nul_strip);                               // "reject"
  EXPECT_EQ(c.spool_min_free_bytes, uint64_t{256} << 20);  // ["2%", "256MB"]
  EXPECT_TRUE(c.smarthost_text.empty());                   // mail goes by MX
  EXPECT_EQ(c.mx_port, 25u);
  EXPECT_EQ(c.prohibited_networks.size(), 4u);
  EXPECT_EQ(c.address_order, "ipv4_first");
  EXPECT_EQ(c.max_addresses, 5u);
  EXPECT_EQ(c.delivery_tls, "opportunistic");
  EXPECT_EQ(c.tls_ca_file, "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_TRUE(c.tls_policy.empty());
  EXPECT_EQ(c.max_body_memory, uint64_t{256} << 20);
  EXPECT_TRUE(c.dns_nameservers.empty());  // /etc/resolv.conf
  EXPECT_EQ(c.dns_timeout, 10s);
  EXPECT_EQ(c.dns_max_inflight, 256u);
  EXPECT_EQ(c.dns_min_ttl, 30s);
  EXPECT_EQ(c.dns_max_ttl, 3600s);
  EXPECT_EQ(c.dns_negative_ttl, 30s);
  EXPECT_DOUBLE_EQ(c.spool_min_free_ratio, 0.02);
  EXPECT_EQ(c.spool_body_log_min_bytes, uint64_t{64} << 10);
  EXPECT_TRUE(c.smarthost_text.empty());
  EXPECT_EQ(c.max_connections, 16u);
  EXPECT_EQ(c.max_messages_per_connection, 1000u);
  EXPECT_EQ(c.max_recipients_per_transaction, 100u);
  EXPECT_TRUE(c.pipeline_next);
  EXPECT_EQ(c.connect_timeout, 30s);
  EXPECT_EQ(c.reply_timeout, 300s);
  EXPECT_EQ(c.greeting_timeout, 300s);  // RFC 5321 §4.5.3.2.1
  EXPECT_EQ(c.data_dot_timeout, 600s);  // §4.5.3.2.6
  EXPECT_EQ(c.idle_timeout, 5s);
  EXPECT_EQ(c.retry_base, 60s);
  EXPECT_EQ(c.retry_max, 3600s);
  EXPECT_EQ(c.max_age, 5 * 86400s);
  EXPECT_TRUE(c.routes.empty());
  EXPECT_EQ(c.log_level, "info");
  EXPECT_TRUE(c.log_deliveries);
}

TEST(ConfigTest, TlsPolicyIsPerLowerCaseDomainAndMapsOntoTheDeliveryOptions) {
  Config c = MustParse(
      "[delivery]\ntls = \"required\"\nmax_body_memory = \"64MB\"\n[shards]\ncount = 2\n"
      "[tls_policy]\n\"Bank.Example\" = \"verify\"\n\"old.example\" = \"off\"\n");
  delivery::Options o = daemon::DeliveryOptions(c);
  EXPECT_EQ(o.tls, delivery::TlsMode::kRequired);
  EXPECT_EQ(o.TlsFor("bank.example"), delivery::TlsMode::kVerify);
  EXPECT_EQ(o.TlsFor("old.example"), delivery::TlsMode::kOff);
  EXPECT_EQ(o.TlsFor("other.example"), delivery::TlsMode::kRequired);
  EXPECT_EQ(o.max_body_bytes, uint64_t{32} << 20) << "shared by the two shards";
}

// Issue 10's settings reach the modules: DSNs and their delay notice, the bounce classes that
// suppress, the campaign header; with dsn off the server stops offering DSN too.
TEST(ConfigTest, BounceSettingsMapOntoTheDeliveryAndServerOptions) {
  Config on = MustParse("");
  EXPECT_TRUE(daemon::ServerOptions(on).dsn);
  EXPECT_EQ(daemon::ServerOptions(on).campaign_header, "X-Campaign");
  delivery::Options d = daemon::DeliveryOptions(on);
  EXPECT_TRUE(d.dsn);
  EXPECT_EQ(d.delay_warning, Seconds(4 * 3600));
  EXPECT_EQ(d.suppress_classes,
            (1u << static_cast<unsigned>(delivery::BounceClass::kInvalidRecipient)) |
                (1u << static_cast<unsigned>(delivery::BounceClass::kBadDomain)));
  Config off = MustParse(
      "[delivery]\ndsn = false\ndelay_warning = \"0s\"\n[server]\ncampaign_header = \"\"\n"
      "[suppression]\nclasses = [\"QuotaIssues\"]\n");
  EXPECT_FALSE(daemon::ServerOptions(off).dsn);
  EXPECT_EQ(daemon::ServerOptions(off).campaign_header, "");
  d = daemon::DeliveryOptions(off);
  EXPECT_FALSE(d.dsn);
  EXPECT_EQ(d.delay_warning, Seconds(0));
  EXPECT_EQ(d.suppress_classes, 1u << static_cast<unsigned>(delivery::BounceClass::kQuotaIssues));
}

// [campaigns."NAME"] priority: each campaign's default priority (RFC 6710) reaches the
// submission server, under the campaign's exact name; none by default.
TEST(ConfigTest, CampaignPrioritiesMapOntoTheServerOptions) {
  EXPECT_TRUE(MustParse("").campaign_priority.empty());
  EXPECT_TRUE(MustParse(DefaultConfigText()).campaign_priority.empty());
  Config c = MustParse(
      "[campaigns.\"spring-sale\"]\npriority = -3\n[campaigns.\"Alerts\"]\npriority = 9\n"
      "[campaigns.plain]\npriority = 0\n[campaigns.\"x\"]\npriority = -9\n");
  EXPECT_EQ(c.campaign_priority, (std::map<std::string, int8_t>{
                                     {"spring-sale", -3}, {"Alerts", 9}, {"plain", 0}, {"x", -9}}));
  server::Options o = daemon::ServerOptions(c);
  EXPECT_EQ(o.campaign_priority.size(), 4u);
  EXPECT_EQ(o.campaign_priority.at("Alerts"), 9) << "compared as the header gives it, case kept";
  EXPECT_EQ(o.campaign_priority.count("alerts"), 0u);
  EXPECT_EQ(o.campaign_priority.at("spring-sale"), -3);
}

// [[dkim]] entries are read in order, lower-casing the domain; their keys are read later
// (dkim::Signer::Create), so a config with a key that does not exist still parses here.
TEST(ConfigTest, DkimEntriesAreReadInOrder) {
  EXPECT_TRUE(MustParse("").dkim.empty());
  EXPECT_TRUE(MustParse(DefaultConfigText()).dkim.empty());
  Config c = MustParse(
      "[server]\ndkim_threads = 3\n"
      "[[dkim]]\ndomain = \"Shop.Example.\"\nselector = \"r2026\"\nkey = \"/k/rsa.pem\"\n"
      "[[dkim]]\ndomain = \"esp.example\"\nselector = \"e1\"\nkey = \"/k/ed.pem\"\n"
      "headers = [\"From\", \"Subject\"]\ndefault = true\n");
  EXPECT_EQ(c.dkim_threads, 3u);
  ASSERT_EQ(c.dkim.size(), 2u);
  EXPECT_EQ(c.dkim[0].domain, "shop.example");
  EXPECT_EQ(c.dkim[0].selector, "r2026");
  EXPECT_EQ(c.dkim[0].key_file, "/k/rsa.pem");
  EXPECT_TRUE(c.dkim[0].headers.empty());
  EXPECT_FALSE(c.dkim[0].is_default);
  EXPECT_EQ(c.dkim[1].headers, (std::vector<std::string>{"From", "Subject"}));
  EXPECT_TRUE(c.dkim[1].is_default);
}

TEST(ConfigTest, InjectTakesItsBoundsAndRefusesWhatItDoesNotKnow) {
  Config d = MustParse("");
  EXPECT_TRUE(d.inject_enabled);
  EXPECT_EQ(d.inject_max_request_size, size_t{10} << 20);
  EXPECT_EQ(d.inject_max_recipients, 10000u);
  Config c =
      MustParse("[inject]\nenabled = false\nmax_request_size = 65536\nmax_recipients = 50\n");
  EXPECT_FALSE(c.inject_enabled);
  EXPECT_EQ(c.inject_max_request_size, 65536u);
  EXPECT_EQ(c.inject_max_recipients, 50u);
  std::string error;
  EXPECT_FALSE(ParseConfig("[inject]\nmax_recipients = 0\n", &error).has_value());
  EXPECT_NE(error.find("max_recipients"), std::string::npos) << error;
  error.clear();
  EXPECT_FALSE(ParseConfig("[inject]\ntemplates = true\n", &error).has_value());
  EXPECT_NE(error.find("templates"), std::string::npos) << error;
}

// The built-in defaults and the shipped file must not drift apart: an empty config file and
// the documented one run the same daemon.
TEST(ConfigTest, EmptyTextMeansTheSameAsTheShippedFile) {
  Config a = MustParse("");
  Config b = MustParse(DefaultConfigText());
  EXPECT_EQ(a.listen.text, b.listen.text);
  EXPECT_EQ(a.admin_listen, b.admin_listen);
  EXPECT_EQ(a.admin_listen, "127.0.0.1:8025");
  EXPECT_EQ(a.admin_token_file, b.admin_token_file);
  EXPECT_EQ(a.inject_enabled, b.inject_enabled);
  EXPECT_EQ(a.dns_trust_anchor_file, b.dns_trust_anchor_file);
  EXPECT_EQ(a.dns_trust_ad, b.dns_trust_ad);
  EXPECT_EQ(a.cluster_redis, b.cluster_redis);
  EXPECT_EQ(a.cluster_node, b.cluster_node);
  EXPECT_EQ(a.cluster_fallback, b.cluster_fallback);
  EXPECT_EQ(a.cluster_nodes, b.cluster_nodes);
  EXPECT_EQ(a.cluster_lease_ttl, b.cluster_lease_ttl);
  EXPECT_EQ(a.cluster_timeout, b.cluster_timeout);
  EXPECT_EQ(a.proxy_protocol, b.proxy_protocol);
  EXPECT_EQ(a.tlsrpt_enabled, b.tlsrpt_enabled);
  EXPECT_EQ(a.tlsrpt_directory, b.tlsrpt_directory);
  EXPECT_EQ(a.tlsrpt_organization, b.tlsrpt_organization);
  EXPECT_EQ(a.tlsrpt_contact, b.tlsrpt_contact);
  EXPECT_EQ(a.tlsrpt_keep_days, b.tlsrpt_keep_days);
  EXPECT_EQ(a.mta_sts_enabled, b.mta_sts_enabled);
  EXPECT_EQ(a.mta_sts_port, b.mta_sts_port);
  EXPECT_EQ(a.mta_sts_ca_file, b.mta_sts_ca_file);
  EXPECT_EQ(a.mta_sts_fetch_timeout, b.mta_sts_fetch_timeout);
  EXPECT_EQ(a.inject_max_request_size, b.inject_max_request_size);
  EXPECT_EQ(a.inject_max_recipients, b.inject_max_recipients);
  EXPECT_EQ(a.metrics_listen.text, b.metrics_listen.text);
  EXPECT_EQ(a.hostname, b.hostname);
  EXPECT_EQ(a.max_message_size, b.max_message_size);
  EXPECT_EQ(a.max_recipients, b.max_recipients);
  EXPECT_EQ(a.command_timeout, b.command_timeout);
  EXPECT_EQ(a.server_max_connections, b.server_max_connections);
  EXPECT_EQ(a.max_connections_per_client, b.max_connections_per_client);
  EXPECT_EQ(a.min_data_rate, b.min_data_rate);
  EXPECT_EQ(a.data_rate_grace, b.data_rate_grace);
  EXPECT_EQ(a.greeting_delay, b.greeting_delay);
  EXPECT_EQ(a.spool_path, b.spool_path);
  EXPECT_EQ(a.spool_sync, b.spool_sync);
  EXPECT_EQ(a.metrics_max_domains, b.metrics_max_domains);
  EXPECT_EQ(a.shards, b.shards);
  EXPECT_EQ(a.helo_name, b.helo_name);
  EXPECT_EQ(a.smarthost_text, b.smarthost_text);
  EXPECT_EQ(a.max_connections, b.max_connections);
  EXPECT_EQ(a.max_messages_per_connection, b.max_messages_per_connection);
  EXPECT_EQ(a.max_recipients_per_transaction, b.max_recipients_per_transaction);
  EXPECT_EQ(a.connect_timeout, b.connect_timeout);
  EXPECT_EQ(a.reply_timeout, b.reply_timeout);
  EXPECT_EQ(a.greeting_timeout, b.greeting_timeout);
  EXPECT_EQ(a.data_dot_timeout, b.data_dot_timeout);
  EXPECT_EQ(a.idle_timeout, b.idle_timeout);
  EXPECT_EQ(a.retry_base, b.retry_base);
  EXPECT_EQ(a.retry_max, b.retry_max);
  EXPECT_EQ(a.routes.size(), b.routes.size());
  EXPECT_EQ(a.log_level, b.log_level);
  EXPECT_EQ(a.log_deliveries, b.log_deliveries);
}

TEST(ConfigTest, ExplicitValuesAreTaken) {
  Config c = MustParse(R"(
[server]
listen = "[::1]:2600"
hostname = "mx.example.org"
max_message_size = 1048576
max_recipients = 7
command_timeout = "90s"
max_connections = 500
max_connections_per_client = 0
min_data_rate = 0
data_rate_grace = "5s"
greeting_delay = "6s"
postmaster = "abuse@example.org"
bare_lf = "normalise"
nul = "strip"
[spool]
path = "/var/lib/spate"
sync = false
[suppression]
enabled = false
ttl = "30d"
classes = ["InvalidRecipient"]
[metrics]
listen = "127.0.0.1:0"
max_domains = 3
[shards]
count = 3
[delivery]
smarthost = "127.0.0.1:2526"
max_connections = 2
max_messages_per_connection = 5
max_recipients_per_transaction = 9
pipeline_next = false
connect_timeout = "250ms"
reply_timeout = 45
greeting_timeout = "1m"
data_dot_timeout = "20m"
idle_timeout = 1.5
retry_base = "2m"
retry_max = "2h"
[log]
level = "debug"
deliveries = false
)");
  EXPECT_EQ(c.listen.text, "[::1]:2600");
  EXPECT_EQ(c.listen.addr.ss_family, AF_INET6);
  EXPECT_EQ(FormatAddress(c.listen.addr), "[::1]:2600");
  EXPECT_EQ(c.hostname, "mx.example.org");
  EXPECT_EQ(c.helo_name, "mx.example.org");  // defaults to the hostname
  EXPECT_EQ(c.max_message_size, 1048576u);
  EXPECT_EQ(c.max_recipients, 7u);
  EXPECT_EQ(c.command_timeout, 90s);
  EXPECT_EQ(c.server_max_connections, 500u);
  EXPECT_EQ(c.max_connections_per_client, 0u);  // no per-client limit
  EXPECT_EQ(c.min_data_rate, 0u);               // no minimum data rate
  EXPECT_EQ(c.data_rate_grace, 5s);
  EXPECT_EQ(c.greeting_delay, 6s);
  EXPECT_EQ(c.postmaster, "abuse@example.org");
  EXPECT_TRUE(c.bare_lf_normalise);
  EXPECT_TRUE(c.nul_strip);
  EXPECT_EQ(c.spool_path, "/var/lib/spate");
  EXPECT_FALSE(c.spool_sync);
  EXPECT_FALSE(c.spool_suppression);
  EXPECT_EQ(c.spool_suppression_ttl, Seconds(30 * 86400));
  EXPECT_EQ(c.suppression_classes, std::vector<std::string>{"InvalidRecipient"});
  EXPECT_EQ(c.metrics_max_domains, 3u);
  EXPECT_EQ(c.shards, 3u);
  EXPECT_EQ(c.smarthost_text, "127.0.0.1:2526");
  EXPECT_EQ(FormatAddress(c.smarthost.addr), "127.0.0.1:2526");
  EXPECT_EQ(c.max_connections, 2u);
  EXPECT_FALSE(c.pipeline_next);
  EXPECT_EQ(c.max_messages_per_connection, 5u);
  EXPECT_EQ(c.max_recipients_per_transaction, 9u);
  EXPECT_DOUBLE_EQ(c.connect_timeout.count(), 0.25);
  EXPECT_EQ(c.reply_timeout, 45s);  // a bare TOML number is seconds
  EXPECT_EQ(c.greeting_timeout, 60s);
  EXPECT_EQ(c.data_dot_timeout, 1200s);
  EXPECT_DOUBLE_EQ(c.idle_timeout.count(), 1.5);
  EXPECT_EQ(c.retry_base, 120s);
  EXPECT_EQ(c.retry_max, 7200s);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_FALSE(c.log_deliveries);
}

TEST(ConfigTest, ZeroShardsMeansOnePerCore) {
  EXPECT_EQ(MustParse("[shards]\ncount = 0\n").shards, ExpectedShards());
  EXPECT_EQ(MustParse("[shards]\ncount = 1\n").shards, 1u);
}

TEST(ConfigTest, RetryMaxIsAtLeastRetryBase) {
  Config c = MustParse("[delivery]\nretry_base = \"2h\"\nretry_max = \"1h\"\n");
  EXPECT_EQ(c.retry_base, 7200s);
  EXPECT_EQ(c.retry_max, 7200s);
}

TEST(ConfigTest, RoutesParseAndLowerCaseTheDomain) {
  Config c = MustParse(R"(
[routes]
"Example.COM" = "127.0.0.1:2526"
"lists.example.net" = "[::1]:25"
)");
  ASSERT_EQ(c.routes.size(), 2u);
  ASSERT_EQ(c.routes.count("example.com"), 1u);
  EXPECT_EQ(c.routes.count("Example.COM"), 0u);
  const Endpoint& a = c.routes.at("example.com");
  EXPECT_EQ(a.text, "127.0.0.1:2526");
  EXPECT_EQ(FormatAddress(a.addr), "127.0.0.1:2526");
  EXPECT_EQ(a.len, sizeof(sockaddr_in));
  ASSERT_EQ(c.routes.count("lists.example.net"), 1u);
  const Endpoint& b = c.routes.at("lists.example.net");
  EXPECT_EQ(FormatAddress(b.addr), "[::1]:25");
  EXPECT_EQ(b.len, sizeof(sockaddr_in6));
}

struct BadConfig {
  const char* name;
  const char* text;
  const char* must_mention;  // the key (or section) the operator has to fix
};

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, IsRefusedWithAMessageNamingTheKey) {
  const BadConfig& bad = GetParam();
  std::string error;
  Result<Config> c = ParseConfig(bad.text, &error);
  ASSERT_FALSE(c.has_value()) << "accepted:\n" << bad.text;
  EXPECT_EQ(c.error(), std::make_error_code(std::errc::invalid_argument));
  EXPECT_NE(error.find(bad.must_mention), std::string::npos)
      << "error \"" << error << "\" does not mention \"" << bad.must_mention << "\"";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfigTest,
    ::testing::Values(
        BadConfig{"UnknownSection", "[bogus]\nx = 1\n", "bogus"},
        BadConfig{"DkimAsATable", "[dkim]\ndomain = \"a.example\"\n", "[[dkim]]"},
        BadConfig{"DkimWithoutKey", "[[dkim]]\ndomain = \"a.example\"\nselector = \"s\"\n", "key"},
        BadConfig{"DkimWithoutSelector", "[[dkim]]\ndomain = \"a.example\"\nkey = \"k.pem\"\n",
                  "selector"},
        BadConfig{"DkimBadDomain",
                  "[[dkim]]\ndomain = \"a example\"\nselector = \"s\"\nkey = \"k.pem\"\n",
                  "domain"},
        BadConfig{"DkimUnknownKey",
                  "[[dkim]]\ndomain = \"a.example\"\nselector = \"s\"\nkey = \"k\"\nalgo = 1\n",
                  "[[dkim]] entry 1: algo"},
        // What toml++ 3.3 aborts on is refused with its line, not a crash (core/toml_check.h).
        BadConfig{"HeaderWithoutKey", "[server]\nlisten = \"127.0.0.1:25\"\n[&\n", "line 3"},
        BadConfig{"BraceInArray", "[server]\nrelay_networks = [1, }\n", "inside an array"},
        BadConfig{"NonAsciiOutsideString", "[server]\nhostname = \xc2\xa1\n", "non-ASCII"},
        BadConfig{"QuoteAfterADotInAValue", "[server]\nhostname = +.\"\xce\xbc\"\n", "after a '.'"},
        BadConfig{"UnknownSuppressionClass", "[suppression]\nclasses = [\"NoSuchClass\"]\n",
                  "NoSuchClass"},
        BadConfig{"TopLevelKey", "listen = \"127.0.0.1:25\"\n", "listen"},
        BadConfig{"UnknownServerKey", "[server]\nlisten_port = 25\n", "listen_port"},
        BadConfig{"UnknownDeliveryKey", "[delivery]\nmax_conections = 4\n", "max_conections"},
        BadConfig{"UnknownLogKey", "[log]\nlevel = \"info\"\ncolour = true\n", "colour"},
        BadConfig{"StringForInteger", "[server]\nmax_recipients = \"ten\"\n", "max_recipients"},
        BadConfig{"IntegerForString", "[spool]\npath = 5\n", "path"},
        BadConfig{"StringForBool", "[spool]\nsync = \"yes\"\n", "sync"},
        BadConfig{"NegativeCount", "[shards]\ncount = -1\n", "count"},
        BadConfig{"TooManyShards", "[shards]\ncount = 100000\n", "count"},
        BadConfig{"TinyMessageSize", "[server]\nmax_message_size = 10\n", "max_message_size"},
        BadConfig{"ZeroConnections", "[delivery]\nmax_connections = 0\n", "max_connections"},
        BadConfig{"ZeroServerConnections", "[server]\nmax_connections = 0\n", "max_connections"},
        BadConfig{"NegativePerClient", "[server]\nmax_connections_per_client = -1\n",
                  "max_connections_per_client"},
        BadConfig{"DataRateWord", "[server]\nmin_data_rate = \"fast\"\n", "min_data_rate"},
        BadConfig{"GraceWord", "[server]\ndata_rate_grace = \"later\"\n", "data_rate_grace"},
        BadConfig{"NegativeGreetingDelay", "[server]\ngreeting_delay = -1\n", "greeting_delay"},
        BadConfig{"BadDurationUnit", "[delivery]\nconnect_timeout = \"5y\"\n", "connect_timeout"},
        BadConfig{"DurationWord", "[delivery]\nretry_base = \"soon\"\n", "retry_base"},
        BadConfig{"EmptyDuration", "[delivery]\nidle_timeout = \"\"\n", "idle_timeout"},
        BadConfig{"NegativeDuration", "[server]\ncommand_timeout = -5\n", "command_timeout"},
        BadConfig{"BoolDuration", "[delivery]\nreply_timeout = true\n", "reply_timeout"},
        BadConfig{"BadLogLevel", "[log]\nlevel = \"verbose\"\n", "level"},
        BadConfig{"ListenWithoutPort", "[server]\nlisten = \"127.0.0.1\"\n", "listen"},
        BadConfig{"MetricsListenBadPort", "[metrics]\nlisten = \"127.0.0.1:http\"\n", "listen"},
        BadConfig{"SmarthostBadPort", "[delivery]\nsmarthost = \"127.0.0.1:x\"\n", "smarthost"},
        BadConfig{"RouteWithoutPort", "[routes]\n\"Example.com\" = \"127.0.0.1\"\n", "example.com"},
        BadConfig{"RouteNotAString", "[routes]\n\"example.org\" = 25\n", "example.org"},
        BadConfig{"BareLfWord", "[server]\nbare_lf = \"allow\"\n", "bare_lf"},
        BadConfig{"NulWord", "[server]\nnul = \"allow\"\n", "nul"},
        BadConfig{"PostmasterWithoutDomain", "[server]\npostmaster = \"root\"\n", "postmaster"},
        BadConfig{"PostmasterEmptyDomain", "[server]\npostmaster = \"root@\"\n", "postmaster"},
        BadConfig{"MinFreeWord", "[spool]\nmin_free_space = \"lots\"\n", "min_free_space"},
        BadConfig{"MinFreeOverHalf", "[spool]\nmin_free_space = \"60%\"\n", "min_free_space"},
        BadConfig{"MinFreeUnit", "[spool]\nmin_free_space = [\"5XB\"]\n", "min_free_space"},
        BadConfig{"MinFreeNumber", "[spool]\nmin_free_space = 5\n", "min_free_space"},
        BadConfig{"BodyLogShare", "[spool]\nbody_log_min_size = \"5%\"\n", "body_log_min_size"},
        BadConfig{"BodyLogWord", "[spool]\nbody_log_min_size = \"big\"\n", "body_log_min_size"},
        BadConfig{"BodyLogNumber", "[spool]\nbody_log_min_size = 65536\n", "body_log_min_size"},
        BadConfig{"BodyLogSegmentTiny", "[spool]\nbody_log_segment_size = \"100\"\n",
                  "body_log_segment_size"},
        BadConfig{"BodyLogCompactWord", "[spool]\nbody_log_compact_after = \"soon\"\n",
                  "body_log_compact_after"},
        BadConfig{"MxPortZero", "[delivery]\nmx_port = 0\n", "mx_port"},
        BadConfig{"ProhibitedNotANetwork", "[delivery]\nprohibited_networks = [\"loopback\"]\n",
                  "prohibited_networks"},
        BadConfig{"AddressOrderWord", "[delivery]\naddress_order = \"any\"\n", "address_order"},
        BadConfig{"TlsModeWord", "[delivery]\ntls = \"sometimes\"\n", "tls"},
        BadConfig{"TlsPolicyWord", "[tls_policy]\n\"Bank.Example\" = \"maybe\"\n", "bank.example"},
        BadConfig{"TlsPolicyNotAString", "[tls_policy]\n\"a.example\" = 1\n", "a.example"},
        BadConfig{"BodyMemoryShare", "[delivery]\nmax_body_memory = \"5%\"\n", "max_body_memory"},
        BadConfig{"BodyMemoryWord", "[delivery]\nmax_body_memory = \"lots\"\n", "max_body_memory"},
        BadConfig{"NameserverWithoutPort", "[dns]\nnameservers = [\"127.0.0.1\"]\n", "nameservers"},
        BadConfig{"UnknownDnsKey", "[dns]\nservers = []\n", "servers"},
        BadConfig{"TlsrptWithoutDirectory", "[tlsrpt]\nenabled = true\ndirectory = \"\"\n",
                  "directory"},
        BadConfig{"ProxyProtocolWithoutNetworks", "[server]\nproxy_protocol = true\n",
                  "proxy_networks"},
        BadConfig{"ProxyNetworkNotANetwork",
                  "[server]\nproxy_protocol = true\nproxy_networks = [\"balancer\"]\n",
                  "proxy_networks"},
        BadConfig{"ClusterFallbackWord", "[cluster]\nfallback = \"guess\"\n", "fallback"},
        BadConfig{"ClusterRedisNotHostPort", "[cluster]\nredis = \"redis.local\"\n", "redis"},
        BadConfig{"ClusterLeaseTooShort",
                  "[cluster]\nredis = \"127.0.0.1:6379\"\nlease_ttl = \"1s\"\n", "lease_ttl"},
        BadConfig{"TlsrptUnknownKey", "[tlsrpt]\nrua = \"mailto:x@y\"\n", "rua"},
        BadConfig{"TrustAdWithAnchors",
                  "[dns]\ntrust_ad = true\ntrust_anchor_file = \"/usr/share/dns/root.key\"\n",
                  "trust_ad"},
        BadConfig{"TrustAdIpv6Nameserver", "[dns]\ntrust_ad = true\nnameservers = [\"[::1]:53\"]\n",
                  "[::1]:53"},
        BadConfig{"TrustAdFourNameservers",
                  "[dns]\ntrust_ad = true\nnameservers = [\"127.0.0.1:53\", \"127.0.0.2:53\", "
                  "\"127.0.0.3:53\", \"127.0.0.4:53\"]\n",
                  "at most 3"},
        BadConfig{"CampaignPriorityTooHigh", "[campaigns.\"x\"]\npriority = 10\n",
                  "[campaigns.\"x\"] priority"},
        BadConfig{"CampaignPriorityTooLow", "[campaigns.\"x\"]\npriority = -10\n",
                  "[campaigns.\"x\"] priority"},
        BadConfig{"CampaignPriorityWord", "[campaigns.\"x\"]\npriority = \"high\"\n",
                  "[campaigns.\"x\"] priority"},
        BadConfig{"CampaignPriorityFraction", "[campaigns.\"x\"]\npriority = 1.5\n",
                  "[campaigns.\"x\"] priority"},
        BadConfig{"UnknownCampaignKey", "[campaigns.\"x\"]\nprio = 1\n", "prio"},
        BadConfig{"CampaignNotATable", "[campaigns]\n\"x\" = 3\n", "[campaigns.\"x\"]"},
        BadConfig{"CampaignNameWithSpace", "[campaigns.\"spring sale\"]\npriority = 1\n",
                  "spring sale"},
        BadConfig{"SyntaxError", "[server\nlisten = 1\n", "line 1"}),
    [](const ::testing::TestParamInfo<BadConfig>& p) { return std::string(p.param.name); });

TEST(ConfigTest, FirstErrorWins) {
  std::string error;
  Result<Config> c = ParseConfig("[server]\nmax_recipients = 0\n[log]\nlevel = \"x\"\n", &error);
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(error.find("[server] max_recipients"), std::string::npos) << error;
}

TEST(ConfigTest, LoadConfigFileNamesTheFile) {
  std::string error;
  Result<Config> missing = LoadConfigFile("/nonexistent/spate.toml", &error);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(error.find("/nonexistent/spate.toml"), std::string::npos) << error;

  char path[] = "/tmp/config_test.XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "[shards]\ncount = 2\n";
  }
  Result<Config> good = LoadConfigFile(path, &error);
  ASSERT_TRUE(good.has_value()) << error;
  EXPECT_EQ(good->shards, 2u);
  {
    std::ofstream out(path, std::ios::trunc);
    out << "[shards]\ncuont = 2\n";
  }
  Result<Config> bad = LoadConfigFile(path, &error);
  std::filesystem::remove(path);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(error.find(path), std::string::npos) << error;
  EXPECT_NE(error.find("cuont"), std::string::npos) << error;
}

// [spool] min_free_space: one threshold or a list; the larger of each kind holds.
TEST(ConfigTest, MinFreeSpaceTakesASizeAShareOrBoth) {
  Config one = MustParse("[spool]\nmin_free_space = \"1GB\"\n");
  EXPECT_EQ(one.spool_min_free_bytes, uint64_t{1} << 30);
  EXPECT_EQ(one.spool_min_free_ratio, 0.0);
  Config share = MustParse("[spool]\nmin_free_space = \"5%\"\n");
  EXPECT_EQ(share.spool_min_free_bytes, 0u);
  EXPECT_DOUBLE_EQ(share.spool_min_free_ratio, 0.05);
  Config both = MustParse("[spool]\nmin_free_space = [\"3%\", \"512mb\", \"1.5%\", \"64KB\"]\n");
  EXPECT_EQ(both.spool_min_free_bytes, uint64_t{512} << 20);
  EXPECT_DOUBLE_EQ(both.spool_min_free_ratio, 0.03);
  Config none = MustParse("[spool]\nmin_free_space = \"0B\"\n");
  EXPECT_EQ(none.spool_min_free_bytes, 0u);
  EXPECT_EQ(none.spool_min_free_ratio, 0.0);
}

// [spool] body_log_min_size: a size, "0" (every body in the body log) or "off" (none).
TEST(ConfigTest, BodyLogMinSizeTakesASizeZeroOrOff) {
  EXPECT_EQ(MustParse("[spool]\nbody_log_min_size = \"1MB\"\n").spool_body_log_min_bytes,
            uint64_t{1} << 20);
  EXPECT_EQ(MustParse("[spool]\nbody_log_min_size = \"0\"\n").spool_body_log_min_bytes, 0u);
  EXPECT_EQ(MustParse("[spool]\nbody_log_min_size = \"off\"\n").spool_body_log_min_bytes,
            UINT64_MAX);
}

// [spool] body_log_compact_after: a duration, 10 minutes unless set.
TEST(ConfigTest, BodyLogCompactAfterIsADuration) {
  EXPECT_EQ(MustParse("").spool_body_log_compact_after, Seconds(600));
  EXPECT_EQ(MustParse("[spool]\nbody_log_compact_after = \"30s\"\n").spool_body_log_compact_after,
            Seconds(30));
  EXPECT_EQ(daemon::SpoolOptions(MustParse("[spool]\nbody_log_compact_after = \"1m\"\n"))
                .body_log_compact_after,
            std::chrono::milliseconds(60000));
  EXPECT_EQ(daemon::SpoolOptions(MustParse("")).body_log_segment_bytes, uint64_t{64} << 20);
  EXPECT_EQ(daemon::SpoolOptions(MustParse("[spool]\nbody_log_segment_size = \"1MB\"\n"))
                .body_log_segment_bytes,
            uint64_t{1} << 20);
}

TEST(ParseDurationTest, Units) {
  struct Case {
    const char* text;
    double seconds;
  };
  for (const Case& c :
       {Case{"250ms", 0.25}, Case{"5s", 5}, Case{"5m", 300}, Case{"1h", 3600}, Case{"2d", 172800},
        Case{"30", 30}, Case{"0", 0}, Case{"1.5s", 1.5}, Case{"0.5m", 30}}) {
    Result<Seconds> d = ParseDuration(c.text);
    ASSERT_TRUE(d.has_value()) << c.text;
    EXPECT_DOUBLE_EQ(d->count(), c.seconds) << c.text;
  }
}

TEST(ParseDurationTest, RejectsWhatIsNotADuration) {
  for (const char* text : {"", "x", "5y", "ms", "s", "5 s", " 5s", "5sec", "5S", "-5s", "5ms5", ".",
                           "1.2.3s", "5.s.", "1e3"}) {
    EXPECT_FALSE(ParseDuration(text).has_value()) << "accepted \"" << text << "\"";
  }
}

}  // namespace
}  // namespace spate
