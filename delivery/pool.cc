#include "delivery/pool.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include <sys/socket.h>

#include "core/connection.h"
#include "core/log.h"
#include "delivery/client_session.h"

namespace spate::delivery {

namespace {
using Clock = Reactor::Clock;

Clock::duration ToDuration(Seconds s) {
  return std::chrono::duration_cast<Clock::duration>(s);
}

smtp::Reply Synthetic(uint16_t code, const char* enhanced, std::string text) {
  smtp::Reply r;
  r.code = code;
  r.enhanced = enhanced;
  r.text = std::move(text);
  return r;
}
}  // namespace

// One outbound SMTP connection of a destination's pool.
class ClientConnection final : public Connection {
 public:
  ClientConnection(Destination& dest, const Endpoint& host, size_t host_index, uint64_t generation,
                   int fd)
      : Connection(dest.engine_.reactor(), fd),
        dest_(dest),
        engine_(dest.engine_),
        host_(host),
        host_index_(host_index),
        generation_(generation),
        session_(ClientSession::Options{engine_.options().helo_name}) {}

  size_t host_index() const { return host_index_; }
  uint64_t generation() const { return generation_; }

  void Start() {
    Touch(engine_.options().connect_timeout);
    Connect(host_.addr, host_.len);
  }

  // Precondition: idle.
  void Submit(Job&& job) {
    reactor().CancelTimer(idle_timer_);
    job_ = std::move(job);
    const Message& m = *job_->message;
    Envelope env;
    env.mail_from = m.mail_from;
    env.size_hint = m.body_size;
    env.body_8bit = m.body_8bit;
    env.smtputf8 = m.smtputf8;
    env.rcpt_to.reserve(job_->recipients.size());
    for (const Recipient& r : job_->recipients)
      env.rcpt_to.emplace_back(job_->address(r));
    deferred_.clear();
    session_.Submit(env, *job_->body);
    ++messages_;
    Touch(engine_.options().reply_timeout);
    // The session may settle a transaction without a word to the server (a message that needs
    // SMTPUTF8 the server lacks): its events must be handled now, not at the next input. Inside
    // Drain() (OnIdle -> Submit) the running loop picks them up: no recursion.
    if (draining_) {
      Flush();
    } else {
      Drain();  // `this` may be gone
    }
  }

  void Quit() {
    if (session_.idle()) {
      session_.Quit();
      Touch(engine_.options().reply_timeout);
      Flush();
    }
  }

  Reactor::TimerId& idle_timer() { return idle_timer_; }

 protected:
  void OnConnected(int error) noexcept override {
    if (error != 0) {
      session_.Abort("connect to " + host_.text + ": " + log::ErrorText(error));
      Drain();
      return;
    }
    StartReading();
    Touch(engine_.options().reply_timeout);
  }

  void OnData(std::string_view data) noexcept override {
    last_activity_ = reactor().now();
    session_.OnBytes(data);
    Drain();
  }

  void OnClosed(int error) noexcept override {
    reactor().CancelTimer(timer_);
    reactor().CancelTimer(idle_timer_);
    if (!session_.closed()) {
      session_.Abort(error != 0 ? std::string("connection lost: ") + log::ErrorText(error)
                                : std::string("connection closed by peer"));
      Drain();
    }
    if (!gone_reported_) {
      gone_reported_ = true;
      dest_.OnConnectionGone(this, ready_seen_, close_reply_);
    }
  }

 private:
  void Flush() {
    std::string out = session_.TakeOutput();
    if (!out.empty())
      Send(std::move(out));
    // Once the body is in the output, the job lets go of it: a busy connection holds one copy
    // of its message (on its way to the kernel), not two.
    if (job_ && job_->body && !session_.body_borrowed())
      job_->body.reset();
  }

  // Handles everything the session has to say, then sends what it wrote.
  void Drain() {
    draining_ = true;
    for (;;) {
      Flush();
      std::vector<Event> events = session_.TakeEvents();
      if (events.empty())
        break;
      if (!HandleEvents(events))
        return;  // closed: `this` may be gone
    }
    draining_ = false;
  }

  // False once the session closed (then `this` may be gone).
  bool HandleEvents(std::vector<Event>& events) {
    for (Event& ev : events) {
      if (auto* r = std::get_if<RecipientResult>(&ev)) {
        if (job_)
          engine_.Record(dest_, *job_, r->recipient_index, r->reply, &deferred_);
      } else if (std::get_if<TransactionDone>(&ev) != nullptr) {
        if (job_) {
          Job done = std::move(*job_);
          job_.reset();
          engine_.Reschedule(std::move(done), std::move(deferred_));
          deferred_.clear();
        }
      } else if (std::get_if<ReadyForTransaction>(&ev) != nullptr) {
        if (!ready_seen_) {
          ready_seen_ = true;
          --dest_.connecting_;
        }
        if (messages_ >= engine_.options().max_messages_per_connection || engine_.shutting_down()) {
          session_.Quit();
          Touch(engine_.options().reply_timeout);
        } else {
          dest_.OnIdle(this);
        }
      } else if (auto* c = std::get_if<Closed>(&ev)) {
        close_reply_ = c->reply;
        Flush();
        draining_ = false;
        Close();
        return false;
      }
    }
    return true;
  }

  // (Re)arms the inactivity timer: it fires once `timeout` passes with no input.
  void Touch(Seconds timeout) {
    timeout_ = ToDuration(timeout);
    last_activity_ = reactor().now();
    const Clock::time_point due = last_activity_ + timeout_;
    // A shorter timeout than the armed one (reply_timeout after connect_timeout) takes effect
    // now; a longer one when the armed timer fires and finds the deadline moved on.
    if (timer_.valid() && timer_.deadline > due)
      reactor().CancelTimer(timer_);
    if (!timer_.valid())
      ArmTimer(due);
  }

  void ArmTimer(Clock::time_point at) {
    timer_ = reactor().AddTimer(at, [this] {
      timer_ = {};
      Clock::time_point due = last_activity_ + timeout_;
      if (reactor().now() < due)
        return ArmTimer(due);
      session_.Abort("timeout talking to " + host_.text);
      Drain();
    });
  }

  Destination& dest_;
  Engine& engine_;
  const Endpoint host_;
  const size_t host_index_;
  const uint64_t generation_;
  ClientSession session_;
  std::optional<Job> job_;
  std::vector<Recipient> deferred_;
  uint32_t messages_ = 0;
  bool draining_ = false;  // inside Drain(): Submit() leaves the events to its loop
  bool ready_seen_ = false;
  bool gone_reported_ = false;
  smtp::Reply close_reply_;
  Clock::duration timeout_{};
  Clock::time_point last_activity_{};
  Reactor::TimerId timer_;
  Reactor::TimerId idle_timer_;
};

Destination::Destination(Engine& engine, std::string domain, DomainStats& stats)
    : engine_(engine), domain_(std::move(domain)), stats_(stats) {}

Destination::~Destination() {
  engine_.reactor().CancelTimer(hold_timer_);
}

bool Destination::idle() const {
  return pending_.empty() && ready_.empty() && loading_ == 0 && open_.empty() &&
         route_state_ != RouteState::kResolving && !hold_timer_.valid();
}

void Destination::Add(Job&& job) {
  // Transactions carry at most max_recipients_per_transaction recipients; the parts share the
  // message and its body.
  const size_t max = engine_.options().max_recipients_per_transaction;
  while (max > 0 && job.recipients.size() > max) {
    Job part;
    part.message = job.message;
    part.body = job.body;
    part.recipients.assign(job.recipients.end() - static_cast<std::ptrdiff_t>(max),
                           job.recipients.end());
    job.recipients.resize(job.recipients.size() - max);
    Queue(std::move(part));
  }
  Queue(std::move(job));
  Pump();
}

void Destination::Queue(Job&& job) {
  // A fresh job keeps its body while the destination works (no hold after a failed
  // connection) and has room for it; else it is read again when a connection is ready for it,
  // so a destination that is down holds envelopes only.
  if (job.body && engine_.reactor().now() >= hold_until_ &&
      ready_.size() + loading_ < engine_.options().max_loaded_bodies) {
    ready_.push_back(std::move(job));
  } else {
    job.body.reset();  // read again when a connection is ready for it
    pending_.push_back(std::move(job));
  }
}

void Destination::OnBodyLoaded(Job&& job) {
  --loading_;
  ready_.push_back(std::move(job));
  Pump();
}

void Destination::OnBodyLost() {
  --loading_;
  Pump();
}

void Destination::OnRouted(RouteRef route) {
  route_state_ = RouteState::kResolved;
  route_ = std::move(route);
  ++route_generation_;
  host_hold_.assign(route_ != nullptr ? route_->hosts.size() : 0, Reactor::Clock::time_point{});
}

void Destination::DeferWaiting(const smtp::Reply& why) {
  std::deque<Job> waiting;
  waiting.swap(pending_);
  for (Job& job : ready_)
    waiting.push_back(std::move(job));
  ready_.clear();
  for (Job& job : waiting) {
    std::vector<Recipient> deferred;
    for (size_t i = 0; i < job.recipients.size(); ++i)
      engine_.Record(*this, job, i, why, &deferred);
    engine_.Reschedule(std::move(job), std::move(deferred));
  }
}

void Destination::Pump() {
  if (engine_.shutting_down())
    return;
  if (route_state_ == RouteState::kResolving)
    return;
  if (route_state_ == RouteState::kUnknown) {
    route_state_ = RouteState::kResolving;
    engine_.routing().Resolve(domain_, [this](RouteRef route) {
      OnRouted(std::move(route));
      Pump();
    });
    return;  // Pump() ran from the callback if it answered at once
  }
  if (route_ == nullptr) {
    // Asked again next time: a route may appear (MX records, a configuration reload).
    route_state_ = RouteState::kUnknown;
    DeferWaiting(
        Synthetic(451, "4.4.0", "no route to " + domain_ + " (configure [routes] or a smarthost)"));
    return;
  }
  if (route_->failure) {
    // The lookup said why there is nowhere to go: a 5xx fails the recipients at once (a null
    // MX, NXDOMAIN), a 4xx defers them. Asked again when the next ones are due.
    const RouteFailure f = *route_->failure;
    route_state_ = RouteState::kUnknown;
    route_ = nullptr;
    DeferWaiting(Synthetic(static_cast<uint16_t>(f.code), f.enhanced.c_str(), f.text));
    return;
  }
  const Options& options = engine_.options();
  Reactor& reactor = engine_.reactor();
  // Ready jobs to idle connections.
  while (!ready_.empty() && !idle_.empty()) {
    ClientConnection* conn = idle_.back();
    idle_.pop_back();
    Job job = std::move(ready_.front());
    ready_.pop_front();
    conn->Submit(std::move(job));
  }
  const size_t waiting = pending_.size() + ready_.size() + loading_;
  if (waiting > 0 && reactor.now() < hold_until_) {
    if (!hold_timer_.valid()) {
      hold_timer_ = reactor.AddTimer(hold_until_, [this] {
        hold_timer_ = {};
        Pump();
      });
    }
  } else {
    // Connections for the jobs that the connections already on their way will not take.
    while (waiting > connecting_ && open_.size() < options.max_connections) {
      const int index = PickHost();
      if (index < 0)
        break;  // every address is held: the hold timer comes back
      const Endpoint& host = route_->hosts[static_cast<size_t>(index)];
      int fd = socket(host.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        SPATE_LOG(kError, "delivery: socket: %s", log::ErrorText(errno));
        break;
      }
      auto* conn =
          new ClientConnection(*this, host, static_cast<size_t>(index), route_generation_, fd);
      open_.push_back(conn);
      ++connecting_;
      stats_.connections.Set(static_cast<int64_t>(open_.size()));
      conn->Start();
    }
  }
  // Bodies for the transactions to come, once the pool has a connection that took its
  // greeting and EHLO (a host that is down or slow to answer makes no body be read): one for
  // every fourth such connection and one more (a connection that finishes its transaction
  // mostly finds the next body waiting; 16,000 busy connections do not each hold two), at most
  // max_loaded_bodies.
  const size_t working = open_.size() - connecting_;
  const size_t want = std::min<size_t>(options.max_loaded_bodies, working / 4 + 1);
  while (working > 0 && !pending_.empty() && ready_.size() + loading_ < want) {
    Job job = std::move(pending_.front());
    pending_.pop_front();
    ++loading_;
    engine_.LoadBody(*this, std::move(job));
  }
}

void Destination::OnIdle(ClientConnection* conn) {
  if (!ready_.empty()) {
    Job job = std::move(ready_.front());
    ready_.pop_front();
    conn->Submit(std::move(job));
    if (!pending_.empty())
      Pump();  // one more body may be loaded now
    return;
  }
  idle_.push_back(conn);
  Reactor& reactor = engine_.reactor();
  reactor.CancelTimer(conn->idle_timer());
  conn->idle_timer() =
      reactor.AddTimer(reactor.now() + ToDuration(engine_.options().idle_timeout), [this, conn] {
        conn->idle_timer() = {};
        auto it = std::find(idle_.begin(), idle_.end(), conn);
        if (it != idle_.end())
          idle_.erase(it);
        conn->Quit();
      });
  if (!pending_.empty())
    Pump();  // bodies for it to send
}

void Destination::OnConnectionGone(ClientConnection* conn, bool ever_ready,
                                   const smtp::Reply& why) {
  if (auto it = std::find(open_.begin(), open_.end(), conn); it != open_.end())
    open_.erase(it);
  if (auto it = std::find(idle_.begin(), idle_.end(), conn); it != idle_.end())
    idle_.erase(it);
  if (!ever_ready)
    --connecting_;
  stats_.connections.Set(static_cast<int64_t>(open_.size()));
  if (engine_.shutting_down())
    return;
  if (!ever_ready)
    HoldHost(conn->generation(), conn->host_index(), why);
  // Another address not held: the same attempt goes on there (the next address, the next MX).
  if (!ever_ready && route_ != nullptr && PickHost() >= 0) {
    Pump();
    return;
  }
  if (!ever_ready && connecting_ == 0 && open_.empty()) {
    // The destination could not be reached and no other connection works: everything waiting
    // for it is deferred now, instead of one connection attempt per queued message.
    smtp::Reply reply = why;
    if (reply.code == 0 || reply.positive())
      reply = Synthetic(451, "4.4.1", why.text.empty() ? "cannot connect" : why.text);
    DeferWaiting(reply);
    return;
  }
  Pump();
}

int Destination::PickHost() {
  if (route_ == nullptr || route_->hosts.empty())
    return -1;
  const Reactor::Clock::time_point now = engine_.reactor().now();
  Reactor::Clock::time_point first_free = Reactor::Clock::time_point::max();
  for (size_t i = 0; i < host_hold_.size(); ++i) {
    if (host_hold_[i] <= now)
      return static_cast<int>(i);
    first_free = std::min(first_free, host_hold_[i]);
  }
  hold_until_ = first_free;
  return -1;
}

void Destination::HoldHost(uint64_t generation, size_t index, const smtp::Reply& why) {
  if (generation != route_generation_ || index >= host_hold_.size())
    return;  // an address of a route since replaced
  host_hold_[index] = engine_.reactor().now() + std::min(ToDuration(engine_.options().retry_base),
                                                         Clock::duration(std::chrono::seconds(5)));
  if (host_hold_.size() > 1) {
    SPATE_LOG(kDebug, "delivery: %s: %s failed (%s); trying the next address", domain_.c_str(),
              route_->hosts[index].text.c_str(), why.ToString().c_str());
  }
}

void Destination::Shutdown() {
  pending_.clear();
  ready_.clear();
  std::vector<ClientConnection*> open = open_;
  for (ClientConnection* c : open)
    c->Abort();
}

}  // namespace spate::delivery
