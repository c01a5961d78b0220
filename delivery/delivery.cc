#include "delivery/delivery.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <unordered_map>

#include "core/allocator.h"
#include "core/log.h"
#include "core/smtp/address.h"
#include "core/smtp/server_session.h"
#include "core/tls/tls.h"
#include "delivery/accounting.h"
#include "delivery/adaptive.h"
#include "delivery/bounce_class.h"
#include "delivery/dsn.h"
#include "delivery/pool.h"
#include "delivery/scheduler.h"

namespace spate::delivery {

namespace {
using Clock = Reactor::Clock;

// Forgetting this many sites in one sweep, or finishing this many recipients between two
// sweeps, gives the freed memory back to the system.
constexpr size_t kTrimAfterRemoving = 1000;
constexpr size_t kTrimAfterFinishing = 100000;

// What makes a DSN's Message-ID and MIME boundary its own (dsn::Report::unique): the message's
// id and a number no other DSN of this process has, every shard's counted together, mixed
// (splitmix64) so that nearby ids and numbers do not meet.
uint64_t DsnUnique(uint64_t message_id) {
  static std::atomic<uint64_t> made{0};
  uint64_t x =
      message_id ^ (made.fetch_add(1, std::memory_order_relaxed) + 1) * 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

namespace {
// The Remote-MTA of a DSN (RFC 3464 §2.3.5): the MX host's name, or the configured route's
// address; "" when no connection got that far.
// What a notice of several recipients is, as its Subject says: failed if any failed, else
// delayed if any is, else relayed.
dsn::Action MainAction(const std::vector<Outcomes::Bounced>& bounced) {
  dsn::Action main = dsn::Action::kRelayed;
  for (const Outcomes::Bounced& b : bounced) {
    if (b.action == dsn::Action::kFailed)
      return b.action;
    if (b.action == dsn::Action::kDelayed)
      main = b.action;
  }
  return main;
}

std::string RemoteOf(const Peer* peer) {
  if (peer == nullptr)
    return {};
  if (!peer->name.empty())
    return peer->name;
  std::string_view host = peer->address;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  return std::string(host);
}
}  // namespace

struct Delivery::Impl final : public Engine {
  Impl(Reactor& r, const Options& o, SpoolPort& sp, Routing& rt, Stats& st, uint64_t seed)
      : reactor_(r),
        options_(o),
        spool(sp),
        routing_(rt),
        stats_(st),
        classifier_(o.classifier != nullptr ? *o.classifier : Classifier::Default()),
        rng(seed != 0 ? seed : std::random_device{}()),
        scheduler(r, [this](Job&& job) { Due(std::move(job)); }) {}

  ~Impl() override {
    reactor_.CancelTimer(sweep_timer);
    // Connections are gone by now (Shutdown aborted them, and the shard drained the ring).
  }

  // Engine
  Reactor& reactor() override { return reactor_; }
  const Options& options() const override { return options_; }
  Stats& stats() override { return stats_; }
  const tls::TlsContext* tls_context() const override { return tls_context_; }
  tlsrpt::Reports* tls_reports() override { return tls_reports_; }
  Cluster* cluster() override { return cluster_; }
  bool shutting_down() const override { return shutting_down_; }
  void Record(Site* site, const Job& job, size_t i, const smtp::Reply& reply, Outcomes* outcomes,
              const Peer* peer = nullptr) override;
  void Reschedule(Job&& job, Outcomes&& outcomes) override;
  void LoadBody(Site& site, Job&& job) override;
  bool HoldBody(size_t bytes, bool force) override {
    if (!force && held_body_bytes + bytes > options_.max_body_bytes)
      return false;
    held_body_bytes += bytes;
    return true;
  }
  void ReleaseBody(size_t bytes) override { held_body_bytes -= std::min(held_body_bytes, bytes); }
  bool TlsBroken(const std::string& site) override;
  void MarkTlsBroken(const std::string& site) override;
  ProviderLimits& provider_limits() override { return *provider_limits_; }
  void Submitted(Site& site, Job& job) override {
    job.in_flight = true;
    CountInFlight(&site, job, static_cast<int64_t>(job.recipients.size()));
  }
  void CountInFlight(Site* site, const Job& job, int64_t n) {
    if (job.recipients.empty())
      return;
    if (site != nullptr) {
      site->stats().in_flight.Add(n);
      if (site->own_domain_stats() != nullptr)
        return site->own_domain_stats()->in_flight.Add(n);
    }
    DomainStatsOf(job.address(job.recipients.front())).in_flight.Add(n);
  }
  // An operator's control (controls.h) over `job` on its way to `site`: held in the scheduler
  // or bounced (true: taken), or left to go (false).
  bool Controlled(std::string_view site, Job& job);
  // Bounces every recipient of `job` by the operator's word (AdminBounce records, DSNs).
  void AdminBounce(Job&& job, const std::string& reason);
  void RecordAutomation(Site& site, const Automation& rule, AutomationState::Event event,
                        const smtp::Reply* reply, Clock::time_point until) override;

  // The shaping's provider of `domain` routed by `route` (null: none, or no shaping).
  const Provider* ProviderOf(std::string_view domain, const delivery::Route& route);
  SitePolicy MakePolicy(std::string_view domain, const delivery::Route& route, bool own_domain);
  void SetShaping(std::shared_ptr<const Shaping> shaping);

  void Enqueue(const std::string& domain, Job&& job);
  void Due(Job&& job);
  // A due job: its domain's route, then its site (here or on the site's shard).
  void Route(const std::string& domain, Job&& job);
  void Routed(const std::string& domain, RouteRef route, Job&& job);
  void ToSite(std::string_view name, TlsMode tls, bool own_domain, RouteRef route, Job&& job);
  // Every recipient of `job` gets `why`, decided before any site.
  void Settle(Job&& job, const smtp::Reply& why);
  DomainStats& DomainStatsOf(std::string_view address);
  // RFC 3461 §4.1: whether the sender of recipient `pos` asked for the notice `kind`
  // (smtp::kNotifySuccess, kNotifyFailure, kNotifyDelay). NOTIFY=NEVER asks for none; no NOTIFY
  // at all means FAILURE. Never to the null sender (RFC 5321 §4.5.5: no bounce of a bounce).
  bool WantsDsn(const Message& m, uint32_t pos, uint8_t kind) const {
    if (!options_.dsn || m.mail_from.empty())
      return false;
    const queue::DsnRequest* d = m.dsn_of(pos);
    const uint8_t notify = d != nullptr && d->notify != 0 ? d->notify : smtp::kNotifyFailure;
    return (notify & smtp::kNotifyNever) == 0 && (notify & kind) != 0;
  }
  // Deferred for delay_warning since it was accepted: its sender may be told (once).
  bool DelayWarningDue(const Message& m) const {
    return options_.delay_warning.count() > 0 && m.received_ms > 0 &&
           static_cast<double>(reactor_.wall_ms() - m.received_ms) >=
               options_.delay_warning.count() * 1000;
  }
  // The failed recipients of one transaction: one DSN (RFC 3464), then they leave the spool.
  using Bounced = Outcomes::Bounced;
  void SendDsn(MessageRef message, std::vector<Bounced>&& bounced, Body sent);
  void StoreDsn(MessageRef message, std::vector<Bounced>&& bounced, const std::string& original);
  Clock::duration Backoff(uint16_t attempts, const SiteLimits* limits);
  // A site's max_age, or [delivery]'s for an outcome decided before any site.
  bool Expired(const Message& m, const Site* site) const {
    const Seconds max_age = site != nullptr ? site->limits().max_age : options_.max_age;
    return max_age.count() > 0 && m.received_ms > 0 &&
           static_cast<double>(reactor_.wall_ms() - m.received_ms) >= max_age.count() * 1000;
  }
  void ArmSweep();
  void Sweep();

  Reactor& reactor_;
  const Options& options_;
  SpoolPort& spool;
  Routing& routing_;
  Stats& stats_;
  const Classifier& classifier_;
  Accounting* accounting_ = nullptr;
  std::mt19937_64 rng;
  Scheduler scheduler;
  SiteOwners* owners_ = nullptr;
  ShardId self_ = 0;
  const tls::TlsContext* tls_context_ = nullptr;
  tlsrpt::Reports* tls_reports_ = nullptr;
  Cluster* cluster_ = nullptr;
  std::shared_ptr<const Shaping> shaping_;
  ProviderLimits own_provider_limits_;
  QueueAges* ages_ = nullptr;
  // The queue-age bookkeeping of `n` recipients of the domain of `address` (+ in, - out).
  void Age(std::string_view address, const Message& m, int64_t n) {
    if (ages_ == nullptr)
      return;
    std::string_view domain;
    if (size_t at = address.rfind('@'); at != std::string_view::npos)
      domain = address.substr(at + 1);
    for (char c : domain) {
      if (c >= 'A' && c <= 'Z')
        return ages_->Add(DomainOf(address), m.received_ms, n);  // rare: a copy
    }
    ages_->Add(domain, m.received_ms, n);
  }
  ProviderLimits* provider_limits_ = &own_provider_limits_;
  const Controls* controls_ = nullptr;
  bool admin_bounce_ = false;  // Record(): the failure is an operator's bounce
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using SiteMap = std::unordered_map<std::string, std::unique_ptr<Site>, Hash, std::equal_to<>>;
  // [0]: sites of their own domain (a static route, the smarthost), by domain; [1]: MX sites,
  // by MX host names. Two maps, so that an MX host named like a statically routed domain never
  // shares that domain's site.
  SiteMap sites[2];
  // An MX site's provider (by its MX hosts), for the shaping in force (bounded).
  std::unordered_map<std::string, const Provider*, Hash, std::equal_to<>> provider_of_site_;
  size_t site_count() const { return sites[0].size() + sites[1].size(); }
  // Sites whose opportunistic TLS failed, until when they go in the clear (bounded).
  std::unordered_map<std::string, Clock::time_point> tls_broken;
  Reactor::TimerId sweep_timer;
  size_t finished_since_trim = 0;
  uint64_t held_body_bytes = 0;  // bodies in the sites' ready queues
  bool recording_resend = false;
  bool shutting_down_ = false;
};

void Delivery::Impl::Enqueue(const std::string& domain, Job&& job) {
  if (shutting_down_)
    return;  // it stays in the spool; the next start picks it up
  if (job.due_ms > reactor_.wall_ms()) {
    job.DropBody();  // not needed before it is due
    scheduler.Add(std::move(job));
    return;
  }
  job.due_ms = 0;
  Route(domain, std::move(job));
}

void Delivery::Impl::Due(Job&& job) {
  if (shutting_down_ || job.recipients.empty())
    return;
  job.held = false;  // a suspension that still holds takes it again (ToSite)
  Route(DomainOf(job.address(job.recipients.front())), std::move(job));
}

void Delivery::Impl::Route(const std::string& domain, Job&& job) {
  // Asked for every job: the routing answers from its cache, so a route whose TTL ran out is
  // looked up again when the next job needs it, and not before.
  if (std::optional<RouteRef> known = routing_.TryResolve(domain)) {
    Routed(domain, std::move(*known), std::move(job));
    return;
  }
  routing_.Resolve(domain, [this, domain, job = std::move(job)](RouteRef route) mutable {
    Routed(domain, std::move(route), std::move(job));
  });
}

void Delivery::Impl::Routed(const std::string& domain, RouteRef route, Job&& job) {
  if (shutting_down_)
    return;
  if (route == nullptr) {
    // Asked again next time: a route may appear (a configuration reload).
    return Settle(std::move(job),
                  smtp::Reply{451, "4.4.0",
                              "no route to " + domain + " (configure [routes] or a smarthost)"});
  }
  {
    // The destination's TLS policy, counted per job (and a mismatch is the route's failure).
    const size_t p = route->dane                   ? kTlsPolicyDane
                     : route->mta_sts == "enforce" ? kTlsPolicyStsEnforce
                     : route->mta_sts == "testing" ? kTlsPolicyStsTesting
                                                   : kTlsPolicyNone;
    const bool mismatch = p == kTlsPolicyStsEnforce && route->failure;
    stats_.ForDomain(domain).tls_policy[p][mismatch ? kTlsResultMismatch : kTlsResultOk].Add();
  }
  if (route->failure) {
    // The lookup said why there is nowhere to go: a 5xx fails the recipients at once (a null
    // MX, NXDOMAIN), a 4xx defers them.
    const RouteFailure& f = *route->failure;
    return Settle(std::move(job), smtp::Reply{static_cast<uint16_t>(f.code), f.enhanced, f.text});
  }
  // A domain with a shaping table of its own is a site of its own (its limits are not its MX
  // siblings'), as is one with a static route.
  const Shaping* shaping = shaping_.get();
  const ShapingValues* own_table = shaping != nullptr ? shaping->DomainValues(domain) : nullptr;
  const bool own = route->site.empty() || own_table != nullptr;
  // The TLS policy is the domain's, decided here, before the rollup: a site is one MX host set
  // and one policy, so no domain's policy reaches another's mail (KumoMTA #484). [tls_policy]
  // first, then the shaping layers' enable_tls, then [delivery] tls.
  TlsMode layered = options_.tls;
  const Provider* provider = nullptr;
  if (shaping != nullptr) {
    provider = ProviderOf(domain, *route);
    if (own_table != nullptr && own_table->enable_tls) {
      layered = *own_table->enable_tls;
    } else if (provider != nullptr && provider->values.enable_tls) {
      layered = *provider->values.enable_tls;
    } else if (shaping->defaults().enable_tls) {
      layered = *shaping->defaults().enable_tls;
    }
  }
  auto policy = options_.tls_policy.find(domain);
  TlsMode tls = policy != options_.tls_policy.end() ? policy->second : layered;
  // RFC 8461 §4.2: an enforced MTA-STS policy asks for TLS verified for the MX host name; an
  // operator's own [tls_policy] entry for the domain is the one word above it.
  if (route->mta_sts == "enforce" && policy == options_.tls_policy.end())
    tls = TlsMode::kVerify;
  // RFC 7672 §2.2: DANE hosts take TLS or nothing (their connections check the TLSA records);
  // the site is the domain's own kind (+dane): a sibling without validated MX records has none.
  if (route->dane && policy == options_.tls_policy.end() && tls != TlsMode::kVerify)
    tls = TlsMode::kRequired;
  std::string_view name = domain;
  std::string with_policy;
  if (!own) {
    name = route->site;
    // A provider found by the domain's suffix: not every domain of the MX host set has it.
    const bool by_domain = provider != nullptr && shaping->has_domain_suffix();
    if (tls != layered || by_domain || route->dane) {
      with_policy = route->site;
      if (by_domain)
        with_policy += "+provider=" + provider->name;
      if (tls != layered)
        with_policy += "+tls=" + std::string(TlsModeName(tls));
      if (route->dane)
        with_policy += "+dane";
      name = with_policy;
    }
  }
  const ShardId n = owners_ != nullptr ? owners_->shards() : 1;
  const ShardId owner = n > 1 ? OwnerOf(name, n) : self_;
  if (owner != self_) {
    // The body goes along (immutable, shared): the site's shard need not read it again.
    owners_->PostToSite(owner, std::string(name), tls, own, std::move(route), std::move(job));
    return;
  }
  ToSite(name, tls, own, std::move(route), std::move(job));
}

const Provider* Delivery::Impl::ProviderOf(std::string_view domain, const delivery::Route& route) {
  const Shaping* shaping = shaping_.get();
  if (shaping == nullptr || shaping->providers().empty())
    return nullptr;
  auto hosts = [&route] {
    std::vector<std::string> out;
    for (size_t start = 0; start < route.site.size();) {
      size_t end = route.site.find(',', start);
      if (end == std::string::npos)
        end = route.site.size();
      out.emplace_back(route.site, start, end - start);
      start = end + 1;
    }
    return out;
  };
  if (route.site.empty())  // a static route: no MX hosts to match
    return shaping->has_domain_suffix() ? shaping->ProviderFor(domain, {}) : nullptr;
  if (shaping->has_domain_suffix())
    return shaping->ProviderFor(domain, hosts());
  // By the MX hosts alone: the same for every domain of the site, so asked once per site.
  if (auto it = provider_of_site_.find(route.site); it != provider_of_site_.end())
    return it->second;
  if (provider_of_site_.size() >= 100000)
    provider_of_site_.clear();  // a rough bound; asking again is cheap
  const Provider* p = shaping->ProviderFor({}, hosts());
  provider_of_site_.emplace(route.site, p);
  return p;
}

SitePolicy Delivery::Impl::MakePolicy(std::string_view domain, const delivery::Route& route,
                                      bool own_domain) {
  SitePolicy policy;
  policy.domain = std::string(domain);
  policy.own_domain = own_domain;
  const Shaping* shaping = shaping_.get();
  if (shaping == nullptr)
    return policy;
  policy.values = shaping->defaults();
  if (const Provider* p = ProviderOf(domain, route)) {
    policy.provider = p->name;
    policy.values.Overlay(p->values);
  }
  if (own_domain) {
    if (const ShapingValues* own = shaping->DomainValues(domain))
      policy.values.Overlay(*own);
  }
  return policy;
}

void Delivery::Impl::SetShaping(std::shared_ptr<const Shaping> shaping) {
  shaping_ = std::move(shaping);
  provider_of_site_.clear();
  for (SiteMap& map : sites) {
    for (auto& [name, site] : map) {
      const SitePolicy& old = site->policy();
      site->SetPolicy(MakePolicy(old.domain, *site->route(), old.own_domain));
    }
  }
}

void Delivery::Impl::RecordAutomation(Site& site, const Automation& rule,
                                      AutomationState::Event event, const smtp::Reply* reply,
                                      Clock::time_point until) {
  static constexpr const char* kEvents[] = {"fired", "recovering", "ended"};
  const char* what = kEvents[event.kind];
  std::string action = rule.action == Automation::Action::kSuspend ? "Suspend"
                       : rule.action == Automation::Action::kBounce
                           ? "Bounce"
                           : "SetConfig " + rule.config_name + "=" + rule.config_value;
  const int64_t until_ms =
      reactor_.wall_ms() +
      std::chrono::duration_cast<std::chrono::milliseconds>(until - reactor_.now()).count();
  if (event.kind == AutomationState::Event::kFired) {
    SPATE_LOG(kWarn, "delivery: %s: shaping rule %s fired (%s for %.0fs) on \"%s\"",
              site.name().c_str(), rule.label().c_str(), action.c_str(), rule.duration.count(),
              reply != nullptr ? reply->ToString().c_str() : "");
  } else {
    SPATE_LOG(kInfo, "delivery: %s: shaping rule %s %s", site.name().c_str(), rule.label().c_str(),
              event.kind == AutomationState::Event::kEnded ? "ended: back to normal"
                                                           : "over: recovering by steps");
  }
  if (accounting_ == nullptr)
    return;
  delivery::Record rec;
  rec.type = RecordType::kAutomation;
  rec.site = site.name();
  const std::string label = rule.label();
  rec.rule = label;
  rec.dsn_action = action;
  rec.rule_event = what;
  rec.reply = reply;
  if (event.kind != AutomationState::Event::kEnded)
    rec.until_ms = until_ms;
  rec.event_ms = reactor_.wall_ms();
  accounting_->Write(rec);
}

void Delivery::Impl::ToSite(std::string_view name, TlsMode tls, bool own_domain, RouteRef route,
                            Job&& job) {
  if (shutting_down_)
    return;
  if (controls_ != nullptr && !controls_->empty() && Controlled(name, job))
    return;
  SiteMap& map = sites[own_domain ? 0 : 1];
  auto it = map.find(name);
  if (it == map.end()) {
    SitePolicy policy = MakePolicy(
        job.recipients.empty() ? std::string() : DomainOf(job.address(job.recipients.front())),
        *route, own_domain);
    auto site = std::make_unique<Site>(*this, std::string(name), route, tls, std::move(policy));
    it = map.emplace(std::string(name), std::move(site)).first;
    if (!sweep_timer.valid())
      ArmSweep();
  }
  it->second->Add(std::move(job), route);
}

bool Delivery::Impl::Controlled(std::string_view site, Job& job) {
  if (job.recipients.empty())
    return false;
  const int64_t now = reactor_.wall_ms();
  std::optional<Controls::Verdict> v = controls_->Match(
      DomainOf(job.address(job.recipients.front())), site, job.message->campaign, now);
  if (!v)
    return false;
  if (v->action == Control::Action::kBounce) {
    AdminBounce(std::move(job), v->reason);
    return true;
  }
  // Held where it is: looked at again at the suspension's end, or every hour while it has
  // none (a resume releases it at once: Delivery::ReleaseHeld()).
  job.held = true;
  job.DropBody();
  job.due_ms = v->until_ms > 0 ? v->until_ms : now + 3600 * 1000;
  scheduler.Add(std::move(job));
  return true;
}

void Delivery::Impl::AdminBounce(Job&& job, const std::string& reason) {
  // RFC 3463 §3.1 X.0.0: no code says "an operator bounced it"; the text does.
  admin_bounce_ = true;
  Settle(std::move(job),
         smtp::Reply{550, "5.0.0",
                     "administrative bounce" + (reason.empty() ? std::string() : ": " + reason)});
  admin_bounce_ = false;
}

void Delivery::Impl::Settle(Job&& job, const smtp::Reply& why) {
  Outcomes outcomes;
  for (size_t i = 0; i < job.recipients.size(); ++i)
    Record(nullptr, job, i, why, &outcomes);
  Reschedule(std::move(job), std::move(outcomes));
}

DomainStats& Delivery::Impl::DomainStatsOf(std::string_view address) {
  std::string_view domain;
  if (size_t at = address.rfind('@'); at != std::string_view::npos)
    domain = address.substr(at + 1);
  for (char c : domain) {
    if (c >= 'A' && c <= 'Z')
      return stats_.ForDomain(DomainOf(address));  // the rare mixed-case address: a copy
  }
  return stats_.ForDomain(domain);
}

bool Delivery::Impl::TlsBroken(const std::string& site) {
  auto it = tls_broken.find(site);
  if (it == tls_broken.end())
    return false;
  if (reactor_.now() < it->second)
    return true;
  tls_broken.erase(it);
  return false;
}

void Delivery::Impl::MarkTlsBroken(const std::string& site) {
  if (tls_broken.size() >= 10000)
    tls_broken.clear();  // a rough bound: forgetting them only costs one more handshake each
  tls_broken[site] =
      reactor_.now() + std::chrono::duration_cast<Clock::duration>(options_.tls_broken_hold);
}

void Delivery::Impl::LoadBody(Site& site, Job&& job) {
  queue::MessageId id = job.message->id;
  Reactor* reactor = &reactor_;
  Site* d = &site;
  if (Body held = job.message->loaded_body.Get()) {
    // Another job of the message holds its body: shared, not read again. Given back from the
    // loop, as a read would be (the site is in the middle of its Pump()).
    job.body = std::move(held);
    reactor_.Post([this, d, job = std::move(job)]() mutable {
      if (!shutting_down_)
        d->OnBodyLoaded(std::move(job));
    });
    return;
  }
  spool.ReadBody(id, [this, reactor, d, job = std::move(job)](Result<std::string> body) mutable {
    // On the spool's reader thread: hand the result to our shard. The site is still
    // there (a load out keeps it from being idle); the engine is too, while the shard runs.
    std::optional<Body> loaded;
    std::error_code error;
    if (body) {
      // A sibling's read that finished first (both were asked for before either was back):
      // its buffer, and this one goes.
      loaded =
          job.message->loaded_body.Offer(std::make_shared<const std::string>(std::move(*body)));
    } else {
      error = body.error();
    }
    reactor->Post([this, d, job = std::move(job), loaded = std::move(loaded), error]() mutable {
      if (shutting_down_)
        return;  // the job is still in the spool, for the next start, as every other one
      if (!loaded) {
        SPATE_LOG(kError, "delivery: cannot read body of %s: %s",
                  queue::FormatId(job.message->id).c_str(), error.message().c_str());
        d->OnBodyLost();
        // Try again later rather than lose track of it.
        job.due_ms = reactor_.wall_ms() + 60000;
        scheduler.Add(std::move(job));
        return;
      }
      job.body = std::move(*loaded);
      d->OnBodyLoaded(std::move(job));
    });
  });
}

void Delivery::Impl::Record(Site* site, const Job& job, size_t i, const smtp::Reply& reply,
                            Outcomes* outcomes, const Peer* peer) {
  if (i >= job.recipients.size())
    return;
  const Recipient& r = job.recipients[i];
  const Message& m = *job.message;
  // A site of its own domain has that domain's entry at hand; else it is looked up.
  DomainStats& st = site != nullptr && site->own_domain_stats() != nullptr
                        ? *site->own_domain_stats()
                        : DomainStatsOf(job.address(r));
  if (reply.positive() || reply.permanent())
    ++finished_since_trim;
  if (shutting_down_ && !reply.positive() && !reply.permanent()) {
    // A transaction cut off by Shutdown(): no attempt, whatever reply the connection made up.
    // Neither counted nor logged as deferred; the spool keeps the recipient as it was (see
    // Reschedule()).
    outcomes->deferred.push_back(r);
    return;
  }
  if (reply.code == 452 && reply.enhanced == "4.5.3" && !recording_resend) {
    // RFC 5321 §4.5.3.1.10: this transaction took all the recipients it will; the rest go in
    // the next one at once (Reschedule()), not after a retry delay, and it is no attempt.
    outcomes->resend.push_back(r);
    outcomes->resend_reply = reply;
    outcomes->resend_site = site;
    outcomes->resend_peer = peer != nullptr ? *peer : Peer();
    return;
  }
  DomainStats* campaign = m.campaign.empty() ? nullptr : &stats_.ForCampaign(m.campaign);
  const char* outcome;
  RecordType type;
  std::optional<BounceClass> klass;
  if (reply.positive()) {
    ++outcomes->accepted;
    outcome = "delivered";
    type = RecordType::kDelivery;
    st.delivered.Add();
    if (site != nullptr)
      site->stats().delivered.Add();
    if (campaign != nullptr) {
      campaign->delivered.Add();
      campaign->queued.Add(-1);
    }
    st.queued.Add(-1);
    Age(job.address(r), m, -1);
    if (m.received_ms > 0)
      st.delivery_latency.Observe(static_cast<double>(reactor_.wall_ms() - m.received_ms) / 1000);
    spool.Finish(m.id, m.spool_index(r.pos));
    // RFC 3461 §6.2.2: delivered to a server that took no DSN parameters, so it will not
    // report the success the sender asked for: "relayed", from us. It is finished already:
    // a lost success notice must not deliver the message twice.
    if (!outcomes->peer_dsn && WantsDsn(m, r.pos, smtp::kNotifySuccess))
      outcomes->bounced.push_back({r, reply, false, RemoteOf(peer), dsn::Action::kRelayed});
  } else if (const bool expired = !reply.permanent() && Expired(m, site);
             reply.permanent() || expired) {
    // Failed for good, or deferred past max_age: then this reply was its last chance, and it
    // is the reason (a DSN says "delivery time expired", RFC 3463 X.4.7).
    outcome = expired ? "expired" : admin_bounce_ ? "bounced by the operator" : "failed";
    type = expired         ? RecordType::kExpiration
           : admin_bounce_ ? RecordType::kAdminBounce
                           : RecordType::kBounce;
    klass = expired ? BounceClass::kMessageExpired
                    : classifier_.Classify(reply.code, reply.enhanced, reply.text);
    if (expired) {
      ++finished_since_trim;
      stats_.expired.Add();
    }
    st.failed.Add();
    st.bounces[static_cast<size_t>(*klass)].Add();
    if (site != nullptr)
      site->stats().failed.Add();
    if (campaign != nullptr) {
      campaign->failed.Add();
      campaign->queued.Add(-1);
    }
    st.queued.Add(-1);
    Age(job.address(r), m, -1);
    if (!expired && !admin_bounce_ &&
        ((options_.suppress_classes >> static_cast<unsigned>(*klass)) & 1u)) {
      // A hard bounce that says the address is no good: a later RCPT for it is refused at once.
      spool.Suppress({std::string(job.address(r)), reactor_.wall_ms(),
                      std::string(BounceClassName(*klass)), reply.ToString()});
    }
    if (WantsDsn(m, r.pos, smtp::kNotifyFailure)) {
      outcomes->bounced.push_back({r, reply, expired, RemoteOf(peer)});  // finished once stored
    } else {
      spool.Finish(m.id, m.spool_index(r.pos));
    }
    if (m.mail_from.empty()) {
      // A notice (or other mail from <>) that cannot be delivered is dropped, never bounced
      // (RFC 3461 §6.1): counted, logged and in the records, so its loss is on record.
      stats_.dsns_failed.Add();
    }
  } else {
    outcome = "deferred";
    type = RecordType::kTransientFailure;
    klass = classifier_.Classify(reply.code, reply.enhanced, reply.text);
    st.deferred.Add();
    st.deferrals[static_cast<size_t>(*klass)].Add();
    if (site != nullptr)
      site->stats().deferred.Add();
    if (campaign != nullptr)
      campaign->deferred.Add();
    Recipient later = r;
    // A server's "too much, too fast" says nothing of the recipient: no attempt is charged.
    later.uncharged = peer != nullptr && IsRateLimitReply(reply);
    if (!r.delay_warned && DelayWarningDue(m) && WantsDsn(m, r.pos, smtp::kNotifyDelay)) {
      // RFC 3464 "delayed": once per recipient (the spool keeps that it was sent).
      outcomes->bounced.push_back({r, reply, false, RemoteOf(peer), dsn::Action::kDelayed});
      later.delay_warned = true;
    }
    outcomes->deferred.push_back(later);
  }
  if (accounting_ == nullptr && !options_.log_deliveries)
    return;  // nothing to say: no copy of the domain either
  std::string_view address = job.address(r);
  std::string domain = DomainOf(address);
  if (accounting_ != nullptr) {
    delivery::Record rec;
    rec.type = type;
    rec.id = m.id;
    rec.sender = m.mail_from;
    rec.recipient = address;
    rec.domain = domain;
    if (site != nullptr)
      rec.site = site->name();
    rec.campaign = m.campaign;
    if (site != nullptr && site->route() != nullptr)
      rec.mta_sts = site->route()->mta_sts;
    rec.size = m.body_size;
    rec.attempts = r.attempts + 1u;
    rec.reply = &reply;
    if (peer != nullptr) {
      rec.peer_name = peer->name;
      rec.peer_address = peer->address;
      rec.tls_version = peer->tls_version;
      rec.dane = peer->dane;
      rec.tls_cipher = peer->tls_cipher;
    }
    if (klass)
      rec.bounce_class = BounceClassName(*klass);
    rec.queued_ms = m.received_ms;
    rec.event_ms = reactor_.wall_ms();
    accounting_->Write(rec);
  }
  if (options_.log_deliveries) {
    // " site=..." when the domain shares its site; " mx=HOST tls=VERSION/CIPHER" once a
    // connection got that far; " class=..." for a failure.
    std::string extra;
    if (site != nullptr && site->name() != domain)
      extra = " site=" + site->name();
    if (peer != nullptr)
      extra += peer->log;
    if (klass) {
      extra += " class=";
      extra += BounceClassName(*klass);
    }
    SPATE_LOG(kInfo, "%s id=%s rcpt=<%.*s> domain=%s attempts=%u reply=\"%s\"%s", outcome,
              queue::FormatId(m.id).c_str(), static_cast<int>(address.size()), address.data(),
              domain.c_str(), r.attempts + 1u, reply.ToString().c_str(), extra.c_str());
  }
}

void Delivery::Impl::SendDsn(MessageRef message, std::vector<Bounced>&& bounced, Body sent) {
  // The original comes back with it (its headers, or all of it with RET=FULL): the body the
  // transaction sent when it is at hand (a relayed recipient is finished already: were it the
  // message's last, the spool's copy could be gone by the time a read got there), else read
  // from the spool, where it still is (failed recipients are finished only once it is stored).
  if (sent != nullptr) {
    StoreDsn(std::move(message), std::move(bounced), *sent);
    return;
  }
  Reactor* reactor = &reactor_;
  const queue::MessageId id = message->id;
  spool.ReadBody(id, [this, reactor, message = std::move(message),
                      bounced = std::move(bounced)](Result<std::string> body) mutable {
    std::string original = body ? std::move(*body) : std::string();
    reactor->Post([this, message = std::move(message), bounced = std::move(bounced),
                   original = std::move(original)]() mutable {
      StoreDsn(std::move(message), std::move(bounced), original);
    });
  });
}

void Delivery::Impl::StoreDsn(MessageRef message, std::vector<Bounced>&& bounced,
                              const std::string& original) {
  if (shutting_down_)
    return;  // the recipients are still in the spool: failed again, and bounced, next start
  const Message& m = *message;
  dsn::Report report;
  report.reporting_mta = options_.hostname;
  report.from = "MAILER-DAEMON@" + options_.hostname;
  report.to = m.mail_from;
  report.envid = m.envid;
  report.arrival_ms = m.received_ms;
  report.now_ms = reactor_.wall_ms();
  report.unique = DsnUnique(m.id);
  report.return_full = m.ret == 1;  // RFC 3461 §4.3: RET=FULL; else the headers
  report.original = original;
  for (const Bounced& b : bounced) {
    dsn::Recipient r;
    r.final_recipient = std::string(m.address(b.recipient.pos));
    if (const queue::DsnRequest* d = m.dsn_of(b.recipient.pos))
      r.original_recipient = d->orcpt;
    r.action = b.action;
    r.status = b.reply.enhanced;
    r.remote_mta = b.remote;
    r.diagnostic = std::to_string(b.reply.code) +
                   (b.reply.enhanced.empty() ? "" : " " + b.reply.enhanced) + " " + b.reply.text;
    r.last_attempt_ms = report.now_ms;
    r.expired = b.expired;
    if (b.action == dsn::Action::kDelayed && options_.max_age.count() > 0 && m.received_ms > 0)
      r.will_retry_until_ms = m.received_ms + static_cast<int64_t>(options_.max_age.count() * 1000);
    report.recipients.push_back(std::move(r));
  }
  dsn::Notification n = dsn::Build(report);
  queue::NewMessage out;
  out.mail_from = "";  // RFC 3461 §6.1: from the null sender, so it is never bounced itself
  out.rcpt_to.push_back(m.mail_from);
  out.body = std::move(n.message);
  out.body_8bit = n.eight_bit;
  // A sender address past ASCII needs SMTPUTF8 to be named in RCPT TO (RFC 6531 §3.4): without
  // it a server refuses the bounce (553 5.6.7), and a bounce, from <>, is not bounced in turn.
  // An ASCII sender's bounce needs none, even for an SMTPUTF8 original (its headers are quoted
  // in ASCII, dsn.cc): asked for, a server without SMTPUTF8 could not take it.
  out.smtputf8 = smtp::HasNonAscii(m.mail_from);
  SPATE_LOG(kInfo, "dsn id=%s to=<%s> recipients=%zu action=%s", queue::FormatId(m.id).c_str(),
            m.mail_from.c_str(), bounced.size(), dsn::ActionName(MainAction(bounced)));
  Reactor* reactor = &reactor_;
  spool.Inject(std::move(out), [this, reactor, message = std::move(message),
                                bounced = std::move(bounced)](bool durable,
                                                              queue::MessageId dsn_id) mutable {
    reactor->Post([this, durable, dsn_id, message = std::move(message),
                   bounced = std::move(bounced)]() mutable {
      const Message& msg = *message;
      if (durable) {
        // The bounce is on disk: the failed recipients it reports may leave the spool now
        // (the relayed ones left already, the delayed ones stay deferred).
        stats_.dsns.Add();
        if (accounting_ != nullptr) {
          const std::string to_domain = DomainOf(msg.mail_from);
          delivery::Record rec;
          rec.type = RecordType::kDsn;
          rec.id = msg.id;      // the message it reports on
          rec.dsn_id = dsn_id;  // the DSN's own id: its Reception and Delivery have it
          rec.recipient = msg.mail_from;
          rec.domain = to_domain;
          rec.campaign = msg.campaign;
          rec.dsn_action = dsn::ActionName(MainAction(bounced));
          rec.dsn_recipients = static_cast<uint32_t>(bounced.size());
          rec.queued_ms = msg.received_ms;
          rec.event_ms = reactor_.wall_ms();
          accounting_->Write(rec);
        }
        for (const Bounced& b : bounced) {
          if (b.action == dsn::Action::kFailed)
            spool.Finish(msg.id, msg.spool_index(b.recipient.pos));
        }
        return;
      }
      // The spool would not take the DSN (a full disk): the failed recipients stay,
      // retried later, and fail (and are bounced) again then. A notice of success or delay
      // is not worth a second delivery: it is dropped, and said so.
      SPATE_LOG(kError, "dsn for %s not stored; its failed recipients are retried",
                queue::FormatId(msg.id).c_str());
      std::erase_if(bounced, [](const Bounced& b) { return b.action != dsn::Action::kFailed; });
      if (shutting_down_ || bounced.empty())
        return;
      Job job;
      job.message = message;
      job.due_ms =
          reactor_.wall_ms() +
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.retry_base).count();
      for (const Bounced& b : bounced) {
        job.recipients.push_back(b.recipient);
        spool.Defer(msg.id, msg.spool_index(b.recipient.pos), b.recipient.attempts, job.due_ms,
                    b.recipient.delay_warned);
      }
      DomainStatsOf(msg.address(bounced.front().recipient.pos))
          .queued.Add(static_cast<int64_t>(bounced.size()));
      if (!msg.campaign.empty())
        stats_.ForCampaign(msg.campaign).queued.Add(static_cast<int64_t>(bounced.size()));
      Age(msg.address(bounced.front().recipient.pos), msg, static_cast<int64_t>(bounced.size()));
      scheduler.Add(std::move(job));
    });
  });
}

Clock::duration Delivery::Impl::Backoff(uint16_t attempts, const SiteLimits* limits) {
  const double base = (limits != nullptr ? limits->retry_interval : options_.retry_base).count();
  const double max = (limits != nullptr ? limits->max_retry_interval : options_.retry_max).count();
  double delay = base;
  for (uint16_t i = 1; i < attempts && delay < max; ++i)
    delay *= 2;
  delay = std::min(delay, max);
  // +-20% jitter, so a burst deferred together is not retried together.
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return std::chrono::duration_cast<Clock::duration>(Seconds(delay * jitter(rng)));
}

void Delivery::Impl::Reschedule(Job&& job, Outcomes&& outcomes) {
  if (job.in_flight) {
    job.in_flight = false;
    CountInFlight(outcomes.site, job, -static_cast<int64_t>(job.recipients.size()));
  }
  if (!outcomes.bounced.empty())
    SendDsn(job.message, std::move(outcomes.bounced), job.body);
  std::vector<Recipient>& deferred = outcomes.deferred;
  if (!outcomes.resend.empty()) {
    if (outcomes.accepted > 0 && !shutting_down_) {
      Job next;
      next.message = job.message;
      next.body = job.body;
      for (const Recipient& r : outcomes.resend)
        next.recipients.push_back(r);
      Enqueue(DomainOf(job.address(outcomes.resend.front())), std::move(next));
    } else if (!shutting_down_) {
      // A server that takes none of them this way would be asked for ever: a deferral,
      // counted and logged as one.
      Job refused;
      refused.message = job.message;
      for (const Recipient& r : outcomes.resend)
        refused.recipients.push_back(r);
      recording_resend = true;
      for (size_t i = 0; i < refused.recipients.size(); ++i)
        Record(outcomes.resend_site, refused, i, outcomes.resend_reply, &outcomes,
               outcomes.resend_peer.address.empty() ? nullptr : &outcomes.resend_peer);
      recording_resend = false;
      if (!outcomes.bounced.empty())  // expired among them
        SendDsn(job.message, std::move(outcomes.bounced), job.body);
    } else {
      for (const Recipient& r : outcomes.resend)
        deferred.push_back(r);
    }
  }
  // After Shutdown() the only deferrals are the recipients of the transactions it aborted: no
  // server refused them, so the spool keeps them as they were (due at the next start, with the
  // attempts they had).
  if (deferred.empty() || shutting_down_)
    return;
  job.recipients = std::move(deferred);
  uint16_t attempts = 0;
  for (Recipient& r : job.recipients) {
    if (r.attempts < UINT16_MAX && !r.uncharged)
      ++r.attempts;
    r.uncharged = false;
    attempts = std::max(attempts, r.attempts);
  }
  auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
      Backoff(attempts, outcomes.site != nullptr ? &outcomes.site->limits() : nullptr));
  job.due_ms = reactor_.wall_ms() + std::max<int64_t>(delay.count(), 1);
  for (const Recipient& r : job.recipients)
    spool.Defer(job.message->id, job.message->spool_index(r.pos), r.attempts, job.due_ms,
                r.delay_warned);
  job.DropBody();  // read again from the spool when due: deferred mail costs no body memory
  scheduler.Add(std::move(job));
}

void Delivery::Impl::ArmSweep() {
  auto period = std::chrono::duration_cast<Clock::duration>(options_.idle_timeout);
  sweep_timer = reactor_.AddTimer(reactor_.now() + period, [this] {
    sweep_timer = {};
    Sweep();
  });
}

void Delivery::Impl::Sweep() {
  // A site idle at two sweeps in a row, idle_timeout apart, is forgotten.
  const Clock::time_point now = reactor_.now();
  const auto period = std::chrono::duration_cast<Clock::duration>(options_.idle_timeout);
  size_t removed = 0;
  for (SiteMap& map : sites) {
    for (auto it = map.begin(); it != map.end();) {
      Site& d = *it->second;
      if (!d.idle()) {
        d.idle_since = {};
        ++it;
      } else if (d.idle_since == Clock::time_point{}) {
        d.idle_since = now;
        ++it;
      } else if (now - d.idle_since >= period) {
        it = map.erase(it);
        ++removed;
      } else {
        ++it;
      }
    }
  }
  for (auto it = tls_broken.begin(); it != tls_broken.end();)
    it = now >= it->second ? tls_broken.erase(it) : std::next(it);
  // Memory the engine let go of in bulk (forgotten sites, a drained backlog) goes back
  // to the system; otherwise RSS would stay at its peak.
  if (removed >= kTrimAfterRemoving || finished_since_trim >= kTrimAfterFinishing) {
    finished_since_trim = 0;
    ReleaseFreeMemory();
  }
  if (site_count() > 0)
    ArmSweep();
}

Delivery::Delivery(Reactor& reactor, const Options& options, SpoolPort& spool, Routing& routing,
                   Stats& stats, uint64_t seed)
    : impl_(std::make_unique<Impl>(reactor, options, spool, routing, stats, seed)) {}

Delivery::~Delivery() = default;

void Delivery::SetSiteOwners(SiteOwners* owners, ShardId self) {
  impl_->owners_ = owners;
  impl_->self_ = self;
}

void Delivery::SetTlsContext(const tls::TlsContext* context) {
  impl_->tls_context_ = context;
}

void Delivery::SetCluster(Cluster* cluster) {
  impl_->cluster_ = cluster;
}

void Delivery::SetTlsReports(tlsrpt::Reports* reports) {
  impl_->tls_reports_ = reports;
}

void Delivery::SetAccounting(Accounting* accounting) {
  impl_->accounting_ = accounting;
}

size_t Delivery::Flush(std::string_view domain) {
  return impl_->scheduler.Flush([domain](const Job& job) {
    return domain.empty() ||
           (!job.recipients.empty() && DomainOf(job.address(job.recipients.front())) == domain);
  });
}

void Delivery::SetControls(const Controls* controls) {
  impl_->controls_ = controls;
}

size_t Delivery::ApplyControls() {
  Impl& d = *impl_;
  if (d.controls_ == nullptr || d.shutting_down_)
    return 0;
  const int64_t now = d.reactor_.wall_ms();
  size_t bounced = 0;
  // What waits in the sites' queues: held or bounced as if it arrived now.
  for (Impl::SiteMap& map : d.sites) {
    for (auto& [name, site] : map) {
      const std::string& site_name = name;
      std::vector<Job> taken = site->TakeIf([&](const Job& job) {
        return !job.recipients.empty() && d.controls_
                                              ->Match(DomainOf(job.address(job.recipients.front())),
                                                      site_name, job.message->campaign, now)
                                              .has_value();
      });
      for (Job& job : taken) {
        const size_t n = job.recipients.size();
        std::optional<Controls::Verdict> v = d.controls_->Match(
            DomainOf(job.address(job.recipients.front())), site_name, job.message->campaign, now);
        if (v && v->action == Control::Action::kBounce)
          bounced += n;
        if (!d.Controlled(site_name, job))
          site->Add(std::move(job), site->route());  // lifted meanwhile: back it goes
      }
    }
  }
  // The deferred jobs a bounce matches (by domain or campaign: a site is known only once a job
  // is routed) go now; those a suspension matches wait for their retry time as they were.
  std::vector<Job> doomed = d.scheduler.Take([&](const Job& job) {
    if (job.recipients.empty())
      return false;
    std::optional<Controls::Verdict> v = d.controls_->Match(
        DomainOf(job.address(job.recipients.front())), {}, job.message->campaign, now);
    return v && v->action == Control::Action::kBounce;
  });
  for (Job& job : doomed) {
    std::optional<Controls::Verdict> v = d.controls_->Match(
        DomainOf(job.address(job.recipients.front())), {}, job.message->campaign, now);
    bounced += job.recipients.size();
    d.AdminBounce(std::move(job), v ? v->reason : std::string());
  }
  return bounced;
}

size_t Delivery::ReleaseHeld() {
  return impl_->scheduler.Flush([](const Job& job) { return job.held; });
}

void Delivery::SetQueueAges(QueueAges* ages) {
  impl_->ages_ = ages;
}

void Delivery::Enqueue(const std::string& domain, Job&& job) {
  impl_->stats_.ForDomain(domain).queued.Add(static_cast<int64_t>(job.recipients.size()));
  if (job.message != nullptr && !job.message->campaign.empty())
    impl_->stats_.ForCampaign(job.message->campaign)
        .queued.Add(static_cast<int64_t>(job.recipients.size()));
  if (impl_->ages_ != nullptr && job.message != nullptr)
    impl_->ages_->Add(domain, job.message->received_ms,
                      static_cast<int64_t>(job.recipients.size()));
  impl_->Enqueue(domain, std::move(job));
}

void Delivery::EnqueueForSite(std::string site, TlsMode tls, bool own_domain, RouteRef route,
                              Job&& job) {
  impl_->ToSite(site, tls, own_domain, std::move(route), std::move(job));
}

void Delivery::SetShaping(std::shared_ptr<const Shaping> shaping) {
  impl_->SetShaping(std::move(shaping));
}

void Delivery::SetProviderLimits(ProviderLimits* limits) {
  impl_->provider_limits_ = limits != nullptr ? limits : &impl_->own_provider_limits_;
}

void Delivery::Shutdown() noexcept {
  impl_->shutting_down_ = true;
  // Whatever is queued or in flight stays in the spool and is scheduled again at the next
  // start. Connections are dropped; their recipients were not finished, so nothing is lost.
  impl_->scheduler.Clear();
  for (Impl::SiteMap& map : impl_->sites) {
    for (auto& [name, site] : map)
      site->Shutdown();
  }
}

size_t Delivery::sites() const {
  return impl_->site_count();
}

size_t Delivery::scheduled() const {
  return impl_->scheduler.size();
}

long Delivery::open_connections(const std::string& site) const {
  for (const Impl::SiteMap& map : impl_->sites) {
    if (auto it = map.find(site); it != map.end())
      return static_cast<long>(it->second->open_connections());
  }
  return -1;
}

}  // namespace spate::delivery
