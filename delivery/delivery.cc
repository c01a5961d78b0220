#include "delivery/delivery.h"

#include <chrono>
#include <random>
#include <unordered_map>

#include "core/allocator.h"
#include "core/log.h"
#include "delivery/pool.h"
#include "delivery/scheduler.h"

namespace spate::delivery {

namespace {
using Clock = Reactor::Clock;

// Forgetting this many destinations in one sweep, or finishing this many recipients between two
// sweeps, gives the freed memory back to the system.
constexpr size_t kTrimAfterRemoving = 1000;
constexpr size_t kTrimAfterFinishing = 100000;
}  // namespace

struct Delivery::Impl final : public Engine {
  Impl(Reactor& r, const Options& o, SpoolPort& sp, Routing& rt, Stats& st, uint64_t seed)
      : reactor_(r),
        options_(o),
        spool(sp),
        routing_(rt),
        stats(st),
        rng(seed != 0 ? seed : std::random_device{}()),
        scheduler(r, [this](Job&& job) { Due(std::move(job)); }) {}

  ~Impl() override {
    reactor_.CancelTimer(sweep_timer);
    // Connections are gone by now (Shutdown aborted them, and the shard drained the ring).
  }

  // Engine
  Reactor& reactor() override { return reactor_; }
  const Options& options() const override { return options_; }
  Routing& routing() override { return routing_; }
  bool shutting_down() const override { return shutting_down_; }
  void Record(Destination& dest, const Job& job, size_t i, const smtp::Reply& reply,
              std::vector<Recipient>* deferred) override;
  void Reschedule(Job&& job, std::vector<Recipient>&& deferred) override;
  void LoadBody(Destination& dest, Job&& job) override;

  Destination& Dest(const std::string& domain);
  void Enqueue(const std::string& domain, Job&& job);
  void Due(Job&& job);
  Clock::duration Backoff(uint16_t attempts);
  void ArmSweep();
  void Sweep();

  Reactor& reactor_;
  const Options& options_;
  SpoolPort& spool;
  Routing& routing_;
  Stats& stats;
  std::mt19937_64 rng;
  Scheduler scheduler;
  std::unordered_map<std::string, std::unique_ptr<Destination>> destinations;
  Reactor::TimerId sweep_timer;
  size_t finished_since_trim = 0;
  // Of the transaction being recorded (Record() for each recipient, then Reschedule()): the
  // recipients a server refused with 452 4.5.3 "too many recipients", and how many it took.
  std::vector<Recipient> resend_now;
  size_t accepted_now = 0;
  bool shutting_down_ = false;
};

Destination& Delivery::Impl::Dest(const std::string& domain) {
  auto it = destinations.find(domain);
  if (it != destinations.end())
    return *it->second;
  auto dest = std::make_unique<Destination>(*this, domain, stats.ForDomain(domain));
  Destination& ref = *dest;
  destinations.emplace(domain, std::move(dest));
  if (!sweep_timer.valid())
    ArmSweep();
  return ref;
}

void Delivery::Impl::Enqueue(const std::string& domain, Job&& job) {
  if (shutting_down_)
    return;  // it stays in the spool; the next start picks it up
  if (job.due_ms > reactor_.wall_ms()) {
    job.body.reset();  // not needed before it is due
    scheduler.Add(std::move(job));
    return;
  }
  job.due_ms = 0;
  Dest(domain).Add(std::move(job));
}

void Delivery::Impl::Due(Job&& job) {
  if (shutting_down_ || job.recipients.empty())
    return;
  Dest(DomainOf(job.address(job.recipients.front()))).Add(std::move(job));
}

void Delivery::Impl::LoadBody(Destination& dest, Job&& job) {
  queue::MessageId id = job.message->id;
  Reactor* reactor = &reactor_;
  Destination* d = &dest;
  spool.ReadBody(id, [this, reactor, d, job = std::move(job)](Result<std::string> body) mutable {
    // On the spool's reader thread: hand the result to our shard. The destination is still
    // there (a load out keeps it from being idle); the engine is too, while the shard runs.
    std::optional<Body> loaded;
    std::error_code error;
    if (body) {
      loaded = std::make_shared<const std::string>(std::move(*body));
    } else {
      error = body.error();
    }
    reactor->Post([this, d, job = std::move(job), loaded = std::move(loaded), error]() mutable {
      if (!loaded) {
        SPATE_LOG(kError, "delivery: cannot read body of %s: %s",
                  queue::FormatId(job.message->id).c_str(), error.message().c_str());
        d->OnBodyLost();
        // Try again later rather than lose track of it.
        job.due_ms = reactor_.wall_ms() + 60000;
        scheduler.Add(std::move(job));
        return;
      }
      if (shutting_down_)
        return;
      job.body = std::move(*loaded);
      d->OnBodyLoaded(std::move(job));
    });
  });
}

void Delivery::Impl::Record(Destination& dest, const Job& job, size_t i, const smtp::Reply& reply,
                            std::vector<Recipient>* deferred) {
  if (i >= job.recipients.size())
    return;
  const Recipient& r = job.recipients[i];
  const Message& m = *job.message;
  const char* outcome;
  DomainStats& st = dest.stats();
  if (reply.positive() || reply.permanent())
    ++finished_since_trim;
  if (shutting_down_ && !reply.positive() && !reply.permanent()) {
    // A transaction cut off by Shutdown(): no attempt, whatever reply the connection made up.
    // Neither counted nor logged as deferred; the spool keeps the recipient as it was (see
    // Reschedule()).
    deferred->push_back(r);
    return;
  }
  if (reply.code == 452 && reply.enhanced == "4.5.3") {
    // RFC 5321 §4.5.3.1.10: this transaction took all the recipients it will; the rest go in
    // the next one at once (Reschedule()), not after a retry delay, and it is no attempt.
    resend_now.push_back(r);
    return;
  }
  if (reply.positive())
    ++accepted_now;
  if (reply.positive()) {
    outcome = "delivered";
    st.delivered.Add();
    st.queued.Add(-1);
    spool.Finish(m.id, m.spool_index(r.pos));
  } else if (reply.permanent()) {
    outcome = "failed";
    st.failed.Add();
    st.queued.Add(-1);
    spool.Finish(m.id, m.spool_index(r.pos));
  } else {
    outcome = "deferred";
    st.deferred.Add();
    deferred->push_back(r);
  }
  if (options_.log_deliveries) {
    std::string_view address = job.address(r);
    SPATE_LOG(kInfo, "%s id=%s rcpt=<%.*s> domain=%s attempts=%u reply=\"%s\"", outcome,
              queue::FormatId(m.id).c_str(), static_cast<int>(address.size()), address.data(),
              dest.domain().c_str(), r.attempts + 1u, reply.ToString().c_str());
  }
}

Clock::duration Delivery::Impl::Backoff(uint16_t attempts) {
  double delay = options_.retry_base.count();
  for (uint16_t i = 1; i < attempts && delay < options_.retry_max.count(); ++i)
    delay *= 2;
  delay = std::min(delay, options_.retry_max.count());
  // +-20% jitter, so a burst deferred together is not retried together.
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return std::chrono::duration_cast<Clock::duration>(Seconds(delay * jitter(rng)));
}

void Delivery::Impl::Reschedule(Job&& job, std::vector<Recipient>&& deferred) {
  std::vector<Recipient> again = std::exchange(resend_now, {});
  const size_t accepted = std::exchange(accepted_now, 0);
  if (!again.empty()) {
    if (accepted > 0 && !shutting_down_) {
      Job next;
      next.message = job.message;
      next.body = job.body;
      for (const Recipient& r : again)
        next.recipients.push_back(r);
      Enqueue(DomainOf(job.address(again.front())), std::move(next));
    } else {
      // A server that takes none of them this way would be asked for ever: a deferral.
      for (const Recipient& r : again)
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
    if (r.attempts < UINT16_MAX)
      ++r.attempts;
    attempts = std::max(attempts, r.attempts);
  }
  auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(Backoff(attempts));
  job.due_ms = reactor_.wall_ms() + std::max<int64_t>(delay.count(), 1);
  for (const Recipient& r : job.recipients)
    spool.Defer(job.message->id, job.message->spool_index(r.pos), r.attempts, job.due_ms);
  job.body.reset();  // read again from the spool when due: deferred mail costs no body memory
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
  // A destination idle at two sweeps in a row, idle_timeout apart, is forgotten: its route is
  // asked again if mail for it comes back.
  const Clock::time_point now = reactor_.now();
  const auto period = std::chrono::duration_cast<Clock::duration>(options_.idle_timeout);
  size_t removed = 0;
  for (auto it = destinations.begin(); it != destinations.end();) {
    Destination& d = *it->second;
    if (!d.idle()) {
      d.idle_since = {};
      ++it;
    } else if (d.idle_since == Clock::time_point{}) {
      d.idle_since = now;
      ++it;
    } else if (now - d.idle_since >= period) {
      it = destinations.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  // Memory the engine let go of in bulk (forgotten destinations, a drained backlog) goes back
  // to the system; otherwise RSS would stay at its peak.
  if (removed >= kTrimAfterRemoving || finished_since_trim >= kTrimAfterFinishing) {
    finished_since_trim = 0;
    ReleaseFreeMemory();
  }
  if (!destinations.empty())
    ArmSweep();
}

Delivery::Delivery(Reactor& reactor, const Options& options, SpoolPort& spool, Routing& routing,
                   Stats& stats, uint64_t seed)
    : impl_(std::make_unique<Impl>(reactor, options, spool, routing, stats, seed)) {}

Delivery::~Delivery() = default;

void Delivery::Enqueue(const std::string& domain, Job&& job) {
  impl_->stats.ForDomain(domain).queued.Add(static_cast<int64_t>(job.recipients.size()));
  impl_->Enqueue(domain, std::move(job));
}

void Delivery::Shutdown() noexcept {
  impl_->shutting_down_ = true;
  // Whatever is queued or in flight stays in the spool and is scheduled again at the next
  // start. Connections are dropped; their recipients were not finished, so nothing is lost.
  impl_->scheduler.Clear();
  for (auto& [domain, dest] : impl_->destinations)
    dest->Shutdown();
}

size_t Delivery::destinations() const {
  return impl_->destinations.size();
}

size_t Delivery::scheduled() const {
  return impl_->scheduler.size();
}

long Delivery::open_connections(const std::string& domain) const {
  auto it = impl_->destinations.find(domain);
  return it == impl_->destinations.end() ? -1 : static_cast<long>(it->second->open_connections());
}

}  // namespace spate::delivery
