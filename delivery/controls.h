// delivery/controls.h
//
// Operators' controls over the queues (issue 13; `spate ctl suspend|resume|bounce`): mail of a
// domain, a site or a campaign held (suspended) until a time or until resumed, or bounced
// (AdminBounce) while the control lasts. Shared by every shard's Delivery, set by the admin API;
// kept across restarts by the daemon (the spool's state), never by delivery.
//
// Where they act (delivery.cc): a job about to join its site's queue that a control matches is
// held in its shard's scheduler (until the suspension's end, or an hour at a time while it has
// none; a resume releases it at once) or bounced there; Delivery::ApplyControls() moves what
// already waits in the sites' queues the same way, and bounces the scheduled jobs a bounce
// matches. Transactions under way finish. A bounce wins over a suspension.
//
// Matching is by exact name: the recipient's domain (lower case), the site's name as the queue
// listing shows it, the message's campaign. Each control expires at its until time (0: a
// suspension until it is lifted; a bounce always has an end).
// Threading: any thread. Match() takes a shared lock, and nothing at all while there is none.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace spate::delivery {

struct Control {
  enum class Action : uint8_t { kSuspend, kBounce };
  enum class Scope : uint8_t { kDomain, kSite, kCampaign };
  Action action = Action::kSuspend;
  Scope scope = Scope::kDomain;
  std::string name;
  std::string reason;
  int64_t since_ms = 0;
  int64_t until_ms = 0;  // unix ms; 0: until lifted (suspensions only)

  bool live(int64_t now_ms) const { return until_ms == 0 || now_ms < until_ms; }
};

std::string_view ActionName(Control::Action a);  // "suspend", "bounce"
std::string_view ScopeName(Control::Scope s);    // "domain", "site", "campaign"
std::optional<Control::Action> ParseAction(std::string_view text);
std::optional<Control::Scope> ParseScope(std::string_view text);

class Controls {
 public:
  // What a control says of one job.
  struct Verdict {
    Control::Action action;
    int64_t until_ms;  // 0: until lifted
    std::string reason;
  };

  // Puts `c` in force, replacing one of the same action, scope and name; what has expired goes.
  void Set(Control c);
  // Lifts the control of that action, scope and name; false when there was none (in force).
  bool Lift(Control::Action action, Control::Scope scope, std::string_view name);
  // Those in force at `now_ms`, in the order they were set.
  std::vector<Control> List(int64_t now_ms) const;

  // The control in force over a job of `domain` for `site` and `campaign` ("" none): a bounce
  // first, then the suspension that ends last; nullopt for none.
  std::optional<Verdict> Match(std::string_view domain, std::string_view site,
                               std::string_view campaign, int64_t now_ms) const;
  // True when no control was ever set, or every one was lifted (one relaxed load).
  bool empty() const { return count_.load(std::memory_order_relaxed) == 0; }

 private:
  mutable std::shared_mutex mu_;
  std::vector<Control> list_;
  std::atomic<size_t> count_{0};
};

}  // namespace spate::delivery
