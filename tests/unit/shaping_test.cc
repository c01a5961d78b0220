// tests/unit/shaping_test.cc
//
// delivery/shaping.h: rates and durations, layering default < provider < domain, provider
// matching (MX suffix, domain suffix, first match), automation rules, a KumoMTA file with keys
// spate does not support, errors naming line and key, and the shipped deploy/shaping.toml.
#include "delivery/shaping.h"

#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace spate::delivery {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Shaping Load(std::string_view text, std::vector<std::string>* warnings = nullptr) {
  std::string error;
  std::vector<std::string> w;
  std::optional<Shaping> s = Shaping::FromToml(text, &error, warnings ? warnings : &w);
  EXPECT_TRUE(s.has_value()) << error;
  EXPECT_EQ(error, "");
  return s ? std::move(*s) : Shaping();
}

std::string Refused(std::string_view text) {
  std::string error;
  std::vector<std::string> warnings;
  std::optional<Shaping> s = Shaping::FromToml(text, &error, &warnings);
  EXPECT_FALSE(s.has_value()) << text;
  EXPECT_NE(error, "") << text;
  return error;
}

TEST(ParseRate, Table) {
  struct Case {
    const char* text;
    std::optional<Rate> want;
  };
  const Case kCases[] = {
      {"100/min", Rate{100, 60}},
      {"20/s", Rate{20, 1}},
      {"5/h", Rate{5, 3600}},
      {"1000/day", Rate{1000, 86400}},
      {"100/minute", Rate{100, 60}},
      {"10/sec", Rate{10, 1}},
      {"10/second", Rate{10, 1}},
      {"3/hr", Rate{3, 3600}},
      {"3/hour", Rate{3, 3600}},
      {"7/m", Rate{7, 60}},
      {"2/d", Rate{2, 86400}},
      {"4294967295/s", Rate{4294967295u, 1}},
      {"", std::nullopt},
      {"100", std::nullopt},
      {"0/s", std::nullopt},
      {"-1/s", std::nullopt},
      {"4294967296/s", std::nullopt},
      {"100000000000/s", std::nullopt},
      {"1.5/s", std::nullopt},
      {"100/", std::nullopt},
      {"/s", std::nullopt},
      {"100/ms", std::nullopt},
      {"100/week", std::nullopt},
      {"100 /s", std::nullopt},
      {"100/ s", std::nullopt},
      {"100/S", std::nullopt},
      {"100/min ", std::nullopt},
      {"100/5m", std::nullopt},
      {"+1/s", std::nullopt},
  };
  for (const Case& c : kCases)
    EXPECT_EQ(ParseRate(c.text), c.want) << c.text;
}

TEST(ParseDuration, Table) {
  struct Case {
    const char* text;
    std::optional<double> want;
  };
  const Case kCases[] = {
      {"300ms", 0.3},
      {"5s", 5},
      {"10m", 600},
      {"1h", 3600},
      {"2d", 172800},
      {"90", 90},
      {"1.5h", 5400},
      {"1h30m", 5400},
      {"1h 30m", 5400},
      {"2 hours", 7200},
      {"1 day", 86400},
      {"30 minutes", 1800},
      {"10sec", 10},
      {"3hr", 10800},
      {"0s", 0},
      {"", std::nullopt},
      {"h", std::nullopt},
      {"5", 5},
      {"-5s", std::nullopt},
      {"5 ", std::nullopt},
      {" 5s", std::nullopt},
      {"5s ", std::nullopt},
      {"1h30", std::nullopt},
      {"5w", std::nullopt},
      {"5S", std::nullopt},
      {"1.s", std::nullopt},
      {".5s", std::nullopt},
      {"1e3s", std::nullopt},
      {"99999999999d", std::nullopt},
  };
  for (const Case& c : kCases) {
    const std::optional<Seconds> got = ParseDuration(c.text);
    ASSERT_EQ(got.has_value(), c.want.has_value()) << c.text;
    if (got) {
      EXPECT_DOUBLE_EQ(got->count(), *c.want) << c.text;
    }
  }
}

constexpr std::string_view kLayers = R"(
["default"]
connection_limit = 10
max_deliveries_per_connection = 100
idle_timeout = "60s"
enable_tls = "Opportunistic"

[provider."google"]
match = [{MXSuffix = ".google.com"}, {MXSuffix = ".googlemail.com"}]
connection_limit = 20
max_message_rate = "50/s"
provider_connection_limit = 100

[provider."yahoo"]
match = [{DomainSuffix = ".yahoo.com"}, {DomainSuffix = "ymail.com"}, {MXSuffix = ".yahoodns.net"}]
max_deliveries_per_connection = 20

# Overlaps google (every Google host ends in .l.google.com too): the first in the file wins.
[provider."google-late"]
match = [{MXSuffix = ".l.google.com"}]
connection_limit = 1

["example.com"]
connection_limit = 3
enable_tls = "Required"

["Vanity.Example"]
max_message_rate = "1/min"
)";

TEST(Shaping, LayersDefaultProviderDomain) {
  const Shaping s = Load(kLayers);
  struct Case {
    const char* domain;
    std::vector<std::string> mx;
    const char* provider;  // null: none
    unsigned connection_limit;
    unsigned max_deliveries;
    std::optional<Rate> message_rate;
    TlsMode tls;
  };
  const Case kCases[] = {
      {"other.net", {"mx.other.net"}, nullptr, 10, 100, std::nullopt, TlsMode::kOpportunistic},
      {"gmail.com",
       {"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"},
       "google",
       20,
       100,
       Rate{50, 1},
       TlsMode::kOpportunistic},
      // A trailing dot and upper case are ignored, in hosts and domain.
      {"GMAIL.com.",
       {"GMAIL-SMTP-IN.L.GOOGLE.COM."},
       "google",
       20,
       100,
       Rate{50, 1},
       TlsMode::kOpportunistic},
      {"corp.example",
       {"aspmx.l.google.com", "alt1.aspmx.googlemail.com"},
       "google",
       20,
       100,
       Rate{50, 1},
       TlsMode::kOpportunistic},
      // One MX host of another provider: a vanity domain that mixes providers is neither's.
      {"mixed.example",
       {"aspmx.l.google.com", "mx.mixed.example"},
       nullptr,
       10,
       100,
       std::nullopt,
       TlsMode::kOpportunistic},
      // No MX hosts (not resolved yet, or a null MX): no MX match.
      {"nomx.example", {}, nullptr, 10, 100, std::nullopt, TlsMode::kOpportunistic},
      // A suffix is a string suffix: ".google.com" is not "google.com" itself.
      {"google.example", {"google.com"}, nullptr, 10, 100, std::nullopt, TlsMode::kOpportunistic},
      {"mail.yahoo.com", {}, "yahoo", 10, 20, std::nullopt, TlsMode::kOpportunistic},
      {"yahoo.com", {}, nullptr, 10, 100, std::nullopt, TlsMode::kOpportunistic},
      {"yahoo.com",
       {"mta5.am0.yahoodns.net"},
       "yahoo",
       10,
       20,
       std::nullopt,
       TlsMode::kOpportunistic},
      {"ymail.com", {}, "yahoo", 10, 20, std::nullopt, TlsMode::kOpportunistic},
      {"notymail.com", {}, "yahoo", 10, 20, std::nullopt, TlsMode::kOpportunistic},
      // The domain's own table over the provider's.
      {"example.com", {"aspmx.l.google.com"}, "google", 3, 100, Rate{50, 1}, TlsMode::kVerify},
      {"EXAMPLE.COM", {}, nullptr, 3, 100, std::nullopt, TlsMode::kVerify},
      {"sub.example.com", {}, nullptr, 10, 100, std::nullopt, TlsMode::kOpportunistic},
      {"vanity.example", {}, nullptr, 10, 100, Rate{1, 60}, TlsMode::kOpportunistic},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.domain);
    const Provider* p = s.ProviderFor(c.domain, c.mx);
    if (c.provider == nullptr) {
      EXPECT_EQ(p, nullptr);
    } else {
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(p->name, c.provider);
    }
    const ShapingValues v = s.Resolve(c.domain, c.mx);
    EXPECT_EQ(v.connection_limit, c.connection_limit);
    EXPECT_EQ(v.max_deliveries_per_connection, c.max_deliveries);
    EXPECT_EQ(v.max_message_rate, c.message_rate);
    EXPECT_EQ(v.enable_tls, c.tls);
    EXPECT_EQ(v.idle_timeout, Seconds(60));
    EXPECT_EQ(v.max_age, std::nullopt);
  }
  ASSERT_EQ(s.providers().size(), 3u);
  EXPECT_EQ(s.providers()[0].name, "google");
  EXPECT_EQ(s.providers()[1].name, "yahoo");
  EXPECT_EQ(s.providers()[2].name, "google-late");
  EXPECT_EQ(s.providers()[0].values.provider_connection_limit, 100u);
  EXPECT_THAT(s.providers()[0].match,
              ElementsAre(ProviderMatch{ProviderMatch::kMxSuffix, ".google.com"},
                          ProviderMatch{ProviderMatch::kMxSuffix, ".googlemail.com"}));
  EXPECT_EQ(s.providers()[1].match[1], (ProviderMatch{ProviderMatch::kDomainSuffix, "ymail.com"}));
}

TEST(Shaping, FirstMatchingProviderInFileOrder) {
  // The same two providers in the other order: now the narrower one is first and wins.
  const Shaping s = Load(R"(
[provider."zz-narrow"]
match = [{MXSuffix = ".l.google.com"}]
connection_limit = 1
[provider."aa-wide"]
match = [{MXSuffix = ".google.com"}]
connection_limit = 20
)");
  const Provider* p = s.ProviderFor("gmail.com", {"gmail-smtp-in.l.google.com"});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->name, "zz-narrow");
  p = s.ProviderFor("corp.example", {"aspmx2.googlemail.com.google.com"});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->name, "aa-wide");
  // A domain suffix wins whatever the MX hosts.
  const Shaping d = Load(R"(
[provider."by-mx"]
match = [{MXSuffix = ".mx.example"}]
[provider."by-domain"]
match = [{DomainSuffix = ".example"}]
)");
  EXPECT_EQ(d.ProviderFor("a.example", {"x.mx.example"})->name, "by-mx");
  EXPECT_EQ(d.ProviderFor("a.example", {"x.other"})->name, "by-domain");
}

TEST(Shaping, Overlay) {
  ShapingValues base;
  base.connection_limit = 10;
  base.idle_timeout = Seconds(5);
  Automation rule;
  rule.regex = "base";
  base.automation.push_back(rule);
  ShapingValues over;
  over.connection_limit = 2;
  over.max_message_rate = Rate{1, 1};
  rule.regex = "over";
  over.automation.push_back(rule);
  base.Overlay(over);
  EXPECT_EQ(base.connection_limit, 2u);
  EXPECT_EQ(base.idle_timeout, Seconds(5));
  EXPECT_EQ(base.max_message_rate, (Rate{1, 1}));
  ASSERT_EQ(base.automation.size(), 2u);
  EXPECT_EQ(base.automation[0].regex, "over");
  EXPECT_EQ(base.automation[1].regex, "base");
}

TEST(Shaping, SetAsSetConfigDoes) {
  ShapingValues v;
  EXPECT_TRUE(v.Set("max_message_rate", "20/min"));
  EXPECT_EQ(v.max_message_rate, (Rate{20, 60}));
  EXPECT_TRUE(v.Set("connection_limit", "2"));
  EXPECT_EQ(v.connection_limit, 2u);
  EXPECT_TRUE(v.Set("idle_timeout", "1m"));
  EXPECT_EQ(v.idle_timeout, Seconds(60));
  EXPECT_TRUE(v.Set("enable_tls", "RequiredInsecure"));
  EXPECT_EQ(v.enable_tls, TlsMode::kRequired);
  const ShapingValues before = v;
  EXPECT_FALSE(v.Set("connection_limit", "0"));
  EXPECT_FALSE(v.Set("connection_limit", "x"));
  EXPECT_FALSE(v.Set("max_message_rate", "20"));
  EXPECT_FALSE(v.Set("provider_connection_limit", "5"));
  EXPECT_FALSE(v.Set("smtp_port", "25"));
  EXPECT_EQ(v, before);
}

TEST(Shaping, TlsNames) {
  const std::pair<const char*, TlsMode> kNames[] = {
      {"Opportunistic", TlsMode::kOpportunistic},
      {"OpportunisticInsecure", TlsMode::kOpportunistic},
      {"Required", TlsMode::kVerify},
      {"RequiredInsecure", TlsMode::kRequired},
      {"Disabled", TlsMode::kOff},
  };
  for (const auto& [name, mode] : kNames) {
    const Shaping s = Load("[default]\nenable_tls = \"" + std::string(name) + "\"\n");
    EXPECT_EQ(s.defaults().enable_tls, mode) << name;
  }
  EXPECT_THAT(Refused("[default]\nenable_tls = \"opportunistic\"\n"),
              HasSubstr("line 2: [\"default\"] enable_tls must be one of"));
}

TEST(Shaping, Automation) {
  const Shaping s = Load(R"(
[provider."yahoo"]
match = [{MXSuffix = ".yahoodns.net"}]

[[provider."yahoo".automation]]
regex = "\\[TS01\\]"
action = "Suspend"
duration = "1h"

[[provider."yahoo".automation]]
regex = ["4\\.7\\.650", "S3150"]
action = {SetConfig = {name = "max_message_rate", value = "2/s"}}
trigger = {Threshold = "10/hr"}
duration = "30m"

[[provider."yahoo".automation]]
regex = "5\\.7\\.1"
action = ["Bounce", {SetConfig = {name = "connection_limit", value = 2}}]
trigger = "Immediate"
duration = 90

["example.com"]
connection_limit = 2
[["example.com".automation]]
regex = "slow down"
action = {SetConfig = {name = "idle_timeout", value = 1.5}}
duration = "2 hours"
)");
  ASSERT_EQ(s.providers().size(), 1u);
  const std::vector<Automation>& rules = s.providers()[0].values.automation;
  ASSERT_EQ(rules.size(), 4u);
  EXPECT_EQ(rules[0].regex, "\\[TS01\\]");
  EXPECT_EQ(rules[0].action, Automation::Action::kSuspend);
  EXPECT_EQ(rules[0].duration, Seconds(3600));
  EXPECT_EQ(rules[0].threshold, 0u);
  EXPECT_EQ(rules[0].threshold_per_seconds, 0);
  EXPECT_EQ(rules[0].line, 5u);

  EXPECT_EQ(rules[1].regex, "(?:4\\.7\\.650)|(?:S3150)");
  EXPECT_EQ(rules[1].action, Automation::Action::kSetConfig);
  EXPECT_EQ(rules[1].config_name, "max_message_rate");
  EXPECT_EQ(rules[1].config_value, "2/s");
  EXPECT_EQ(rules[1].threshold, 10u);
  EXPECT_EQ(rules[1].threshold_per_seconds, 3600);
  EXPECT_EQ(rules[1].duration, Seconds(1800));

  // An array of actions: one rule each, sharing regex, trigger and duration.
  EXPECT_EQ(rules[2].action, Automation::Action::kBounce);
  EXPECT_EQ(rules[2].duration, Seconds(90));
  EXPECT_EQ(rules[3].action, Automation::Action::kSetConfig);
  EXPECT_EQ(rules[3].config_name, "connection_limit");
  EXPECT_EQ(rules[3].config_value, "2");
  EXPECT_EQ(rules[3].regex, "5\\.7\\.1");
  EXPECT_EQ(rules[3].line, rules[2].line);

  // The domain's rules come before the provider's in what Resolve() gives.
  const ShapingValues v = s.Resolve("example.com", {"mta6.am0.yahoodns.net"});
  ASSERT_EQ(v.automation.size(), 5u);
  EXPECT_EQ(v.automation[0].regex, "slow down");
  EXPECT_EQ(v.automation[0].config_value, "1.5");
  EXPECT_EQ(v.automation[0].duration, Seconds(7200));
  EXPECT_EQ(v.automation[1], rules[0]);
  EXPECT_EQ(v.connection_limit, 2u);
}

TEST(Shaping, KumoMtaFileWithUnsupportedKeysLoadsWithWarnings) {
  std::vector<std::string> warnings;
  const Shaping s = Load(R"(["default"]
connection_limit = 10
consecutive_connection_failures_before_delay = 100
tls_prefer_openssl = true

[provider."microsoft"]
match = [{MXSuffix = ".olc.protection.outlook.com"}, {HostName = "mx.example"}]
smtp_port = 2525
prohibited_hosts = ["127.0.0.0/8"]

[[provider."microsoft".automation]]
regex = "S3150"
action = ["Suspend", "SuspendTenant"]
duration = "1h"
match_internal = true

["example.com"]
mx_rollup = false
consecutive_connection_failures_before_delay = 5
additional_connection_limits = {"first" = 10}
provider_connection_limit = 5
[["example.com".automation]]
regex = "x"
action = {SetConfig = {name = "max_ready", value = 100}}
duration = "1h"

["example.com".sources."ip-1"]
max_deliveries_per_connection = 5
)",
                         &warnings);
  EXPECT_THAT(
      warnings,
      ElementsAre(
          "line 3: key 'consecutive_connection_failures_before_delay' in [\"default\"] is not "
          "supported; ignored",
          "line 4: key 'tls_prefer_openssl' in [\"default\"] is not supported; ignored",
          "line 7: key 'match HostName' in [provider.\"microsoft\"] is not supported; ignored",
          "line 8: key 'smtp_port' in [provider.\"microsoft\"] is not supported; ignored",
          "line 9: key 'prohibited_hosts' in [provider.\"microsoft\"] is not supported; ignored",
          "line 13: key 'action SuspendTenant' in [[provider.\"microsoft\".automation]] is not "
          "supported; the action is ignored",
          "line 15: key 'match_internal' in [[provider.\"microsoft\".automation]] is not "
          "supported; ignored",
          "line 18: key 'mx_rollup' in [\"example.com\"] is not supported; ignored",
          "line 20: key 'additional_connection_limits' in [\"example.com\"] is not supported; "
          "ignored",
          "line 21: key 'provider_connection_limit' in [\"example.com\"] is only for a "
          "[provider] table; ignored",
          "line 24: key 'SetConfig max_ready' in [[\"example.com\".automation]] is not a setting "
          "spate shapes; the action is ignored",
          "line 27: key 'sources' in [\"example.com\"] is not supported; ignored"));
  // What is supported still applies.
  const ShapingValues v = s.Resolve("hotmail.com", {"hotmail-com.olc.protection.outlook.com"});
  EXPECT_EQ(v.connection_limit, 10u);
  ASSERT_EQ(v.automation.size(), 1u);
  EXPECT_EQ(v.automation[0].action, Automation::Action::kSuspend);
  EXPECT_EQ(s.DomainValues("example.com")->automation.size(), 0u);
  EXPECT_EQ(s.DomainValues("example.com")->provider_connection_limit, std::nullopt);
}

TEST(Shaping, ErrorsNameLineAndKey) {
  struct Case {
    const char* text;
    const char* want;
  };
  const Case kCases[] = {
      {"[default]\nconnection_limit = \"10\"\n",
       "line 2: [\"default\"] connection_limit must be an integer from 1 to 1000000"},
      {"[default]\nconnection_limit = 0\n", "line 2: [\"default\"] connection_limit must be"},
      {"[default]\nconnection_limit = -3\n", "line 2: [\"default\"] connection_limit must be"},
      {"[default]\nconnection_limit = 1.5\n", "line 2: [\"default\"] connection_limit must be"},
      {"\n[\"a.example\"]\nmax_message_rate = \"100/week\"\n",
       "line 3: [\"a.example\"] max_message_rate must be a rate"},
      {"[\"a.example\"]\nmax_connection_rate = 100\n",
       "line 2: [\"a.example\"] max_connection_rate must be a rate"},
      {"[\"a.example\"]\nidle_timeout = \"soon\"\n",
       "line 2: [\"a.example\"] idle_timeout must be a duration"},
      {"[\"a.example\"]\nmax_age = -1\n", "line 2: [\"a.example\"] max_age must be a duration"},
      {"[\"a.example\"]\nmax_age = nan\n", "line 2: [\"a.example\"] max_age must be a duration"},
      {"[default]\nenable_tls = \"Always\"\n", "line 2: [\"default\"] enable_tls must be one of"},
      {"[default]\nconnection_limit = 10\nconnection_limit = 11\n", "line 3: "},
      {"[default\n", "line 1: "},
      {"version = 3\n", "line 1: top-level key 'version' is not a table"},
      {"[example.com]\nconnection_limit = 1\n",
       "line 1: [\"example\"] has a section 'com' spate does not know; a domain with dots is "
       "quoted"},
      {"[\"A.example\"]\n[\"a.example.\"]\n",
       "line 2: [\"a.example.\"] is the domain a.example "
       "a second time"},
      {"[provider.\"p\"]\nconnection_limit = 2\n", "line 1: [provider.\"p\"] has no match"},
      {"[provider.\"p\"]\nmatch = [{MXSuffix = \"\"}]\n",
       "line 2: [provider.\"p\"] match MXSuffix must be a non-empty string"},
      {"[provider.\"p\"]\nmatch = [{IPSuffix = \".x\"}]\n",
       "line 2: [provider.\"p\"] match: unknown kind 'IPSuffix'"},
      {"[provider.\"p\"]\nmatch = \".google.com\"\n", "line 2: [provider.\"p\"] match must be"},
      {"[provider.\"p\"]\nmatch = [{MXSuffix = \".x\"}]\n[[provider.\"p\".automation]]\n"
       "regex = \"(\"\naction = \"Suspend\"\nduration = \"1h\"\n",
       "line 4: [[provider.\"p\".automation]] regex \"(\": missing )"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\naction = \"Pause\"\nduration = \"1h\"\n",
       "line 3: [[\"a.example\".automation]] action must be \"Suspend\", \"Bounce\" or"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\naction = {Throttle = 1}\nduration = \"1h\"\n",
       "line 3: [[\"a.example\".automation]] action must be"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\naction = \"Suspend\"\n",
       "line 1: [[\"a.example\".automation]] has no duration"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\nduration = \"1h\"\n",
       "line 1: [[\"a.example\".automation]] has no action"},
      {"[[\"a.example\".automation]]\naction = \"Suspend\"\nduration = \"1h\"\n",
       "line 1: [[\"a.example\".automation]] has no regex"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\naction = \"Suspend\"\nduration = \"0s\"\n",
       "line 4: [[\"a.example\".automation]] duration must be"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\naction = \"Suspend\"\nduration = \"1h\"\n"
       "trigger = {Threshold = \"often\"}\n",
       "line 5: [[\"a.example\".automation]] trigger must be"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\nduration = \"1h\"\n"
       "action = {SetConfig = {name = \"max_message_rate\", value = 5}}\n",
       "line 4: [[\"a.example\".automation]] SetConfig max_message_rate value must be a rate"},
      {"[[\"a.example\".automation]]\nregex = \"x\"\nduration = \"1h\"\n"
       "action = {SetConfig = {name = \"connection_limit\"}}\n",
       "line 4: [[\"a.example\".automation]] SetConfig must be {name"},
      {"[\"a.example\".automation]\nregex = \"x\"\n",
       "line 1: [\"a.example\"] automation must be an array of tables"},
      {"[\"a.example\"]\nconnection_limit = 1\n\xc2\xa1 = 2\n", "line 3: "},
      {"[&", "line 1: "},
      // toml++ 3.3 reaches TOML_UNREACHABLE on this one (tests/fuzz/shaping_fuzz).
      {"2=+.\"\xce\xbc", "line 1: a quote after a '.' in a value"},
      {"[\"a.example\"]\nregex = \"caf\xc3\xa9\"\n", "line 2: a non-ASCII character"},
      {"[\"a.example\"]  # caf\xc3\xa9\n", "line 1: a non-ASCII character"},
  };
  for (const Case& c : kCases)
    EXPECT_THAT(Refused(c.text), HasSubstr(c.want)) << c.text;
  // The first error is the one reported, and warnings of a refused document are dropped.
  std::string error;
  std::vector<std::string> warnings = {"stale"};
  EXPECT_FALSE(
      Shaping::FromToml("[default]\nsmtp_port = 25\nconnection_limit = 0\n", &error, &warnings));
  EXPECT_THAT(error, HasSubstr("line 3: "));
  EXPECT_THAT(warnings, IsEmpty());
}

TEST(Shaping, EmptyDocument) {
  std::vector<std::string> warnings;
  const Shaping s = Load("# nothing, caf\xc3\xa9\n  # \xce\xbc\n", &warnings);
  EXPECT_THAT(warnings, IsEmpty());
  EXPECT_EQ(s.Resolve("a.example", {"mx.a.example"}), ShapingValues());
  EXPECT_EQ(s.ProviderFor("a.example", {}), nullptr);
}

std::string ReadFile(const char* path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(Shaping, ShippedFileLoadsCleanly) {
  const std::string text = ReadFile(SPATE_SHAPING_FILE);
  std::vector<std::string> warnings;
  const Shaping s = Load(text, &warnings);
  EXPECT_THAT(warnings, IsEmpty());
  // ["default"] sets nothing: [delivery] in spate.toml stays every other site's default.
  EXPECT_EQ(s.defaults(), ShapingValues{});

  const Provider* google = s.ProviderFor("gmail.com", {"gmail-smtp-in.l.google.com"});
  ASSERT_NE(google, nullptr);
  EXPECT_EQ(google->name, "google");
  const ShapingValues gmail = s.Resolve("gmail.com", {"gmail-smtp-in.l.google.com"});
  EXPECT_EQ(gmail.connection_limit, google->values.connection_limit);
  EXPECT_TRUE(gmail.max_message_rate.has_value());
  EXPECT_FALSE(gmail.enable_tls.has_value()) << "[delivery] tls decides";
  EXPECT_FALSE(gmail.automation.empty());

  struct Case {
    const char* domain;
    std::vector<std::string> mx;
    const char* provider;
  };
  const Case kCases[] = {
      {"yahoo.com", {"mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"}, "yahoo"},
      {"hotmail.com", {"hotmail-com.olc.protection.outlook.com"}, "outlook"},
      {"contoso.com", {"contoso-com.mail.protection.outlook.com"}, "microsoft365"},
      {"icloud.com", {"mx01.mail.icloud.com", "mx02.mail.icloud.com"}, "apple"},
      {"comcast.net", {"mx1.comcast.net", "mx2.comcast.net"}, "comcast"},
      {"web.de", {"mx-ha03.web.de", "mx-ha02.web.de"}, "united-internet"},
      {"gmx.de", {"mx00.emig.gmx.net", "mx01.emig.gmx.net"}, "united-internet"},
      {"orange.fr", {"smtp-in.orange.fr"}, "orange"},
      {"mail.ru", {"mxs.mail.ru"}, "mailru"},
      {"small.example", {"mx.small.example"}, nullptr},
  };
  for (const Case& c : kCases) {
    const Provider* p = s.ProviderFor(c.domain, c.mx);
    if (c.provider == nullptr) {
      EXPECT_EQ(p, nullptr) << c.domain;
    } else {
      ASSERT_NE(p, nullptr) << c.domain;
      EXPECT_EQ(p->name, c.provider) << c.domain;
    }
  }
  // Yahoo's [TS01] suspends.
  const ShapingValues yahoo = s.Resolve("yahoo.com", {"mta5.am0.yahoodns.net"});
  ASSERT_FALSE(yahoo.automation.empty());
  EXPECT_EQ(yahoo.automation[0].action, Automation::Action::kSuspend);
}

}  // namespace
}  // namespace spate::delivery
