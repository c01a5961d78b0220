#include "delivery/adaptive.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include <re2/re2.h>

namespace spate::delivery {

namespace {
using Clock = AutomationState::Clock;

template <typename T>
T Or(const std::optional<T>& v, T fallback) {
  return v ? *v : fallback;
}

// The stricter of two rates, 0 being no limit.
double StricterRate(double a, double b) {
  if (a == 0)
    return b;
  if (b == 0)
    return a;
  return std::min(a, b);
}

unsigned Between(unsigned from, unsigned to, double f) {
  const double v = from + (static_cast<double>(to) - from) * f;
  return std::max(1u, static_cast<unsigned>(std::lround(v)));
}
}  // namespace

double PerSecond(const std::optional<Rate>& rate) {
  return rate && rate->count > 0 && rate->per_seconds > 0 ? rate->count / rate->per_seconds : 0;
}

SiteLimits LimitsFrom(const Options& o, const ShapingValues& v) {
  SiteLimits l;
  l.connection_limit = std::max(1u, Or(v.connection_limit, o.max_connections));
  l.max_deliveries_per_connection =
      std::max(1u, Or(v.max_deliveries_per_connection, o.max_messages_per_connection));
  l.max_recipients_per_batch =
      std::max(1u, Or(v.max_recipients_per_batch, o.max_recipients_per_transaction));
  l.message_rate = PerSecond(v.max_message_rate);
  l.connection_rate = PerSecond(v.max_connection_rate);
  l.idle_timeout = Or(v.idle_timeout, o.idle_timeout);
  l.retry_interval = Or(v.retry_interval, o.retry_base);
  l.max_retry_interval = std::max(l.retry_interval, Or(v.max_retry_interval, o.retry_max));
  l.max_age = Or(v.max_age, o.max_age);
  return l;
}

bool IsRateLimitReply(const smtp::Reply& reply) {
  if (reply.code == 421)
    return true;
  if (reply.code < 400 || reply.code >= 500)
    return false;
  // Linear time over hostile text (RE2); the first 1,000 octets are enough.
  static const RE2 kPattern(
      "(?i)rate.?limit|throttl|too many (?:connections|messages|concurrent|sessions)|"
      "(?:sending|message|connection) rate|temporarily (?:rate|deferred)|unusual rate|"
      "\\[TS0[1-3]\\]|4\\.7\\.28|4\\.7\\.650");
  const std::string_view text = std::string_view(reply.text).substr(0, 1000);
  return RE2::PartialMatch(reply.enhanced, kPattern) || RE2::PartialMatch(text, kPattern);
}

AutomationState::AutomationState(const Options& options, const ShapingValues& values)
    : rules_(values.automation), states_(values.automation.size()) {
  base_ = LimitsFrom(options, values);
  overrides_.reserve(rules_.size());
  for (const Automation& r : rules_) {
    ShapingValues with = values;
    if (r.action == Automation::Action::kSetConfig)
      with.Set(r.config_name, r.config_value);  // checked when the file was read
    overrides_.push_back(LimitsFrom(options, with));
  }
}

void AutomationState::CarryOver(const AutomationState& old) {
  for (size_t i = 0; i < rules_.size(); ++i) {
    for (size_t j = 0; j < old.rules_.size(); ++j) {
      const Automation& a = rules_[i];
      const Automation& b = old.rules_[j];
      if (a.label() == b.label() && a.action == b.action && a.config_name == b.config_name &&
          a.config_value == b.config_value) {
        states_[i] = old.states_[j];
        break;
      }
    }
  }
}

Clock::duration AutomationState::StepLength(const Automation& rule) const {
  const auto quarter = std::chrono::duration_cast<Clock::duration>(rule.duration) / kRecoverySteps;
  return std::clamp<Clock::duration>(quarter, std::chrono::seconds(1), std::chrono::minutes(15));
}

std::vector<AutomationState::Event> AutomationState::OnReply(std::string_view reply_text,
                                                             Clock::time_point now) {
  std::vector<Event> events;
  if (reply_text.starts_with('2'))
    return events;  // a success says nothing about pushback
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Automation& r = rules_[i];
    if (!r.Matches(reply_text))
      continue;
    State& s = states_[i];
    if (r.threshold > 0) {
      // {Threshold = "N/hr"}: N matches within the window, then it fires and counts anew.
      const auto window = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(r.threshold_per_seconds));
      s.matches.push_back(now);
      while (!s.matches.empty() && s.matches.front() + window < now)
        s.matches.pop_front();
      if (s.matches.size() < r.threshold)
        continue;
      s.matches.clear();
    }
    s.phase = Phase::kActive;
    s.step = 0;
    s.until = now + std::chrono::duration_cast<Clock::duration>(r.duration);
    s.next = s.until;
    events.push_back({Event::kFired, i});
  }
  return events;
}

std::vector<AutomationState::Event> AutomationState::Advance(Clock::time_point now) {
  std::vector<Event> events;
  for (size_t i = 0; i < rules_.size(); ++i) {
    State& s = states_[i];
    while (s.phase != Phase::kIdle && s.next <= now) {
      if (s.phase == Phase::kActive && rules_[i].action != Automation::Action::kBounce) {
        s.phase = Phase::kRecovering;
        s.step = 1;
        s.next = s.until + StepLength(rules_[i]);
        events.push_back({Event::kRecovering, i});
      } else if (s.phase == Phase::kRecovering && s.step + 1 < kRecoverySteps) {
        ++s.step;
        s.next += StepLength(rules_[i]);
      } else {
        s.phase = Phase::kIdle;
        s.step = 0;
        events.push_back({Event::kEnded, i});
      }
    }
  }
  return events;
}

Clock::time_point AutomationState::next_change() const {
  Clock::time_point next = Clock::time_point::max();
  for (const State& s : states_) {
    if (s.phase != Phase::kIdle)
      next = std::min(next, s.next);
  }
  return next;
}

bool AutomationState::suspended() const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (states_[i].phase == Phase::kActive && rules_[i].action == Automation::Action::kSuspend)
      return true;
  }
  return false;
}

const Automation* AutomationState::bouncing() const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (states_[i].phase == Phase::kActive && rules_[i].action == Automation::Action::kBounce)
      return &rules_[i];
  }
  return nullptr;
}

bool AutomationState::any_active() const {
  return std::any_of(states_.begin(), states_.end(),
                     [](const State& s) { return s.phase != Phase::kIdle; });
}

SiteLimits AutomationState::Apply() const {
  // Per setting, the strictest value any rule in force gives it; a rule recovering gives a
  // value `f` of the way back to normal.
  std::optional<unsigned> connections, deliveries, recipients;
  std::optional<double> message_rate, connection_rate;
  SiteLimits out = base_;
  auto count = [](std::optional<unsigned>* acc, unsigned v) {
    *acc = *acc ? std::min(**acc, v) : v;
  };
  auto rate = [](std::optional<double>* acc, double v) {
    *acc = *acc ? StricterRate(**acc, v) : v;
  };
  auto ramp_rate = [](double rule, double normal, double f, int step) {
    if (normal == 0)  // no normal limit: it doubles per step
      return rule * std::pow(2.0, step);
    return rule + (normal - rule) * f;
  };
  for (size_t i = 0; i < rules_.size(); ++i) {
    const State& s = states_[i];
    if (s.phase == Phase::kIdle)
      continue;
    const double f = s.phase == Phase::kActive ? 0.0 : static_cast<double>(s.step) / kRecoverySteps;
    const Automation& r = rules_[i];
    if (r.action == Automation::Action::kSuspend) {
      if (s.phase == Phase::kRecovering) {
        count(&connections, Between(0, base_.connection_limit, f));
        if (base_.message_rate > 0)
          rate(&message_rate, base_.message_rate * f);
      }
      continue;
    }
    if (r.action != Automation::Action::kSetConfig)
      continue;
    const SiteLimits& o = overrides_[i];
    if (o.connection_limit != base_.connection_limit)
      count(&connections, Between(o.connection_limit, base_.connection_limit, f));
    if (o.max_deliveries_per_connection != base_.max_deliveries_per_connection)
      count(&deliveries,
            Between(o.max_deliveries_per_connection, base_.max_deliveries_per_connection, f));
    if (o.max_recipients_per_batch != base_.max_recipients_per_batch)
      count(&recipients, Between(o.max_recipients_per_batch, base_.max_recipients_per_batch, f));
    if (o.message_rate != base_.message_rate && o.message_rate > 0)
      rate(&message_rate, ramp_rate(o.message_rate, base_.message_rate, f, s.step));
    if (o.connection_rate != base_.connection_rate && o.connection_rate > 0)
      rate(&connection_rate, ramp_rate(o.connection_rate, base_.connection_rate, f, s.step));
    if (s.phase == Phase::kActive) {  // durations switch back at once when it recovers
      out.idle_timeout = o.idle_timeout;
      out.retry_interval = o.retry_interval;
      out.max_retry_interval = o.max_retry_interval;
      out.max_age = o.max_age;
    }
  }
  // A rule slows a site down, never speeds it up: no limit goes past its normal value.
  if (connections)
    out.connection_limit = std::min(*connections, base_.connection_limit);
  if (deliveries)
    out.max_deliveries_per_connection = std::min(*deliveries, base_.max_deliveries_per_connection);
  if (recipients)
    out.max_recipients_per_batch = std::min(*recipients, base_.max_recipients_per_batch);
  if (message_rate)
    out.message_rate = StricterRate(*message_rate, base_.message_rate);
  if (connection_rate)
    out.connection_rate = StricterRate(*connection_rate, base_.connection_rate);
  return out;
}

}  // namespace spate::delivery
