// tests/unit/adaptive_test.cc
//
// delivery/adaptive.h on a fake steady clock, with rules read from real shaping text (so their
// regexes are compiled): LimitsFrom puts [delivery] under the shaping values; IsRateLimitReply
// tells "too fast" from anything about the message; a Suspend, SetConfig or Bounce rule fires
// on a matching reply, holds for its duration, then (but for Bounce) recovers in four steps of
// a quarter of it each (1 s to 15 min) with exact limits at every step; two rules in force give
// the strictest; a Threshold trigger needs its matches within its window; and a reload carries
// a rule that is the same and drops one whose action changed.
#include "delivery/adaptive.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace spate::delivery {
namespace {

using namespace std::chrono_literals;
using Clock = AutomationState::Clock;
using Event = AutomationState::Event;

// The values of ["example.com"] in `toml` (a shaping document).
ShapingValues DomainValues(const std::string& toml) {
  std::string error;
  std::vector<std::string> warnings;
  std::optional<Shaping> s = Shaping::FromToml(toml, &error, &warnings);
  EXPECT_TRUE(s.has_value()) << error;
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  if (!s || s->DomainValues("example.com") == nullptr) {
    ADD_FAILURE() << "no [\"example.com\"] in\n" << toml;
    return {};
  }
  return *s->DomainValues("example.com");
}

// ["example.com"] with connection_limit 8, `rate` (a max_message_rate, or none when empty),
// and `rules`: [["example.com".automation]] tables.
std::string Domain(const std::string& rules, const std::string& rate = "20/s") {
  std::string text = "[\"example.com\"]\nconnection_limit = 8\n";
  if (!rate.empty())
    text += "max_message_rate = \"" + rate + "\"\n";
  return text + rules;
}

std::string Rule(const std::string& regex, const std::string& action, const std::string& duration,
                 const std::string& trigger = "") {
  std::string text = "[[\"example.com\".automation]]\nregex = \"" + regex +
                     "\"\naction = " + action + "\nduration = \"" + duration + "\"\n";
  if (!trigger.empty())
    text += "trigger = " + trigger + "\n";
  return text;
}

std::string SetConfig(const std::string& name, const std::string& value) {
  return "{SetConfig = {name = \"" + name + "\", value = " + value + "}}";
}

const Clock::time_point t0(1h);

bool Is(const std::vector<Event>& events, Event::Kind kind, size_t rule) {
  return events.size() == 1 && events[0].kind == kind && events[0].rule == rule;
}

// --- LimitsFrom, PerSecond ---

TEST(SiteLimits, UnsetKeysKeepTheDeliveryOptions) {
  Options o;
  o.max_connections = 3;
  o.max_messages_per_connection = 40;
  o.max_recipients_per_transaction = 50;
  o.idle_timeout = Seconds(7);
  o.retry_base = Seconds(120);
  o.retry_max = Seconds(7200);
  o.max_age = Seconds(86400);
  const SiteLimits l = LimitsFrom(o, ShapingValues{});
  EXPECT_EQ(l.connection_limit, 3u);
  EXPECT_EQ(l.max_deliveries_per_connection, 40u);
  EXPECT_EQ(l.max_recipients_per_batch, 50u);
  EXPECT_EQ(l.message_rate, 0) << "no rate: no limit";
  EXPECT_EQ(l.connection_rate, 0);
  EXPECT_EQ(l.idle_timeout, Seconds(7));
  EXPECT_EQ(l.retry_interval, Seconds(120));
  EXPECT_EQ(l.max_retry_interval, Seconds(7200));
  EXPECT_EQ(l.max_age, Seconds(86400));
}

TEST(SiteLimits, SetKeysWinAndRatesArePerSecond) {
  const ShapingValues v = DomainValues(R"(["example.com"]
connection_limit = 8
max_deliveries_per_connection = 25
max_recipients_per_batch = 10
max_message_rate = "100/min"
max_connection_rate = "3/s"
idle_timeout = "30s"
retry_interval = "5m"
max_retry_interval = "2h"
max_age = "1d"
)");
  Options o;
  o.max_connections = 3;
  const SiteLimits l = LimitsFrom(o, v);
  EXPECT_EQ(l.connection_limit, 8u);
  EXPECT_EQ(l.max_deliveries_per_connection, 25u);
  EXPECT_EQ(l.max_recipients_per_batch, 10u);
  EXPECT_NEAR(l.message_rate, 1.6667, 1e-4);
  EXPECT_DOUBLE_EQ(l.message_rate, 100.0 / 60);
  EXPECT_DOUBLE_EQ(l.connection_rate, 3);
  EXPECT_EQ(l.idle_timeout, Seconds(30));
  EXPECT_EQ(l.retry_interval, Seconds(300));
  EXPECT_EQ(l.max_retry_interval, Seconds(7200));
  EXPECT_EQ(l.max_age, Seconds(86400));
}

TEST(SiteLimits, SomeKeysSetTheOthersFromOptions) {
  const ShapingValues v = DomainValues("[\"example.com\"]\nconnection_limit = 8\n");
  Options o;
  o.max_messages_per_connection = 40;
  const SiteLimits l = LimitsFrom(o, v);
  EXPECT_EQ(l.connection_limit, 8u);
  EXPECT_EQ(l.max_deliveries_per_connection, 40u);
  EXPECT_EQ(l.max_recipients_per_batch, Options().max_recipients_per_transaction);
  EXPECT_EQ(l.retry_interval, Options().retry_base);
}

TEST(SiteLimits, ARetryIntervalOverTheMaximumRaisesTheMaximum) {
  const ShapingValues v = DomainValues("[\"example.com\"]\nretry_interval = \"2h\"\n");
  Options o;
  o.retry_max = Seconds(3600);
  EXPECT_EQ(LimitsFrom(o, v).max_retry_interval, Seconds(7200));
}

TEST(SiteLimits, PerSecondOfRates) {
  EXPECT_EQ(PerSecond(std::nullopt), 0);
  EXPECT_DOUBLE_EQ(PerSecond(Rate{100, 60}), 100.0 / 60);
  EXPECT_DOUBLE_EQ(PerSecond(Rate{20, 1}), 20);
  EXPECT_DOUBLE_EQ(PerSecond(Rate{36, 3600}), 0.01);
  EXPECT_EQ(PerSecond(Rate{0, 1}), 0) << "count 0 is unset";
}

// --- IsRateLimitReply ---

TEST(RateLimitReply, Table) {
  struct Case {
    smtp::Reply reply;
    bool want;
  };
  const Case kCases[] = {
      {{421, "", "closing connection"}, true},
      {{421, "4.3.2", "System shutting down"}, true},
      {{421, "4.7.0", "[TS01] Messages from 192.0.2.1 temporarily deferred"}, true},
      {{451, "4.7.28", "Our system has detected an unusual rate of unsolicited mail"}, true},
      {{451, "4.7.28", "try again later"}, true},  // the enhanced code alone
      {{450, "4.7.650", "The mail server has been temporarily rate limited"}, true},
      {{451, "4.7.0", "[TS02] Messages from 192.0.2.1 temporarily deferred"}, true},
      {{450, "4.7.1", "Rate Limit exceeded"}, true},
      {{451, "4.7.1", "Too many connections from your IP"}, true},
      {{452, "4.5.3", "too many messages in this session"}, true},
      {{450, "", "you are being throttled"}, true},
      {{452, "4.2.2", "mailbox full"}, false},
      {{451, "4.3.0", "try later"}, false},
      {{450, "4.2.1", "mailbox busy"}, false},
      {{550, "5.7.1", "rate limit exceeded"}, false},
      {{554, "5.7.28", "unusual rate"}, false},
      {{521, "", "[TS01] closing"}, false},
      {{250, "2.0.0", "Ok, rate limited"}, false},
      {{220, "", "throttle"}, false},
      {{0, "", "rate limit"}, false},
  };
  for (const Case& c : kCases)
    EXPECT_EQ(IsRateLimitReply(c.reply), c.want) << c.reply.ToString();
}

// --- Suspend ---

TEST(AutomationState, ASuspendRuleHoldsForItsDurationThenRecoversInFourSteps) {
  AutomationState state(Options(),
                        DomainValues(Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s"))));
  ASSERT_EQ(state.rules().size(), 1u);
  const SiteLimits base = state.base();
  EXPECT_EQ(base.connection_limit, 8u);
  EXPECT_DOUBLE_EQ(base.message_rate, 20);
  EXPECT_FALSE(state.suspended());
  EXPECT_FALSE(state.any_active());
  EXPECT_EQ(state.next_change(), Clock::time_point::max());
  EXPECT_EQ(state.Apply(), base);

  EXPECT_TRUE(state.OnReply("451 4.3.0 try later", t0).empty());
  EXPECT_FALSE(state.suspended());
  EXPECT_FALSE(state.any_active());

  EXPECT_TRUE(Is(state.OnReply("421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred", t0),
                 Event::kFired, 0));
  EXPECT_TRUE(state.suspended());
  EXPECT_TRUE(state.any_active());
  EXPECT_TRUE(state.active(0));
  EXPECT_EQ(state.next_change(), t0 + 4s);
  EXPECT_EQ(state.until(0), t0 + 4s);
  EXPECT_EQ(state.bouncing(), nullptr);

  EXPECT_TRUE(state.Advance(t0 + 3999ms).empty());
  EXPECT_TRUE(state.suspended());

  // Step 1 of 4: a quarter of the connections and of the rate.
  EXPECT_TRUE(Is(state.Advance(t0 + 4s), Event::kRecovering, 0));
  EXPECT_FALSE(state.suspended());
  EXPECT_TRUE(state.any_active());
  EXPECT_EQ(state.next_change(), t0 + 5s);
  EXPECT_EQ(state.Apply().connection_limit, 2u);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 5);

  EXPECT_TRUE(state.Advance(t0 + 5s).empty());
  EXPECT_EQ(state.next_change(), t0 + 6s);
  EXPECT_EQ(state.Apply().connection_limit, 4u);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 10);

  EXPECT_TRUE(state.Advance(t0 + 6s).empty());
  EXPECT_EQ(state.next_change(), t0 + 7s);
  EXPECT_EQ(state.Apply().connection_limit, 6u);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 15);

  EXPECT_TRUE(Is(state.Advance(t0 + 7s), Event::kEnded, 0));
  EXPECT_EQ(state.Apply(), base);
  EXPECT_FALSE(state.any_active());
  EXPECT_FALSE(state.active(0));
  EXPECT_FALSE(state.suspended());
  EXPECT_EQ(state.next_change(), Clock::time_point::max());
  EXPECT_TRUE(state.Advance(t0 + 1h).empty());
}

TEST(AutomationState, ASuspensionRecoversToAtLeastOneConnection) {
  // connection_limit 1: a quarter of it rounds to 0, and a site needs one.
  AutomationState state(Options(), DomainValues("[\"example.com\"]\nconnection_limit = 1\n" +
                                                Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s")));
  ASSERT_EQ(state.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u);
  state.Advance(t0 + 4s);
  EXPECT_FALSE(state.suspended());
  EXPECT_EQ(state.Apply().connection_limit, 1u);
  EXPECT_EQ(state.Apply().message_rate, 0) << "no normal rate: none while recovering either";
}

TEST(AutomationState, AMatchWhileRecoveringStartsItOver) {
  AutomationState state(Options(),
                        DomainValues(Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s"))));
  ASSERT_EQ(state.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u);
  state.Advance(t0 + 4s);
  state.Advance(t0 + 5s);
  ASSERT_FALSE(state.suspended());
  ASSERT_EQ(state.Apply().connection_limit, 4u);

  EXPECT_TRUE(Is(state.OnReply("421 4.7.0 [TS01] deferred", t0 + 5500ms), Event::kFired, 0));
  EXPECT_TRUE(state.suspended());
  EXPECT_EQ(state.Apply().connection_limit, 8u) << "suspended: no step of the old recovery";
  EXPECT_EQ(state.next_change(), t0 + 9500ms);
  EXPECT_TRUE(state.Advance(t0 + 9s).empty());
  EXPECT_TRUE(state.suspended());
  EXPECT_TRUE(Is(state.Advance(t0 + 9500ms), Event::kRecovering, 0));
  EXPECT_EQ(state.Apply().connection_limit, 2u) << "step 1 again";
}

TEST(AutomationState, AMatchWhileActiveExtendsIt) {
  AutomationState state(Options(),
                        DomainValues(Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s"))));
  ASSERT_EQ(state.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u);
  EXPECT_TRUE(Is(state.OnReply("421 4.7.0 [TS01] deferred", t0 + 3s), Event::kFired, 0));
  EXPECT_EQ(state.next_change(), t0 + 7s);
  EXPECT_TRUE(state.Advance(t0 + 4s).empty());
  EXPECT_TRUE(state.suspended());
}

TEST(AutomationState, AnAdvanceLongAfterGivesRecoveringAndEndedAtOnce) {
  AutomationState state(Options(),
                        DomainValues(Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s"))));
  ASSERT_EQ(state.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u);
  const std::vector<Event> events = state.Advance(t0 + 1h);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Event::kRecovering);
  EXPECT_EQ(events[1].kind, Event::kEnded);
  EXPECT_FALSE(state.any_active());
  EXPECT_EQ(state.Apply(), state.base());
}

TEST(AutomationState, RecoveryStepsAreAQuarterOfTheDurationFromOneSecondToFifteenMinutes) {
  struct Case {
    const char* duration;
    Clock::duration until;
    Clock::duration step;
  };
  const Case kCases[] = {
      {"2s", 2s, 1s},     // a quarter is 500 ms: at least 1 s
      {"1m", 60s, 15s},   // a quarter
      {"2h", 2h, 15min},  // a quarter is 30 min: at most 15 min
      {"4s", 4s, 1s},
  };
  for (const Case& c : kCases) {
    AutomationState state(Options(),
                          DomainValues(Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", c.duration))));
    ASSERT_EQ(state.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u) << c.duration;
    EXPECT_EQ(state.next_change(), t0 + c.until) << c.duration;
    state.Advance(t0 + c.until);
    EXPECT_EQ(state.next_change(), t0 + c.until + c.step) << c.duration;
    state.Advance(t0 + c.until + c.step);
    EXPECT_EQ(state.next_change(), t0 + c.until + 2 * c.step) << c.duration;
    state.Advance(t0 + c.until + 2 * c.step);
    EXPECT_EQ(state.next_change(), t0 + c.until + 3 * c.step) << c.duration;
    EXPECT_TRUE(Is(state.Advance(t0 + c.until + 3 * c.step), Event::kEnded, 0)) << c.duration;
  }
}

// --- SetConfig ---

TEST(AutomationState, ASetConfigRateRampsFromTheRulesValueBackToTheNormalOne) {
  AutomationState state(
      Options(), DomainValues(Domain(
                     Rule("4\\\\.7\\\\.650", SetConfig("max_message_rate", "\"1/s\""), "4s"))));
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 20);
  ASSERT_TRUE(Is(state.OnReply("450 4.7.650 rate limited", t0), Event::kFired, 0));
  EXPECT_FALSE(state.suspended()) << "a SetConfig suspends nothing";
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 1);
  EXPECT_EQ(state.Apply().connection_limit, 8u) << "the other settings stay";
  EXPECT_TRUE(Is(state.Advance(t0 + 4s), Event::kRecovering, 0));
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 1 + 19 * 0.25);  // 5.75
  state.Advance(t0 + 5s);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 1 + 19 * 0.5);  // 10.5
  state.Advance(t0 + 6s);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 1 + 19 * 0.75);  // 15.25
  EXPECT_TRUE(Is(state.Advance(t0 + 7s), Event::kEnded, 0));
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 20);
  EXPECT_EQ(state.Apply(), state.base());
}

TEST(AutomationState, ASetConfigRateWithNoNormalRateDoublesPerStepThenIsLifted) {
  AutomationState state(
      Options(), DomainValues(Domain(
                     Rule("4\\\\.7\\\\.650", SetConfig("max_message_rate", "\"1/s\""), "4s"), "")));
  EXPECT_EQ(state.base().message_rate, 0);
  ASSERT_EQ(state.OnReply("450 4.7.650 rate limited", t0).size(), 1u);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 1);
  state.Advance(t0 + 4s);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 2);
  state.Advance(t0 + 5s);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 4);
  state.Advance(t0 + 6s);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 8);
  EXPECT_TRUE(Is(state.Advance(t0 + 7s), Event::kEnded, 0));
  EXPECT_EQ(state.Apply().message_rate, 0) << "no limit again";
}

TEST(AutomationState, ASetConfigConnectionLimitRampsInRoundedSteps) {
  AutomationState state(
      Options(), DomainValues(Domain(Rule("slow down", SetConfig("connection_limit", "2"), "4s"))));
  ASSERT_EQ(state.OnReply("451 4.7.1 slow down", t0).size(), 1u);
  EXPECT_EQ(state.Apply().connection_limit, 2u);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 20) << "the other settings stay";
  state.Advance(t0 + 4s);
  EXPECT_EQ(state.Apply().connection_limit, 4u);  // lround(2 + 6 * 1/4 = 3.5)
  state.Advance(t0 + 5s);
  EXPECT_EQ(state.Apply().connection_limit, 5u);  // 2 + 6 * 2/4
  state.Advance(t0 + 6s);
  EXPECT_EQ(state.Apply().connection_limit, 7u);  // lround(2 + 6 * 3/4 = 6.5)
  state.Advance(t0 + 7s);
  EXPECT_EQ(state.Apply().connection_limit, 8u);
  EXPECT_FALSE(state.any_active());
}

TEST(AutomationState, ASetConfigDurationHoldsWhileActiveAndSwitchesBackWhenItRecovers) {
  AutomationState state(
      Options(),
      DomainValues(Domain(Rule("slow down", SetConfig("idle_timeout", "\"1m\""), "4s"))));
  const Seconds normal = state.base().idle_timeout;
  ASSERT_EQ(state.OnReply("451 4.7.1 slow down", t0).size(), 1u);
  EXPECT_EQ(state.Apply().idle_timeout, Seconds(60));
  state.Advance(t0 + 4s);
  EXPECT_EQ(state.Apply().idle_timeout, normal);
}

TEST(AutomationState, TwoSetConfigRulesInForceGiveTheStrictest) {
  AutomationState state(
      Options(),
      DomainValues(Domain(Rule("slow", SetConfig("connection_limit", "2"), "4s") +
                          Rule("slow|busy", SetConfig("connection_limit", "5"), "40s"))));
  ASSERT_EQ(state.rules().size(), 2u);
  const std::vector<Event> fired = state.OnReply("451 4.7.1 slow down", t0);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].kind, Event::kFired);
  EXPECT_EQ(fired[0].rule, 0u);
  EXPECT_EQ(fired[1].kind, Event::kFired);
  EXPECT_EQ(fired[1].rule, 1u);
  EXPECT_EQ(state.next_change(), t0 + 4s) << "the earlier of the two";
  EXPECT_EQ(state.Apply().connection_limit, 2u);
  EXPECT_TRUE(Is(state.Advance(t0 + 4s), Event::kRecovering, 0));
  EXPECT_EQ(state.Apply().connection_limit, 4u);  // 4 of rule 0 under 5 of rule 1
  state.Advance(t0 + 5s);
  EXPECT_EQ(state.Apply().connection_limit, 5u);
  state.Advance(t0 + 6s);
  EXPECT_EQ(state.Apply().connection_limit, 5u);  // 7 of rule 0 over 5 of rule 1
  EXPECT_TRUE(Is(state.Advance(t0 + 7s), Event::kEnded, 0));
  EXPECT_EQ(state.Apply().connection_limit, 5u);
  EXPECT_TRUE(state.any_active());
  EXPECT_EQ(state.next_change(), t0 + 40s);
  // Only rule 1 matches "busy".
  EXPECT_TRUE(Is(state.OnReply("451 4.7.1 busy", t0 + 8s), Event::kFired, 1));
  EXPECT_FALSE(state.active(0));
}

TEST(AutomationState, ASuspensionRecoveringAndASetConfigRateGiveTheStrictestOfEach) {
  AutomationState state(
      Options(), DomainValues(Domain(
                     Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s") +
                     Rule("\\\\[TS01\\\\]", SetConfig("max_message_rate", "\"2/s\""), "40s"))));
  ASSERT_EQ(state.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 2u);
  EXPECT_TRUE(state.suspended());
  state.Advance(t0 + 4s);
  EXPECT_FALSE(state.suspended());
  EXPECT_EQ(state.Apply().connection_limit, 2u) << "the suspension's quarter";
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 2) << "the SetConfig's 2/s under the 5/s";
  state.Advance(t0 + 7s);
  EXPECT_EQ(state.Apply().connection_limit, 8u);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 2);
}

// adaptive.h: "SetConfig  one setting overridden (the stricter of it and the normal value for
// a limit)": a rule that sets a looser limit than the site's own must not raise it.
TEST(AutomationState, ASetConfigLooserConnectionLimitDoesNotRaiseTheSitesLimit) {
  AutomationState state(
      Options(), DomainValues(Domain(Rule("slow", SetConfig("connection_limit", "16"), "4s"))));
  ASSERT_EQ(state.OnReply("451 4.7.1 slow", t0).size(), 1u);
  EXPECT_EQ(state.Apply().connection_limit, 8u) << "16 is looser than the site's 8";
  state.Advance(t0 + 4s);
  EXPECT_EQ(state.Apply().connection_limit, 8u) << "nor while it recovers";
}

TEST(AutomationState, ASetConfigLooserRateDoesNotRaiseTheSitesRate) {
  AutomationState state(
      Options(),
      DomainValues(Domain(Rule("fast", SetConfig("max_message_rate", "\"40/s\""), "4s"))));
  ASSERT_EQ(state.OnReply("451 4.7.1 fast", t0).size(), 1u);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 20) << "40/s is looser than the site's 20/s";
  state.Advance(t0 + 4s);
  EXPECT_DOUBLE_EQ(state.Apply().message_rate, 20) << "nor while it recovers";
}

// --- Threshold ---

TEST(AutomationState, AThresholdRuleFiresOnItsThirdMatchWithinAMinute) {
  AutomationState state(Options(), DomainValues(Domain(Rule("4\\\\.7\\\\.650", "\"Suspend\"", "1h",
                                                            "{Threshold = \"3/min\"}"))));
  ASSERT_EQ(state.rules()[0].threshold, 3u);
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0).empty());
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 10s).empty());
  EXPECT_FALSE(state.any_active());
  EXPECT_TRUE(state.OnReply("451 4.3.0 try later", t0 + 15s).empty()) << "no match: not counted";
  EXPECT_TRUE(Is(state.OnReply("450 4.7.650 rate limited", t0 + 20s), Event::kFired, 0));
  EXPECT_TRUE(state.suspended());
  EXPECT_EQ(state.next_change(), t0 + 20s + 1h);
  // It counts anew: two more matches do not fire it again.
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 21s).empty());
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 22s).empty());
  EXPECT_EQ(state.next_change(), t0 + 20s + 1h);
}

TEST(AutomationState, AThresholdRuleDoesNotFireOnMatchesSpreadOverMoreThanAMinute) {
  AutomationState state(Options(), DomainValues(Domain(Rule("4\\\\.7\\\\.650", "\"Suspend\"", "1h",
                                                            "{Threshold = \"3/min\"}"))));
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0).empty());
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 40s).empty());
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 80s).empty());
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 150s).empty());
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 220s).empty());
  EXPECT_TRUE(state.OnReply("450 4.7.650 rate limited", t0 + 225s).empty());
  EXPECT_FALSE(state.any_active());
  // With the two of the last ten seconds: three within a minute.
  EXPECT_TRUE(Is(state.OnReply("450 4.7.650 rate limited", t0 + 230s), Event::kFired, 0));
}

// --- Bounce ---

TEST(AutomationState, ABounceRuleBouncesForItsDurationThenEndsWithNoRecovery) {
  AutomationState state(Options(), DomainValues(Domain(Rule("5\\\\.7\\\\.1", "\"Bounce\"", "4s"))));
  EXPECT_EQ(state.bouncing(), nullptr);
  ASSERT_TRUE(Is(state.OnReply("550 5.7.1 blocked", t0), Event::kFired, 0));
  EXPECT_EQ(state.bouncing(), &state.rules()[0]);
  EXPECT_FALSE(state.suspended());
  EXPECT_EQ(state.Apply(), state.base());
  EXPECT_EQ(state.next_change(), t0 + 4s);
  EXPECT_TRUE(state.Advance(t0 + 3s).empty());
  EXPECT_NE(state.bouncing(), nullptr);
  EXPECT_TRUE(Is(state.Advance(t0 + 4s), Event::kEnded, 0));
  EXPECT_EQ(state.bouncing(), nullptr);
  EXPECT_FALSE(state.any_active());
  EXPECT_EQ(state.next_change(), Clock::time_point::max());
  EXPECT_EQ(state.Apply(), state.base());
}

// --- CarryOver ---

TEST(AutomationState, CarryOverKeepsASuspensionAcrossAReloadOfTheSameRules) {
  const std::string text = Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s"));
  AutomationState old(Options(), DomainValues(text));
  ASSERT_EQ(old.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u);

  AutomationState next(Options(), DomainValues(text));
  EXPECT_FALSE(next.suspended());
  next.CarryOver(old);
  EXPECT_TRUE(next.suspended());
  EXPECT_EQ(next.next_change(), t0 + 4s);
  EXPECT_EQ(next.until(0), t0 + 4s);
  EXPECT_TRUE(Is(next.Advance(t0 + 4s), Event::kRecovering, 0));
  EXPECT_EQ(next.Apply().connection_limit, 2u);
}

TEST(AutomationState, CarryOverKeepsARecoveryWhereItWas) {
  const std::string text = Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s"));
  AutomationState old(Options(), DomainValues(text));
  ASSERT_EQ(old.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u);
  old.Advance(t0 + 5s);
  AutomationState next(Options(), DomainValues(text));
  next.CarryOver(old);
  EXPECT_EQ(next.Apply().connection_limit, 4u);
  EXPECT_EQ(next.next_change(), t0 + 6s);
}

TEST(AutomationState, CarryOverDropsARuleWhoseActionChanged) {
  // The same regex at the same line (the same label), another action.
  AutomationState old(Options(), DomainValues(Domain(Rule("\\\\[TS01\\\\]", "\"Suspend\"", "4s"))));
  ASSERT_EQ(old.OnReply("421 4.7.0 [TS01] deferred", t0).size(), 1u);
  AutomationState next(
      Options(),
      DomainValues(Domain(Rule("\\\\[TS01\\\\]", SetConfig("connection_limit", "2"), "4s"))));
  ASSERT_EQ(next.rules()[0].label(), old.rules()[0].label());
  next.CarryOver(old);
  EXPECT_FALSE(next.suspended());
  EXPECT_FALSE(next.any_active());
  EXPECT_EQ(next.Apply(), next.base());
}

TEST(AutomationState, CarryOverDropsASetConfigWhoseValueChanged) {
  AutomationState old(Options(),
                      DomainValues(Domain(Rule("slow", SetConfig("connection_limit", "2"), "4s"))));
  ASSERT_EQ(old.OnReply("451 4.7.1 slow", t0).size(), 1u);
  AutomationState same(
      Options(), DomainValues(Domain(Rule("slow", SetConfig("connection_limit", "2"), "4s"))));
  same.CarryOver(old);
  EXPECT_EQ(same.Apply().connection_limit, 2u);
  AutomationState changed(
      Options(), DomainValues(Domain(Rule("slow", SetConfig("connection_limit", "3"), "4s"))));
  changed.CarryOver(old);
  EXPECT_FALSE(changed.any_active());
  EXPECT_EQ(changed.Apply().connection_limit, 8u);
}

}  // namespace
}  // namespace spate::delivery
