#include "delivery/controls.h"

#include <mutex>
#include <vector>

namespace spate::delivery {

std::string_view ActionName(Control::Action a) {
  return a == Control::Action::kBounce ? "bounce" : "suspend";
}

std::string_view ScopeName(Control::Scope s) {
  switch (s) {
    case Control::Scope::kDomain:
      return "domain";
    case Control::Scope::kSite:
      return "site";
    case Control::Scope::kCampaign:
      return "campaign";
  }
  return "domain";
}

std::optional<Control::Action> ParseAction(std::string_view text) {
  if (text == "suspend")
    return Control::Action::kSuspend;
  if (text == "bounce")
    return Control::Action::kBounce;
  return std::nullopt;
}

std::optional<Control::Scope> ParseScope(std::string_view text) {
  if (text == "domain")
    return Control::Scope::kDomain;
  if (text == "site")
    return Control::Scope::kSite;
  if (text == "campaign")
    return Control::Scope::kCampaign;
  return std::nullopt;
}

void Controls::Set(Control c) {
  std::unique_lock lock(mu_);
  const int64_t now = c.since_ms;
  std::erase_if(list_, [&](const Control& x) {
    return !x.live(now) || (x.action == c.action && x.scope == c.scope && x.name == c.name);
  });
  list_.push_back(std::move(c));
  count_.store(list_.size(), std::memory_order_relaxed);
}

bool Controls::Lift(Control::Action action, Control::Scope scope, std::string_view name) {
  std::unique_lock lock(mu_);
  const size_t n = std::erase_if(list_, [&](const Control& x) {
    return x.action == action && x.scope == scope && x.name == name;
  });
  count_.store(list_.size(), std::memory_order_relaxed);
  return n > 0;
}

std::vector<Control> Controls::List(int64_t now_ms) const {
  std::shared_lock lock(mu_);
  std::vector<Control> out;
  for (const Control& c : list_) {
    if (c.live(now_ms))
      out.push_back(c);
  }
  return out;
}

std::optional<Controls::Verdict> Controls::Match(std::string_view domain, std::string_view site,
                                                 std::string_view campaign, int64_t now_ms) const {
  if (empty())
    return std::nullopt;
  std::shared_lock lock(mu_);
  const Control* best = nullptr;
  for (const Control& c : list_) {
    if (!c.live(now_ms))
      continue;
    const std::string_view of = c.scope == Control::Scope::kDomain ? domain
                                : c.scope == Control::Scope::kSite ? site
                                                                   : campaign;
    if (of.empty() || of != c.name)
      continue;
    if (c.action == Control::Action::kBounce)
      return Verdict{c.action, c.until_ms, c.reason};
    if (best == nullptr ||
        (best->until_ms != 0 && (c.until_ms == 0 || c.until_ms > best->until_ms)))
      best = &c;  // of two suspensions, the one that holds longer
  }
  if (best == nullptr)
    return std::nullopt;
  return Verdict{best->action, best->until_ms, best->reason};
}

}  // namespace spate::delivery
