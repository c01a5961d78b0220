// delivery/adaptive.h
//
// What a site runs with (issue 11): SiteLimits, the settings of one site once [delivery] and
// its shaping layers are put together, and AutomationState, the adaptive backoff that moves
// them while the site's server pushes back.
//
// Automation (the shaping file's [[...automation]] rules, delivery/shaping.h): a reply from
// the site's server that matches a rule's regex fires it (at once, or once `threshold`
// matches fell within the threshold's window). The rule's action then holds for its duration:
//   Suspend    no connection and no transaction; the site's mail waits in its queue;
//   SetConfig  one setting overridden (the stricter of it and the normal value for a limit);
//   Bounce     what the site holds and gets fails with the reply, made permanent.
// Then the site returns to normal by steps, not at once (a provider that just throttled us is
// not hit at full rate again): kRecoverySteps steps of a quarter of the duration each (at
// least 1 s, at most 15 min); at step k of 4 a limit is k/4 of the way from the rule's value
// back to the normal one (a rate with no normal limit doubles per step), and after a
// suspension the connection limit and the message rate come back at k/4 of normal. A rule
// that fires again while active or recovering starts over.
//
// Each change is an Event (fired, recovering, ended) for the site to log, record and count.
// Times are the caller's steady clock (a test's fake one).
// Threading: one owner (its site, on the site's shard).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/smtp/reply.h"
#include "delivery/options.h"
#include "delivery/shaping.h"

namespace spate::delivery {

struct SiteLimits {
  unsigned connection_limit = 16;
  unsigned max_deliveries_per_connection = 1000;
  unsigned max_recipients_per_batch = 100;
  double message_rate = 0;     // messages per second; 0: no limit
  double connection_rate = 0;  // connections opened per second; 0: no limit
  Seconds idle_timeout{5};
  Seconds retry_interval{60};
  Seconds max_retry_interval{3600};
  Seconds max_age{5 * 86400};

  bool operator==(const SiteLimits&) const = default;
};

// [delivery]'s settings (options) under the shaping layers' (values; unset keys keep
// options').
SiteLimits LimitsFrom(const Options& options, const ShapingValues& values);
// Per second; 0 for an unset rate.
double PerSecond(const std::optional<Rate>& rate);

// A reply that says "too much, too fast" rather than anything about the message: a 421 (RFC
// 5321 §3.8, the server closing), or a 4xx that names a rate, a throttle, too many
// connections or messages, or a known provider code for it (4.7.28, 4.7.650, [TS0n]). A
// recipient deferred by one is not charged an attempt (delivery.cc).
bool IsRateLimitReply(const smtp::Reply& reply);

class AutomationState {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int kRecoverySteps = 4;

  struct Event {
    enum Kind : uint8_t { kFired, kRecovering, kEnded };
    Kind kind;
    size_t rule;  // index in rules()
  };

  // `base`: the site's limits without automation; `values`: the layers they came from (a
  // SetConfig applies onto them); `rules`: values.automation, most specific first.
  AutomationState(const Options& options, const ShapingValues& values);

  // A reply from the site's server (2xx replies are not looked at). The events of the rules
  // it fires.
  std::vector<Event> OnReply(std::string_view reply_text, Clock::time_point now);
  // Moves every rule on to where it is at `now` (its duration over, the next step of its
  // recovery); the events of those that changed.
  std::vector<Event> Advance(Clock::time_point now);
  // When Advance() next has something to do; Clock::time_point::max() for never.
  Clock::time_point next_change() const;

  // The limits in force now (after Advance()).
  SiteLimits Apply() const;
  const SiteLimits& base() const { return base_; }
  // After a reload: the rules that are the same (label, action and setting) keep where they
  // were in `old` (a suspension goes on).
  void CarryOver(const AutomationState& old);
  bool suspended() const;
  // The Bounce rule in force, or null.
  const Automation* bouncing() const;
  // Active (or recovering) rules, for metrics: true per index in rules().
  bool active(size_t rule) const { return states_[rule].phase != Phase::kIdle; }
  bool any_active() const;
  const std::vector<Automation>& rules() const { return rules_; }
  // Until when rule `i` holds at full strength (its duration's end).
  Clock::time_point until(size_t i) const { return states_[i].until; }

 private:
  enum class Phase : uint8_t { kIdle, kActive, kRecovering };
  struct State {
    Phase phase = Phase::kIdle;
    int step = 0;  // kRecovering: 1..kRecoverySteps-1
    Clock::time_point until{};
    Clock::time_point next{};               // kActive: until; kRecovering: the next step
    std::deque<Clock::time_point> matches;  // Threshold: recent matches, at most `threshold`
  };
  Clock::duration StepLength(const Automation& rule) const;

  std::vector<Automation> rules_;
  std::vector<SiteLimits> overrides_;  // per rule: the limits its SetConfig gives (else base)
  std::vector<State> states_;
  SiteLimits base_;
};

}  // namespace spate::delivery
