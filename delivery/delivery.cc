#include "delivery/delivery.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <random>
#include <unordered_map>

#include <sys/socket.h>
#include <unistd.h>

#include "core/connection.h"
#include "core/log.h"
#include "delivery/client_session.h"

namespace spate::delivery {

namespace {

using Clock = Reactor::Clock;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Clock::duration ToDuration(Seconds s) {
  return std::chrono::duration_cast<Clock::duration>(s);
}

std::string LowerDomainOf(std::string_view address) {
  auto at = address.rfind('@');
  std::string d(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
  for (char& c : d)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return d;
}

smtp::Reply Synthetic(uint16_t code, const char* enhanced, std::string text) {
  smtp::Reply r;
  r.code = code;
  r.enhanced = enhanced;
  r.text = std::move(text);
  return r;
}

}  // namespace

std::vector<Job> SplitByDomain(queue::MessageId id, const std::string& mail_from,
                               const std::vector<Recipient>& recipients, bool body_8bit,
                               bool smtputf8, uint64_t body_size, std::optional<std::string> body) {
  std::vector<Job> jobs;
  for (const Recipient& r : recipients) {
    std::string domain = LowerDomainOf(r.address);
    Job* job = nullptr;
    for (Job& j : jobs) {
      if (j.domain == domain)
        job = &j;
    }
    if (job == nullptr) {
      job = &jobs.emplace_back();
      job->id = id;
      job->mail_from = mail_from;
      job->domain = std::move(domain);
      job->body_8bit = body_8bit;
      job->smtputf8 = smtputf8;
      job->body_size = body_size;
    }
    job->recipients.push_back(r);
  }
  // The common case, one domain, takes the body without a copy.
  for (size_t i = 0; body && i < jobs.size(); ++i) {
    if (i + 1 == jobs.size()) {
      jobs[i].body = std::move(body);
    } else {
      jobs[i].body = *body;
    }
  }
  return jobs;
}

class ClientConnection;

struct Destination {
  std::string domain;
  const Endpoint* route = nullptr;  // nullptr: no route
  std::deque<Job> ready;            // bodies loaded, waiting for a connection
  std::vector<ClientConnection*> open;
  std::vector<ClientConnection*> idle;
  unsigned connecting = 0;  // open connections not yet ready for a transaction
  DomainStats* stats = nullptr;
  // After a failed connection attempt, no new connection before this (the ones already open
  // carry on): a refusing host is not hammered in a tight loop.
  Clock::time_point hold_until{};
  Reactor::TimerId hold_timer;
};

struct Delivery::Impl {
  Impl(Shard& s, const Config& c, queue::Spool& sp, ShardStats& st)
      : shard(s), config(c), spool(sp), stats(st), rng(std::random_device{}()) {}

  Reactor& reactor() { return shard.reactor(); }

  Shard& shard;
  const Config& config;
  queue::Spool& spool;
  ShardStats& stats;
  std::unordered_map<std::string, std::unique_ptr<Destination>> destinations;
  std::mt19937_64 rng;
  bool shutting_down = false;

  Destination& Dest(const std::string& domain);
  void Enqueue(Job&& job);
  void MakeReady(Job&& job);
  void Pump(Destination& dest);
  void OnIdle(Destination& dest, ClientConnection* conn);
  void OnConnectionGone(Destination& dest, ClientConnection* conn, bool ever_ready,
                        const smtp::Reply& why);
  void Record(Destination& dest, Job& job, size_t recipient, const smtp::Reply& reply,
              std::vector<Recipient>* deferred);
  void Reschedule(Job&& job, std::vector<Recipient>&& deferred);
  void DeferAll(Destination& dest, Job&& job, const smtp::Reply& why);
  Clock::duration Backoff(uint16_t attempts);
};

// One outbound SMTP connection of a destination's pool.
class ClientConnection final : public Connection {
 public:
  ClientConnection(Delivery::Impl& d, Destination& dest, int fd)
      : Connection(d.shard.reactor(), fd),
        d_(d),
        dest_(dest),
        session_(ClientSession::Options{d.config.helo_name}) {}

  void Start() {
    Touch(d_.config.connect_timeout);
    Connect(dest_.route->addr, dest_.route->len);
  }

  // Precondition: idle.
  void Submit(Job&& job) {
    reactor().CancelTimer(idle_timer_);
    job_ = std::move(job);
    Envelope env;
    env.mail_from = job_->mail_from;
    env.size_hint = job_->body_size;
    env.body_8bit = job_->body_8bit;
    env.smtputf8 = job_->smtputf8;
    env.rcpt_to.reserve(job_->recipients.size());
    for (const Recipient& r : job_->recipients)
      env.rcpt_to.push_back(r.address);
    deferred_.clear();
    session_.Submit(env, *job_->body);
    ++messages_;
    Touch(d_.config.reply_timeout);
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
      Touch(d_.config.reply_timeout);
      Flush();
    }
  }

  bool ready_seen() const { return ready_seen_; }
  Reactor::TimerId& idle_timer() { return idle_timer_; }

 protected:
  void OnConnected(int error) noexcept override {
    if (error != 0) {
      session_.Abort("connect to " + dest_.route->text + ": " + std::strerror(error));
      Drain();
      return;
    }
    StartReading();
    Touch(d_.config.reply_timeout);
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
      session_.Abort(error != 0 ? std::string("connection lost: ") + std::strerror(error)
                                : std::string("connection closed by peer"));
      Drain();
    }
    if (!gone_reported_) {
      gone_reported_ = true;
      d_.OnConnectionGone(dest_, this, ready_seen_, close_reply_);
    }
  }

 private:
  friend struct Delivery::Impl;

  void Flush() {
    std::string out = session_.TakeOutput();
    if (!out.empty())
      Send(std::move(out));
  }

  // Handles everything the session has to say, then sends what it wrote.
  void Drain() {
    draining_ = true;
    for (;;) {
      Flush();
      std::vector<Event> events = session_.TakeEvents();
      if (events.empty()) {
        break;
      }
      if (!HandleEvents(events)) {
        return;  // closed: `this` may be gone
      }
    }
    draining_ = false;
  }

  // False once the session closed (then `this` may be gone).
  bool HandleEvents(std::vector<Event>& events) {
    for (Event& ev : events) {
      if (auto* r = std::get_if<RecipientResult>(&ev)) {
        if (job_)
          d_.Record(dest_, *job_, r->recipient_index, r->reply, &deferred_);
      } else if (std::get_if<TransactionDone>(&ev) != nullptr) {
        if (job_) {
          Job done = std::move(*job_);
          job_.reset();
          d_.Reschedule(std::move(done), std::move(deferred_));
          deferred_.clear();
        }
      } else if (std::get_if<ReadyForTransaction>(&ev) != nullptr) {
        if (!ready_seen_) {
          ready_seen_ = true;
          --dest_.connecting;
        }
        if (messages_ >= d_.config.max_messages_per_connection || d_.shutting_down) {
          session_.Quit();
          Touch(d_.config.reply_timeout);
        } else {
          d_.OnIdle(dest_, this);
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
    if (!timer_.valid())
      ArmTimer(last_activity_ + timeout_);
  }

  void ArmTimer(Clock::time_point at) {
    timer_ = reactor().AddTimer(at, [this] {
      timer_ = {};
      Clock::time_point due = last_activity_ + timeout_;
      if (reactor().now() < due)
        return ArmTimer(due);
      session_.Abort("timeout talking to " + dest_.route->text);
      Drain();
    });
  }

  Delivery::Impl& d_;
  Destination& dest_;
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

Destination& Delivery::Impl::Dest(const std::string& domain) {
  auto it = destinations.find(domain);
  if (it != destinations.end())
    return *it->second;
  auto dest = std::make_unique<Destination>();
  dest->domain = domain;
  if (auto r = config.routes.find(domain); r != config.routes.end()) {
    dest->route = &r->second;
  } else if (!config.smarthost_text.empty()) {
    dest->route = &config.smarthost;
  }
  dest->stats = &stats.ForDomain(domain);
  Destination& ref = *dest;
  destinations.emplace(domain, std::move(dest));
  return ref;
}

void Delivery::Impl::Enqueue(Job&& job) {
  if (shutting_down)
    return;  // it stays in the spool; the next start picks it up
  int64_t now = NowMs();
  if (job.due_ms > now) {
    auto delay = std::chrono::milliseconds(job.due_ms - now);
    auto holder = std::make_shared<Job>(std::move(job));  // std::function needs copyable
    reactor().AddTimer(reactor().now() + delay, [this, holder] {
      holder->due_ms = 0;
      Enqueue(std::move(*holder));
    });
    return;
  }
  if (!job.body) {
    queue::MessageId id = job.id;
    auto holder = std::make_shared<Job>(std::move(job));
    Shard* self = &shard;
    spool.ReadBody(id, [this, self, holder](Result<std::string> body) {
      // On the spool's reader thread: hand the result to our shard.
      auto loaded = std::make_shared<Result<std::string>>(std::move(body));
      self->Post([this, holder, loaded] {
        if (!*loaded) {
          SPATE_LOG(kError, "delivery: cannot read body of %s: %s",
                    queue::FormatId(holder->id).c_str(), loaded->error().message().c_str());
          // Try again later rather than lose track of it.
          holder->due_ms = NowMs() + 60000;
          return Enqueue(std::move(*holder));
        }
        holder->body = std::move(**loaded);
        MakeReady(std::move(*holder));
      });
    });
    return;
  }
  MakeReady(std::move(job));
}

void Delivery::Impl::MakeReady(Job&& job) {
  if (shutting_down)
    return;
  Destination& dest = Dest(job.domain);
  if (dest.route == nullptr) {
    return DeferAll(
        dest, std::move(job),
        Synthetic(451, "4.4.0",
                  "no route to " + job.domain + " (configure [routes] or a smarthost)"));
  }
  // Transactions carry at most max_recipients_per_transaction recipients.
  size_t max = config.max_recipients_per_transaction;
  while (job.recipients.size() > max) {
    Job part;
    part.id = job.id;
    part.mail_from = job.mail_from;
    part.domain = job.domain;
    part.body_8bit = job.body_8bit;
    part.smtputf8 = job.smtputf8;
    part.body_size = job.body_size;
    part.body = job.body;
    part.recipients.assign(job.recipients.end() - max, job.recipients.end());
    job.recipients.resize(job.recipients.size() - max);
    dest.ready.push_back(std::move(part));
  }
  dest.ready.push_back(std::move(job));
  Pump(dest);
}

void Delivery::Impl::Pump(Destination& dest) {
  while (!dest.ready.empty() && !dest.idle.empty()) {
    ClientConnection* conn = dest.idle.back();
    dest.idle.pop_back();
    Job job = std::move(dest.ready.front());
    dest.ready.pop_front();
    conn->Submit(std::move(job));
  }
  if (!dest.ready.empty() && reactor().now() < dest.hold_until) {
    if (!dest.hold_timer.valid()) {
      dest.hold_timer = reactor().AddTimer(dest.hold_until, [this, &dest] {
        dest.hold_timer = {};
        Pump(dest);
      });
    }
    return;
  }
  // Open connections for the jobs that the connections already on their way will not take.
  while (!dest.ready.empty() && dest.ready.size() > dest.connecting &&
         dest.open.size() < config.max_connections) {
    int fd = socket(dest.route->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      SPATE_LOG(kError, "delivery: socket: %s", std::strerror(errno));
      break;
    }
    auto* conn = new ClientConnection(*this, dest, fd);
    dest.open.push_back(conn);
    ++dest.connecting;
    dest.stats->connections.Set(static_cast<int64_t>(dest.open.size()));
    conn->Start();
  }
}

void Delivery::Impl::OnIdle(Destination& dest, ClientConnection* conn) {
  if (!dest.ready.empty()) {
    Job job = std::move(dest.ready.front());
    dest.ready.pop_front();
    conn->Submit(std::move(job));
    return;
  }
  dest.idle.push_back(conn);
  reactor().CancelTimer(conn->idle_timer());
  conn->idle_timer() =
      reactor().AddTimer(reactor().now() + ToDuration(config.idle_timeout), [this, &dest, conn] {
        conn->idle_timer() = {};
        auto it = std::find(dest.idle.begin(), dest.idle.end(), conn);
        if (it != dest.idle.end())
          dest.idle.erase(it);
        conn->Quit();
      });
}

void Delivery::Impl::OnConnectionGone(Destination& dest, ClientConnection* conn, bool ever_ready,
                                      const smtp::Reply& why) {
  if (auto it = std::find(dest.open.begin(), dest.open.end(), conn); it != dest.open.end()) {
    dest.open.erase(it);
  }
  if (auto it = std::find(dest.idle.begin(), dest.idle.end(), conn); it != dest.idle.end()) {
    dest.idle.erase(it);
  }
  if (!ever_ready)
    --dest.connecting;
  dest.stats->connections.Set(static_cast<int64_t>(dest.open.size()));
  if (shutting_down)
    return;
  if (!ever_ready) {
    dest.hold_until = reactor().now() + std::min(ToDuration(config.retry_base),
                                                 Clock::duration(std::chrono::seconds(5)));
  }
  if (!ever_ready && dest.connecting == 0 && dest.open.empty()) {
    // The destination could not be reached and no other connection works: everything waiting
    // for it is deferred now, instead of one connection attempt per queued message.
    smtp::Reply reply = why;
    if (reply.code == 0 || reply.positive()) {
      reply = Synthetic(451, "4.4.1", why.text.empty() ? "cannot connect" : why.text);
    }
    std::deque<Job> waiting_jobs;
    waiting_jobs.swap(dest.ready);
    for (Job& job : waiting_jobs)
      DeferAll(dest, std::move(job), reply);
    return;
  }
  Pump(dest);
}

void Delivery::Impl::Record(Destination& dest, Job& job, size_t recipient, const smtp::Reply& reply,
                            std::vector<Recipient>* deferred) {
  if (recipient >= job.recipients.size())
    return;
  const Recipient& r = job.recipients[recipient];
  const char* outcome;
  if (reply.positive()) {
    outcome = "delivered";
    dest.stats->delivered.Add();
    dest.stats->queued.Add(-1);
    spool.Finish(job.id, r.index);
  } else if (reply.permanent()) {
    outcome = "failed";
    dest.stats->failed.Add();
    dest.stats->queued.Add(-1);
    spool.Finish(job.id, r.index);
  } else {
    outcome = "deferred";
    dest.stats->deferred.Add();
    deferred->push_back(r);
  }
  if (config.log_deliveries) {
    SPATE_LOG(kInfo, "%s id=%s rcpt=<%s> domain=%s attempts=%u reply=\"%s\"", outcome,
              queue::FormatId(job.id).c_str(), r.address.c_str(), dest.domain.c_str(),
              r.attempts + 1u, reply.ToString().c_str());
  }
}

Clock::duration Delivery::Impl::Backoff(uint16_t attempts) {
  double delay = config.retry_base.count();
  for (uint16_t i = 1; i < attempts && delay < config.retry_max.count(); ++i)
    delay *= 2;
  delay = std::min(delay, config.retry_max.count());
  // +-20% jitter, so a burst deferred together is not retried together.
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return ToDuration(Seconds(delay * jitter(rng)));
}

void Delivery::Impl::Reschedule(Job&& job, std::vector<Recipient>&& deferred) {
  if (deferred.empty())
    return;
  job.recipients = std::move(deferred);
  uint16_t attempts = 0;
  for (Recipient& r : job.recipients) {
    if (r.attempts < UINT16_MAX)
      ++r.attempts;
    attempts = std::max(attempts, r.attempts);
  }
  auto delay = Backoff(attempts);
  job.due_ms = NowMs() + std::chrono::duration_cast<std::chrono::milliseconds>(delay).count();
  for (const Recipient& r : job.recipients)
    spool.Defer(job.id, r.index, r.attempts, job.due_ms);
  job.body.reset();  // read again from the spool when due: deferred mail costs no memory
  Enqueue(std::move(job));
}

void Delivery::Impl::DeferAll(Destination& dest, Job&& job, const smtp::Reply& why) {
  std::vector<Recipient> deferred;
  for (size_t i = 0; i < job.recipients.size(); ++i)
    Record(dest, job, i, why, &deferred);
  Reschedule(std::move(job), std::move(deferred));
}

Delivery::Delivery(Shard& shard, const Config& config, queue::Spool& spool, ShardStats& stats)
    : impl_(std::make_unique<Impl>(shard, config, spool, stats)) {}

Delivery::~Delivery() = default;

void Delivery::Enqueue(Job&& job) {
  Destination& dest = impl_->Dest(job.domain);
  dest.stats->queued.Add(static_cast<int64_t>(job.recipients.size()));
  impl_->Enqueue(std::move(job));
}

void Delivery::Shutdown() noexcept {
  impl_->shutting_down = true;
  // Whatever is queued or in flight stays in the spool and is scheduled again at the next
  // start. Connections are dropped; their recipients were not finished, so nothing is lost.
  for (auto& [domain, dest] : impl_->destinations) {
    dest->ready.clear();
    std::vector<ClientConnection*> open = dest->open;
    for (ClientConnection* c : open)
      c->Abort();
  }
}

}  // namespace spate::delivery
