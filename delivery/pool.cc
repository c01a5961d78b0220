#include "delivery/pool.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include <sys/socket.h>

#include "core/connection.h"
#include "core/log.h"
#include "core/smtp/server_session.h"
#include "core/tls/tls.h"
#include "delivery/client_session.h"
#include "delivery/dsn.h"

namespace spate::delivery {

namespace {
using Clock = Reactor::Clock;

Clock::duration ToDuration(Seconds s) {
  return std::chrono::duration_cast<Clock::duration>(s);
}

// A transaction's commands go behind an end of data only up to this size (about 50 recipients
// of typical length): a server reads only so much past the end of data it is answering. Haraka
// 3.3 hangs up, before its reply to the end of data, once more than 8 KB waits behind it; the
// message just sent is then neither confirmed nor refused. A larger group waits for the reply.
constexpr size_t kMaxBytesBehindData = 4096;

// At most the bytes of `job`'s MAIL, RCPT and DATA commands (ClientSession::Submit writes them;
// its parameters, ORCPT among them, counted at their longest).
size_t CommandBytes(const Job& job) {
  size_t n = 128 + job.message->mail_from.size();
  for (const Recipient& r : job.recipients)
    n += 64 + 2 * job.address(r).size();
  return n;
}

// One cell per 1/rate: a nanosecond clock keeps "3/day" and "1000/s" exact enough.
Clock::duration IntervalOf(double rate) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
}

// Some recipient of the job asked for NOTIFY=SUCCESS (RFC 3461 §4.1).
bool WantsSuccessNotice(const Job& job) {
  if (job.message->dsn.empty())
    return false;
  for (const Recipient& r : job.recipients) {
    const queue::DsnRequest* d = job.message->dsn_of(r.pos);
    if (d != nullptr && (d->notify & smtp::kNotifySuccess) != 0)
      return true;
  }
  return false;
}

// "mx1.example.net[192.0.2.1]:25" (an MX) or "192.0.2.1:25" (a configured route).
Peer PeerOf(const Endpoint& host, const std::string& name) {
  Peer p;
  p.name = name;
  const std::string& t = host.text;
  if (size_t open = t.find('['); open != std::string::npos && open > 0) {
    const size_t close = t.find(']', open);
    p.address = close == std::string::npos
                    ? t.substr(open + 1)
                    : t.substr(open + 1, close - open - 1) + t.substr(close + 1);
  } else {
    p.address = t;
  }
  p.log = " mx=" + t + " tls=none";
  return p;
}

// RFC 3461 §4.1–§4.4: the sender's DSN request, as it goes on to a server that offers DSN.
void AddDsnParameters(const Job& job, Envelope* env) {
  const Message& m = *job.message;
  if (m.ret == 1)
    env->dsn_mail = " RET=FULL";
  else if (m.ret == 2)
    env->dsn_mail = " RET=HDRS";
  if (!m.envid.empty())
    env->dsn_mail += " ENVID=" + dsn::Xtext(m.envid);
  if (m.dsn.empty())
    return;
  env->dsn_rcpt.reserve(job.recipients.size());
  for (const Recipient& r : job.recipients) {
    std::string& p = env->dsn_rcpt.emplace_back();
    const queue::DsnRequest* d = m.dsn_of(r.pos);
    if (d == nullptr)
      continue;
    if (d->notify & smtp::kNotifyNever) {
      p = " NOTIFY=NEVER";
    } else if (d->notify != 0) {
      p = " NOTIFY=";
      if (d->notify & smtp::kNotifySuccess)
        p += "SUCCESS,";
      if (d->notify & smtp::kNotifyFailure)
        p += "FAILURE,";
      if (d->notify & smtp::kNotifyDelay)
        p += "DELAY,";
      p.pop_back();
    }
    // Kept decoded as "type;address": the address goes back to xtext.
    if (size_t semi = d->orcpt.find(';'); semi != std::string::npos)
      p += " ORCPT=" + d->orcpt.substr(0, semi + 1) + dsn::Xtext(d->orcpt.substr(semi + 1));
  }
}

// The same addresses, in any order (equal MX preferences are shuffled per lookup). Asked for
// every job of a site of many domains, each with a route of its own: no allocation.
bool SameAddresses(const Route& a, const Route& b) {
  if (a.hosts.size() != b.hosts.size())
    return false;
  for (const Endpoint& e : a.hosts) {
    bool found = false;
    for (const Endpoint& f : b.hosts)
      found = found || e.text == f.text;
    if (!found)
      return false;
  }
  return true;
}

smtp::Reply Synthetic(uint16_t code, const char* enhanced, std::string text) {
  smtp::Reply r;
  r.code = code;
  r.enhanced = enhanced;
  r.text = std::move(text);
  return r;
}
}  // namespace

// One outbound SMTP connection of a site's pool.
class ClientConnection final : public Connection {
 public:
  struct Tls {
    bool starttls = false;
    bool require = false;
    bool verify = false;
    std::shared_ptr<const std::vector<tls::Tlsa>> dane;  // set: DANE for this host
  };

  ClientConnection(Site& site, const Endpoint& host, std::string host_name, size_t host_index,
                   uint64_t generation, Tls tls, int fd)
      : Connection(site.engine_.reactor(), fd),
        site_(site),
        engine_(site.engine_),
        host_(host),
        host_name_(std::move(host_name)),
        host_index_(host_index),
        generation_(generation),
        tls_mode_(tls),
        session_(ClientSession::Options{
            engine_.options().helo_name, tls.starttls, tls.require, host.text,
            engine_.options().pipeline_next && !site.pipeline_next_refused()}),
        peer_(PeerOf(host, host_name_)) {}

  size_t host_index() const { return host_index_; }
  // The provider's connection count this connection holds (null: none).
  ProviderLimits::Entry*& provider_slot() { return provider_slot_; }
  // [cluster]: its leases in Redis, the site's and the provider's (0: none).
  uint64_t& lease() { return lease_; }
  uint64_t& provider_lease() { return provider_lease_; }
  uint64_t generation() const { return generation_; }

  void Start() {
    Touch(engine_.options().connect_timeout);
    Connect(host_.addr, host_.len);
  }

  // Precondition: idle, or can_take_next() (then it goes behind the end of data in flight).
  void Submit(Job&& job) {
    reactor().CancelTimer(idle_timer_);
    InFlight& f = flights_[flights_[0].job ? 1 : 0];
    SPATE_CHECK(!f.job);
    f.job = std::move(job);
    const Job& j = *f.job;
    const Message& m = *j.message;
    Envelope env;
    env.mail_from = m.mail_from;
    env.size_hint = m.body_size;
    env.body_8bit = m.body_8bit;
    env.smtputf8 = m.smtputf8;
    env.priority = m.priority;
    env.rcpt_to.reserve(j.recipients.size());
    for (const Recipient& r : j.recipients)
      env.rcpt_to.emplace_back(j.address(r));
    AddDsnParameters(j, &env);
    f.outcomes = Outcomes();
    f.outcomes.site = &site_;
    engine_.Submitted(site_, *f.job);
    f.tx = session_.Submit(env, *f.job->body);
    ++messages_;
    Touch(PhaseTimeout());
    // The session may settle a transaction without a word to the server (a message that needs
    // SMTPUTF8 the server lacks): its events must be handled now, not at the next input. Inside
    // Drain() (OnIdle -> Submit) the running loop picks them up and sends the output: no
    // recursion, and a next transaction goes out in the same write as the end of data before it.
    if (!draining_)
      Drain();  // `this` may be gone
  }

  void Quit() {
    if (session_.idle()) {
      session_.Quit();
      Touch(PhaseTimeout());
      Flush();
    }
  }

  Reactor::TimerId& idle_timer() { return idle_timer_; }

  // ClientSession::can_submit_next(), and this connection may carry one more message.
  bool can_take_next() const {
    return session_.can_submit_next() && !(flights_[0].job && flights_[1].job) &&
           messages_ < site_.limits().max_deliveries_per_connection && !engine_.shutting_down() &&
           !site_.suspended();
  }

 protected:
  void OnConnected(int error) noexcept override {
    if (error != 0) {
      session_.Abort("connect to " + host_.text + ": " + log::ErrorText(error));
      Drain();
      return;
    }
    StartReading();
    Touch(PhaseTimeout());
  }

  void OnData(std::string_view data) noexcept override {
    last_activity_ = reactor().now();
    if (!tls_) {
      session_.OnBytes(data);
      Drain();
      return;
    }
    std::string plain;
    Result<void> fed = tls_->FeedCiphertext(data, &plain);
    SendCiphertext();  // the handshake's next flight, or the alert that ends a failed one
    if (!fed) {
      TlsFailed(tls_->failure());
      return;
    }
    if (!tls_reported_ && tls_->handshake_done()) {
      tls_reported_ = true;
      if (tls_mode_.dane != nullptr && !tls_mode_.dane->empty()) {
        // RFC 7672 §3: the chain the server sent must match a usable TLSA record (DANE-EE on
        // the leaf; DANE-TA with the path to the anchor and the MX host's name).
        const tls::DaneVerdict v = tls::MatchTlsa(*tls_mode_.dane, tls_->PeerChain(), {host_name_},
                                                  reactor().wall_ms() / 1000);
        if (v.result != tls::DaneResult::kMatch) {
          engine_.stats()
              .ForDomain(site_.policy().domain)
              .tls_policy[kTlsPolicyDane][kTlsResultMismatch]
              .Add();
          const std::string why =
              "DANE: no TLSA record matches the server's certificate (" + v.detail + ")";
          ReportTls(tlsrpt::Failure{tlsrpt::ResultType::kValidationFailure, {}, {}, {}, why});
          TlsFailed(why);
          return;
        }
        peer_.dane = true;
      } else if (tls_mode_.dane != nullptr) {
        // Records, none usable for SMTP: TLS without authentication (RFC 7672 §2.2), and the
        // domain hears of its records (RFC 8460 §4.3.2.1).
        ReportTls(tlsrpt::Failure{tlsrpt::ResultType::kTlsaInvalid,
                                  {},
                                  {},
                                  {},
                                  "no TLSA record usable for SMTP (RFC 7672 §3.1)"});
      }
      if (sts_testing_) {
        if (const std::string why = tls_->VerifyFailure(); !why.empty()) {
          engine_.stats()
              .ForDomain(site_.policy().domain)
              .tls_policy[kTlsPolicyStsTesting][kTlsResultTempfail]
              .Add();
          SPATE_LOG(kInfo, "mta-sts: %s: testing policy: %s would fail verification (%s); sent",
                    site_.name().c_str(), host_.text.c_str(), why.c_str());
          ReportTls(
              tlsrpt::Failure{tlsrpt::FromCertProblem(tls_->cert_problem()), {}, {}, {}, why});
        }
      }
      ReportTls(std::nullopt);  // a success, unless a failure was reported above
      const std::string version = tls_->version();
      const std::string cipher = tls_->cipher();
      peer_.tls_version = version;
      peer_.tls_cipher = cipher;
      peer_.log = " mx=" + host_.text + " tls=" + version + "/" + cipher;
      engine_.stats().CountTls(version, cipher);
      session_.OnTlsEstablished();
      Touch(PhaseTimeout());
    }
    if (!plain.empty())
      session_.OnBytes(plain);
    Drain();
  }

  void OnClosed(int error) noexcept override {
    reactor().CancelTimer(timer_);
    reactor().CancelTimer(idle_timer_);
    if (!session_.closed()) {
      std::string why = error != 0 ? std::string("connection lost: ") + log::ErrorText(error)
                                   : std::string("connection closed by peer");
      if (tls_ && !tls_->handshake_done()) {
        TlsFailed(why);  // a server that hangs up in the handshake has broken TLS too
      } else {
        session_.Abort(why);
        Drain();
      }
    }
    if (!gone_reported_) {
      gone_reported_ = true;
      site_.OnConnectionGone(this, ready_seen_, tls_failed_, close_reply_);
    }
  }

 private:
  void Flush() {
    std::string out = session_.TakeOutput();
    if (!out.empty()) {
      if (tls_) {
        if (tls_->Write(out))
          SendCiphertext();
      } else {
        Send(std::move(out));
      }
    }
    // Once the body is in the output, the job lets go of it: a busy connection holds one copy
    // of its message (on its way to the kernel), not two. Unless a recipient asked for a success
    // notice the server will not send: that notice returns the original, and the spool's copy
    // goes with the message's last recipient.
    for (InFlight& f : flights_) {
      if (f.job && f.job->body && !session_.body_borrowed(f.tx) &&
          (session_.dsn_offered() || !WantsSuccessNotice(*f.job)))
        f.job->DropBody();
    }
  }

  // The transaction `tx` in flight (null: none, e.g. after Reschedule).
  struct InFlight;
  InFlight* FlightOf(uint32_t tx) {
    for (InFlight& f : flights_) {
      if (f.job && f.tx == tx)
        return &f;
    }
    return nullptr;
  }

  // Handles everything the session has to say, then sends what it wrote (in one write: the end
  // of data and the next transaction behind it go out together).
  void Drain() {
    draining_ = true;
    for (;;) {
      std::vector<Event> events = session_.TakeEvents();
      if (events.empty())
        break;
      if (!HandleEvents(events))
        return;  // closed: `this` may be gone
    }
    Retime();
    Flush();
    draining_ = false;
  }

  // False once the session closed (then `this` may be gone).
  bool HandleEvents(std::vector<Event>& events) {
    for (Event& ev : events) {
      if (auto* r = std::get_if<RecipientResult>(&ev)) {
        Saw(r->reply);
        if (InFlight* f = FlightOf(r->transaction_id)) {
          f->outcomes.peer_dsn = session_.dsn_offered();
          // A Bounce rule in force (fired by this reply, maybe) fails what is not delivered.
          const smtp::Reply& reply =
              !r->reply.positive() && site_.bouncing() != nullptr ? site_.bounce_reply() : r->reply;
          engine_.Record(&site_, *f->job, r->recipient_index, reply, &f->outcomes, &peer_);
        }
      } else if (auto* d = std::get_if<TransactionDone>(&ev)) {
        if (session_.pipeline_next_refused() && !site_.pipeline_next_refused())
          site_.NotePipelineNextRefused(host_.text);
        if (InFlight* f = FlightOf(d->transaction_id)) {
          Job done = std::move(*f->job);
          f->job.reset();
          engine_.Reschedule(std::move(done), std::exchange(f->outcomes, Outcomes()));
        }
      } else if (std::get_if<ReadyForNext>(&ev) != nullptr) {
        // One round trip per message: the next job's MAIL/RCPT/DATA behind this end of data.
        if (can_take_next())
          site_.OnReadyForNext(this);
      } else if (std::get_if<ReadyForTransaction>(&ev) != nullptr) {
        if (!ready_seen_) {
          ready_seen_ = true;
          --site_.connecting_;
          // In the clear under a policy (MTA-STS testing goes on without TLS): no STARTTLS.
          if (!tls_)
            ReportTls(tlsrpt::Failure{
                tlsrpt::ResultType::kStarttlsNotSupported, {}, {}, {}, "STARTTLS not offered"});
        }
        if (messages_ >= site_.limits().max_deliveries_per_connection || engine_.shutting_down() ||
            site_.suspended()) {
          session_.Quit();
          Touch(PhaseTimeout());
        } else {
          site_.OnIdle(this);
        }
      } else if (std::get_if<StartTls>(&ev) != nullptr) {
        StartTlsHandshake();  // a failure closes the session: its Closed comes next
      } else if (auto* c = std::get_if<Closed>(&ev)) {
        Saw(c->reply);
        close_reply_ = c->reply;
        if (session_.tls_unavailable()) {
          engine_.stats().tls_unavailable.Add();
          ReportTls(tlsrpt::Failure{
              tlsrpt::ResultType::kStarttlsNotSupported, {}, {}, {}, c->reply.ToString()});
        }
        return HandleClosed();
      }
    }
    return true;
  }

  // A reply from the server that its site's automation looks at: failures only, and one
  // reply once (a DATA reply comes once per recipient, and the 421 that closes once more).
  void Saw(const smtp::Reply& reply) {
    if (reply.code == 0 || reply.positive() || !site_.has_rules())
      return;  // no rule to look at it: no copy of the text either
    std::string text = reply.ToString();
    if (text == last_reply_)
      return;
    last_reply_ = std::move(text);
    site_.SawReply(reply);
  }

  bool HandleClosed() {
    Flush();
    if (tls_ && tls_->handshake_done() && !tls_->failed()) {
      tls_->Shutdown();  // close_notify (RFC 8446 §6.1)
      SendCiphertext();
    }
    draining_ = false;
    Close();
    return false;
  }

  void StartTlsHandshake() {
    const tls::TlsContext* context = engine_.tls_context();
    if (context == nullptr) {
      session_.Fail(smtp::Reply{451, "4.7.5", "no TLS client context"});
      return;
    }
    // SNI and the name checked: the MX host's (RFC 7672 §8.1 and RFC 6125 use the MX name).
    tls_ = std::make_unique<tls::TlsSession>(*context, host_name_, tls_mode_.verify);
    // MTA-STS "testing" (RFC 8461 §5): delivered as without a policy, and what enforcing it
    // would have found is counted and logged.
    sts_testing_ =
        !tls_mode_.verify && site_.route() != nullptr && site_.route()->mta_sts == "testing";
    if (sts_testing_)
      tls_->CheckWithoutFailing(host_name_);
    if (tls_->failed()) {
      // Nothing to verify against (no name): no ClientHello went out, so do not wait for one.
      ReportTls(
          tlsrpt::Failure{tlsrpt::ResultType::kValidationFailure, {}, {}, {}, tls_->failure()});
      tls_failed_ = true;
      engine_.stats().tls_failures.Add();
      session_.Fail(smtp::Reply{451, "4.7.5", "TLS with " + host_.text + ": " + tls_->failure()});
      return;
    }
    Touch(engine_.options().tls_handshake_timeout);
    SendCiphertext();  // the ClientHello
  }

  // TLSRPT (RFC 8460): this connection's TLS under the destination's policy (DANE for this
  // host, else MTA-STS), counted once: a success (no failure), or the failure. Nothing is
  // counted without a policy.
  void ReportTls(std::optional<tlsrpt::Failure> failure) {
    tlsrpt::Reports* reports = engine_.tls_reports();
    const Route* route = site_.route().get();
    if (reports == nullptr || tls_report_done_)
      return;
    const bool dane = tls_mode_.dane != nullptr;
    if (!dane && (route == nullptr || route->sts_policy == nullptr))
      return;
    tls_report_done_ = true;
    const tlsrpt::PolicyType type = dane ? tlsrpt::PolicyType::kTlsa : tlsrpt::PolicyType::kSts;
    const std::string key = dane ? host_name_ : "";
    auto describe = [&](tlsrpt::PolicyReport* r) {
      if (dane)
        tlsrpt::DescribeTlsa(host_name_, tls_mode_.dane.get(), r);
      else
        tlsrpt::DescribeSts(*route->sts_policy, r);
    };
    if (!failure) {
      reports->Success(site_.policy().domain, type, key, describe);
      return;
    }
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (getsockname(fd(), reinterpret_cast<sockaddr*>(&local), &len) == 0)
      failure->sending_ip = tlsrpt::IpOf(local);
    failure->receiving_mx = host_name_;
    failure->receiving_ip = tlsrpt::IpOf(host_.addr);
    reports->Fail(site_.policy().domain, type, key, describe, std::move(*failure));
  }

  // The handshake failed (or the server hung up in it): the session ends with 451 4.7.5.
  void TlsFailed(const std::string& why) {
    ReportTls(tlsrpt::Failure{tls_ ? tlsrpt::FromCertProblem(tls_->cert_problem())
                                   : tlsrpt::ResultType::kValidationFailure,
                              {},
                              {},
                              {},
                              why});
    tls_failed_ = true;
    engine_.stats().tls_failures.Add();
    if (site_.route() != nullptr && site_.route()->mta_sts == "enforce") {
      // A handshake the destination's policy asked to verify (RFC 8461 §4.2).
      engine_.stats()
          .ForDomain(site_.policy().domain)
          .tls_policy[kTlsPolicyStsEnforce][kTlsResultTempfail]
          .Add();
    }
    SPATE_LOG(kInfo, "delivery: %s: TLS handshake with %s failed: %s", site_.name().c_str(),
              host_.text.c_str(), why.c_str());
    session_.Fail(
        smtp::Reply{451, "4.7.5", "TLS handshake with " + host_.text + " failed: " + why});
    Drain();
  }

  void SendCiphertext() {
    std::string out = tls_->TakeCiphertext();
    if (!out.empty())
      Send(std::move(out));
  }

  // The wait for what the connection waits for now: the reply the session waits for (RFC 5321
  // §4.5.3.2: the greeting's and the end of data's have their own), or the TLS handshake
  // ([tls] handshake_timeout), during which the session waits for no reply.
  Seconds PhaseTimeout() const {
    if (tls_ && !tls_->handshake_done())
      return engine_.options().tls_handshake_timeout;
    switch (session_.awaiting()) {
      case ClientSession::Awaiting::kGreeting:
        return engine_.options().greeting_timeout;
      case ClientSession::Awaiting::kEndOfData:
        return engine_.options().data_dot_timeout;
      case ClientSession::Awaiting::kNothing:
        // Idle in the pool: its idle timer sends QUIT; this one must not cut it off first.
        return std::max(engine_.options().reply_timeout, site_.limits().idle_timeout);
      case ClientSession::Awaiting::kReply:
        break;
    }
    return engine_.options().reply_timeout;
  }

  // The replies that came in may leave another one waited for (the greeting answered, EHLO
  // sent; the end of data answered, the next MAIL's reply behind it): its wait, counted from
  // the last input.
  void Retime() {
    timeout_ = ToDuration(PhaseTimeout());
    Rearm();
  }

  // (Re)arms the inactivity timer: it fires once `timeout` passes with no input.
  void Touch(Seconds timeout) {
    timeout_ = ToDuration(timeout);
    last_activity_ = reactor().now();
    Rearm();
  }

  // A shorter timeout than the armed one (reply_timeout after connect_timeout) takes effect
  // now; a longer one when the armed timer fires and finds the deadline moved on.
  void Rearm() {
    const Clock::time_point due = last_activity_ + timeout_;
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
      if (tls_ && !tls_->handshake_done())
        return TlsFailed("timed out");
      session_.Abort("timeout talking to " + host_.text);
      Drain();
    });
  }

  Site& site_;
  Engine& engine_;
  const Endpoint host_;
  const std::string host_name_;
  const size_t host_index_;
  const uint64_t generation_;
  const Tls tls_mode_;
  ClientSession session_;
  std::unique_ptr<tls::TlsSession> tls_;  // from the 220 to STARTTLS on
  bool sts_testing_ = false;              // the site's MTA-STS policy is "testing"
  Peer peer_;
  bool tls_reported_ = false;
  bool tls_report_done_ = false;  // ReportTls() counted this connection
  bool tls_failed_ = false;
  // The transactions in flight: one, or two with the second behind the first's end of data.
  struct InFlight {
    uint32_t tx = 0;  // the session's transaction id
    std::optional<Job> job;
    Outcomes outcomes;
  };
  InFlight flights_[2];
  uint32_t messages_ = 0;
  ProviderLimits::Entry* provider_slot_ = nullptr;
  uint64_t lease_ = 0;
  uint64_t provider_lease_ = 0;
  std::string last_reply_;  // the last failure reply the site's rules saw from this server
  bool draining_ = false;   // inside Drain(): Submit() leaves the events to its loop
  bool ready_seen_ = false;
  bool gone_reported_ = false;
  smtp::Reply close_reply_;
  Clock::duration timeout_{};
  Clock::time_point last_activity_{};
  Reactor::TimerId timer_;
  Reactor::TimerId idle_timer_;
};

Site::Site(Engine& engine, std::string name, RouteRef route, TlsMode tls, SitePolicy policy)
    : engine_(engine),
      name_(std::move(name)),
      tls_(tls),
      stats_(engine.stats().ForSite(name_)),
      domain_stats_(policy.own_domain ? &engine.stats().ForDomain(name_) : nullptr),
      policy_(std::move(policy)),
      automation_(engine.options(), policy_.values) {
  SetRoute(std::move(route));
  SetPolicy(policy_);
}

Site::~Site() {
  // Its queue gauges are back to zero already (it is forgotten only when idle), and the entry
  // may be "other", shared with live sites: nothing to reset.
  engine_.reactor().CancelTimer(wake_timer_);
  *alive_ = false;
  if (Cluster* c = engine_.cluster(); c != nullptr) {
    for (uint64_t lease : {site_lease_.ready, provider_lease_.ready}) {
      if (lease != 0)
        c->ReleaseLease(lease);
    }
  }
}

bool Site::idle() const {
  return pending_.empty() && ready_.empty() && loading_ == 0 && open_.empty() &&
         !wake_timer_.valid() && !automation_.any_active();
}

void Site::SetPolicy(SitePolicy policy) {
  if (&policy != &policy_)
    policy_ = std::move(policy);
  AutomationState next(engine_.options(), policy_.values);
  next.CarryOver(automation_);
  automation_ = std::move(next);
  const ShapingValues& v = policy_.values;
  provider_ = nullptr;
  provider_interval_ = {};
  if (!policy_.provider.empty() &&
      (v.provider_connection_limit || PerSecond(v.provider_max_message_rate) > 0)) {
    provider_ = &engine_.provider_limits().For(policy_.provider);
    if (const double rate = PerSecond(v.provider_max_message_rate); rate > 0)
      provider_interval_ =
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
  }
  UpdateLimits();
}

void Site::UpdateLimits() {
  limits_ = automation_.Apply();
  // [cluster] while Redis cannot be reached (the "divide" fallback): this node's share of each
  // limit, the limit divided by the nodes (cluster.h).
  if (Cluster* c = engine_.cluster(); c != nullptr) {
    cluster_generation_ = c->generation();
    if (c->mode() == Cluster::Mode::kDivided && c->nodes() > 1) {
      const unsigned n = c->nodes();
      limits_.message_rate /= n;
      limits_.connection_rate /= n;
      limits_.connection_limit = std::max(1u, (limits_.connection_limit + n - 1) / n);
    }
  }
  auto throttle = [](std::optional<Gcra>* g, double rate) {
    if (rate <= 0) {
      g->reset();
      return;
    }
    // One cell per 1/rate: a nanosecond clock keeps "3/day" and "1000/s" exact enough.
    const auto interval = IntervalOf(rate);
    if (*g) {
      (*g)->SetRate(1, interval);
    } else {
      g->emplace(1, interval);
    }
  };
  throttle(&message_rate_, limits_.message_rate);
  throttle(&connection_rate_, limits_.connection_rate);
  stats_.connection_limit.Set(limits_.connection_limit);
  stats_.deliveries_per_connection.Set(limits_.max_deliveries_per_connection);
  stats_.recipients_per_batch.Set(limits_.max_recipients_per_batch);
  stats_.message_rate_milli.Set(static_cast<int64_t>(limits_.message_rate * 1000));
  stats_.connection_rate_milli.Set(static_cast<int64_t>(limits_.connection_rate * 1000));
  stats_.suspended.Set(automation_.suspended() ? 1 : 0);
}

void Site::SawReply(const smtp::Reply& reply) {
  if (automation_.rules().empty())
    return;
  const std::vector<AutomationState::Event> events =
      automation_.OnReply(reply.ToString(), engine_.reactor().now());
  if (events.empty())
    return;
  for (const AutomationState::Event& e : events) {
    if (automation_.rules()[e.rule].action == Automation::Action::kBounce) {
      bounce_reply_ = reply;
      bounce_reply_.code = static_cast<uint16_t>(500 + reply.code % 100);
      if (!bounce_reply_.enhanced.empty())
        bounce_reply_.enhanced[0] = '5';
      bounce_reply_.text =
          "bounced by shaping rule " + automation_.rules()[e.rule].label() + ": " + reply.text;
    }
  }
  OnAutomationEvents(events, &reply);
  UpdateLimits();
  if (automation_.suspended())
    QuitIdle();
  // Pump() soon, not from inside the connection's event loop that brought the reply.
  WakeAt(engine_.reactor().now());
}

void Site::OnAutomationEvents(const std::vector<AutomationState::Event>& events,
                              const smtp::Reply* reply) {
  for (const AutomationState::Event& e : events) {
    const Automation& rule = automation_.rules()[e.rule];
    RuleStats& rs = engine_.stats().ForRule(name_, rule.label());
    if (e.kind == AutomationState::Event::kFired) {
      rs.fired.Add();
      if (rule.action == Automation::Action::kSuspend)
        stats_.suspensions.Add();
    }
    rs.active.Set(e.kind == AutomationState::Event::kEnded ? 0 : 1);
    engine_.RecordAutomation(*this, rule, e,
                             e.kind == AutomationState::Event::kFired ? reply : nullptr,
                             automation_.until(e.rule));
  }
}

void Site::WakeAt(Clock::time_point at) {
  Reactor& reactor = engine_.reactor();
  if (wake_timer_.valid()) {
    if (wake_timer_.deadline <= at)
      return;
    reactor.CancelTimer(wake_timer_);
  }
  wake_timer_ = reactor.AddTimer(at, [this] {
    wake_timer_ = {};
    Pump();
  });
}

void Site::QuitIdle() {
  std::vector<ClientConnection*> idle;
  idle.swap(idle_);
  for (ClientConnection* c : idle) {
    engine_.reactor().CancelTimer(c->idle_timer());
    c->Quit();
  }
}

Clock::duration Site::TakeShared(SharedCell& cell, const std::string& key, Clock::duration interval,
                                 Clock::time_point now) {
  if (cell.granted) {
    cell.granted = false;
    return {};
  }
  if (cell.asking)
    return std::chrono::seconds(1);  // the answer wakes the site
  if (now < cell.retry_at)
    return cell.retry_at - now;
  cell.asking = true;
  engine_.cluster()->TakeCell(
      key, interval, [this, &cell, alive = alive_](Cluster::Mode mode, Clock::duration wait) {
        if (!*alive)
          return;
        cell.asking = false;
        const Clock::time_point t = engine_.reactor().now();
        if (mode == Cluster::Mode::kShared && wait.count() == 0)
          cell.granted = true;
        else
          cell.retry_at = t + (mode == Cluster::Mode::kShared ? wait : Clock::duration{});
        WakeAt(t);
      });
  return std::chrono::seconds(1);
}

Clock::duration Site::TakeLease(SharedLease& lease, const std::string& key, unsigned limit,
                                Clock::time_point now) {
  if (lease.ready != 0)
    return {};
  if (lease.asking)
    return std::chrono::seconds(1);
  if (now < lease.retry_at)
    return lease.retry_at - now;
  lease.asking = true;
  Cluster* cluster = engine_.cluster();
  cluster->AcquireLease(
      key, limit, [this, &lease, cluster, alive = alive_](Cluster::Mode mode, uint64_t id) {
        if (!*alive) {
          if (id != 0)
            cluster->ReleaseLease(id);  // the site went meanwhile
          return;
        }
        lease.asking = false;
        const Clock::time_point t = engine_.reactor().now();
        if (id != 0)
          lease.ready = id;
        else if (mode == Cluster::Mode::kShared)
          lease.retry_at = t + std::chrono::milliseconds(100);  // all open: looked at again soon
        WakeAt(t);
      });
  return std::chrono::seconds(1);
}

unsigned Site::NodeShare() const {
  Cluster* c = engine_.cluster();
  return c != nullptr && c->mode() == Cluster::Mode::kDivided ? c->nodes() : 1;
}

Clock::duration Site::TakeMessageSlot(Clock::time_point now) {
  Cluster* cluster = engine_.cluster();
  if (cluster != nullptr && cluster->mode() == Cluster::Mode::kHeld)
    return std::chrono::seconds(1);  // [cluster] fallback = "hold": nothing until Redis is back
  if (cluster != nullptr && cluster->mode() == Cluster::Mode::kShared) {
    // The fleet's rates, the provider's and the site's, in Redis (cluster.h) alone: a second,
    // local spacing would waste cells Redis granted a little early or late.
    if (provider_ != nullptr && provider_interval_.count() > 0) {
      if (const Clock::duration w =
              TakeShared(provider_cell_, "provmsg:" + policy_.provider, provider_interval_, now);
          w.count() > 0)
        return w;
    }
    if (limits_.message_rate > 0) {
      if (const Clock::duration w =
              TakeShared(message_cell_, "msg:" + name_, IntervalOf(limits_.message_rate), now);
          w.count() > 0)
        return w;
    }
    return {};
  }
  Clock::duration wait{};
  if (message_rate_)
    wait = message_rate_->WaitAt(now);
  if (provider_ != nullptr && provider_interval_.count() > 0)
    wait = std::max(wait, provider_->messages.WaitAt(now));
  if (wait.count() > 0)
    return wait;
  if (provider_ != nullptr && provider_interval_.count() > 0) {
    // Another shard's site of the provider may have taken it since: asked again, atomically.
    // While Redis is out, this node's share of the fleet's rate (NodeShare).
    if (Clock::duration w = provider_->messages.TryTake(now, provider_interval_ * NodeShare());
        w.count() > 0)
      return w;
  }
  if (message_rate_)
    message_rate_->TryTake(now);
  return {};
}

void Site::CountQueued(const Job& job, int sign) {
  const int p = std::clamp<int>(ReadyQueue::PriorityOf(job), -9, 9) + 9;
  stats_.queued_by_priority[p].Add(sign * static_cast<int64_t>(job.recipients.size()));
}

Job Site::PopPending() {
  Job job = pending_.pop();
  CountQueued(job, -1);
  return job;
}

void Site::SetRoute(RouteRef route) {
  route_ = std::move(route);
  ++route_generation_;
  host_hold_.assign(route_->hosts.size(), Reactor::Clock::time_point{});
}

void Site::Add(Job&& job, const RouteRef& route) {
  if (route != route_ && !SameAddresses(*route, *route_)) {
    SetRoute(route);
    // Idle connections to the old addresses are not reused: the new route is the truth.
    std::vector<ClientConnection*> stale;
    stale.swap(idle_);
    for (ClientConnection* c : stale) {
      engine_.reactor().CancelTimer(c->idle_timer());
      c->Quit();
    }
  }
  // Transactions carry at most the site's max_recipients_per_batch recipients; the parts share
  // the message and its body.
  const size_t max = limits_.max_recipients_per_batch;
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

void Site::Queue(Job&& job) {
  // A fresh job keeps its body while the site works (no hold after a failed connection) and
  // has room for it; else it is read again when a connection is ready for it, so a site that
  // is down holds envelopes only.
  if (job.body && engine_.reactor().now() >= hold_until_ && engine_.HoldBody(job.body->size())) {
    PushReady(std::move(job), /*force=*/false);
  } else {
    job.DropBody();  // read again when a connection is ready for it
    CountQueued(job, +1);
    pending_.push_back(std::move(job));
  }
}

void Site::PushReady(Job&& job, bool force) {
  if (force)
    engine_.HoldBody(job.body->size(), /*force=*/true);
  CountQueued(job, +1);
  ready_.push_back(std::move(job));
}

Job Site::PopReady() {
  Job job = ready_.pop();
  CountQueued(job, -1);
  engine_.ReleaseBody(job.body->size());
  return job;
}

void Site::OnBodyLoaded(Job&& job) {
  --loading_;
  PushReady(std::move(job), /*force=*/true);  // read for a connection ready for it
  Pump();
}

void Site::OnBodyLost() {
  --loading_;
  Pump();
}

void Site::DeferWaiting(const smtp::Reply& why) {
  std::vector<Job> waiting;
  while (!pending_.empty())
    waiting.push_back(PopPending());
  while (!ready_.empty())
    waiting.push_back(PopReady());
  for (Job& job : waiting) {
    Outcomes outcomes;
    outcomes.site = this;
    for (size_t i = 0; i < job.recipients.size(); ++i)
      engine_.Record(this, job, i, why, &outcomes);
    engine_.Reschedule(std::move(job), std::move(outcomes));
  }
}

void Site::BounceWaiting() {
  DeferWaiting(bounce_reply_);  // a 5xx: Record() fails them
}

void Site::UpdateConnections() {
  stats_.connections.Set(static_cast<int64_t>(open_.size()));
  if (domain_stats_ != nullptr)
    domain_stats_->connections.Set(static_cast<int64_t>(open_.size()));
}

void Site::Pump() {
  if (engine_.shutting_down())
    return;
  const Options& options = engine_.options();
  Reactor& reactor = engine_.reactor();
  const Clock::time_point now = reactor.now();
  Clock::time_point wake = Clock::time_point::max();
  Cluster* cluster = engine_.cluster();
  if (cluster != nullptr && cluster->generation() != cluster_generation_)
    UpdateLimits();  // Redis came or went, or the node count changed
  const bool shared = cluster != nullptr && cluster->mode() == Cluster::Mode::kShared;
  if (automation_.any_active()) {
    const std::vector<AutomationState::Event> events = automation_.Advance(now);
    if (!events.empty()) {
      OnAutomationEvents(events, nullptr);
      UpdateLimits();
    }
    wake = automation_.next_change();
  }
  if (automation_.bouncing() != nullptr) {
    BounceWaiting();
  } else if (automation_.suspended()) {
    // Nothing goes out; what waits stays queued, bodies let go (read again after).
    QuitIdle();
    while (!ready_.empty()) {
      Job job = PopReady();
      job.DropBody();
      CountQueued(job, +1);
      pending_.push_back(std::move(job));
    }
  } else {
    // Ready jobs to idle connections, at the message rate.
    while (!ready_.empty() && !idle_.empty()) {
      if (const Clock::duration wait = TakeMessageSlot(now); wait.count() > 0) {
        wake = std::min(wake, now + wait);
        break;
      }
      ClientConnection* conn = idle_.back();
      idle_.pop_back();
      conn->Submit(PopReady());
    }
    const size_t waiting = pending_.size() + ready_.size() + loading_;
    const Clock::time_point hold = std::max(hold_until_, pushback_until_);
    if (waiting > 0 && now < hold) {
      wake = std::min(wake, hold);
    } else {
      // Connections for the jobs that the connections already on their way will not take.
      while (waiting > connecting_ && open_.size() < limits_.connection_limit) {
        if (cluster != nullptr && cluster->mode() == Cluster::Mode::kHeld) {
          wake = std::min(wake, now + std::chrono::seconds(1));
          break;
        }
        if (shared) {
          // The fleet's connection rate and connection limits (cluster.h): a cell, and leases
          // on one of the site's connection_limit connections and of its provider's.
          Clock::duration w{};
          if (limits_.connection_rate > 0)
            w = TakeShared(connection_cell_, "connrate:" + name_,
                           IntervalOf(limits_.connection_rate), now);
          if (w.count() == 0)
            w = TakeLease(site_lease_, "conn:" + name_, limits_.connection_limit, now);
          if (w.count() == 0 && provider_ != nullptr && policy_.values.provider_connection_limit)
            w = TakeLease(provider_lease_, "provconn:" + policy_.provider,
                          *policy_.values.provider_connection_limit, now);
          if (w.count() > 0) {
            wake = std::min(wake, now + w);
            break;
          }
        }
        if (connection_rate_ && !shared) {
          if (const Clock::duration wait = connection_rate_->WaitAt(now); wait.count() > 0) {
            wake = std::min(wake, now + wait);
            break;
          }
        }
        const int index = PickHost();
        if (index < 0) {
          wake = std::min(wake, hold_until_);  // every address is held
          break;
        }
        ProviderLimits::Entry* slot = nullptr;
        if (provider_ != nullptr && policy_.values.provider_connection_limit) {
          const unsigned n = NodeShare();
          if (!provider_->TryOpen(
                  std::max(1u, (*policy_.values.provider_connection_limit + n - 1) / n))) {
            // The provider's other sites (maybe on other shards) have them all: looked at
            // again soon, as theirs close.
            wake = std::min(wake, now + std::chrono::milliseconds(50));
            break;
          }
          slot = provider_;
        }
        const size_t i = static_cast<size_t>(index);
        const Endpoint& host = route_->hosts[i];
        int fd = socket(host.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
          SPATE_LOG(kError, "delivery: socket: %s", log::ErrorText(errno));
          if (slot != nullptr)
            slot->Closed();
          break;
        }
        if (connection_rate_ && !shared)
          connection_rate_->TryTake(now);
        ClientConnection::Tls tls;
        // DANE (RFC 7672 §2.2): this host's validated TLSA records make TLS mandatory and
        // authenticate the peer by them, not by WebPKI names.
        tls.dane = i < route_->tlsa.size() ? route_->tlsa[i] : nullptr;
        switch (tls_) {
          case TlsMode::kOff:
            break;
          case TlsMode::kOpportunistic:
            // After a failed handshake the site goes in the clear for a while (Postfix's "may"
            // does the same once per attempt): mail is not held up by a broken TLS stack.
            tls.starttls = engine_.tls_context() != nullptr && !engine_.TlsBroken(name_);
            break;
          case TlsMode::kVerify:
            tls.verify = true;
            [[fallthrough]];
          case TlsMode::kRequired:
            tls.starttls = tls.require = true;
            break;
        }
        if (tls.dane != nullptr) {
          tls.starttls = tls.require = true;
          tls.verify = false;  // the TLSA records are the trust, checked after the handshake
        }
        std::string host_name = i < route_->host_names.size() ? route_->host_names[i] : "";
        auto* conn =
            new ClientConnection(*this, host, std::move(host_name), i, route_generation_, tls, fd);
        conn->provider_slot() = slot;
        conn->lease() = std::exchange(site_lease_.ready, 0);
        conn->provider_lease() = std::exchange(provider_lease_.ready, 0);
        open_.push_back(conn);
        ++connecting_;
        UpdateConnections();
        conn->Start();
      }
    }
    // Bodies for the transactions to come, once the pool has a connection that took its
    // greeting and EHLO (a host that is down or slow to answer makes no body be read): one
    // for every fourth such connection and one more (a connection that finishes its
    // transaction mostly finds the next body waiting; 16,000 busy connections do not each hold
    // two), at most max_loaded_bodies.
    const size_t working = open_.size() - connecting_;
    const size_t want = std::min<size_t>(options.max_loaded_bodies, working / 4 + 1);
    while (working > 0 && !pending_.empty() && ready_.size() + loading_ < want) {
      Job job = PopPending();
      ++loading_;
      engine_.LoadBody(*this, std::move(job));
    }
  }
  if (wake != Clock::time_point::max())
    WakeAt(wake);
}

bool Site::SubmitReady(ClientConnection* conn) {
  if (ready_.empty() || automation_.bouncing() != nullptr ||
      TakeMessageSlot(engine_.reactor().now()).count() != 0)
    return false;
  conn->Submit(PopReady());
  if (!pending_.empty())
    Pump();  // one more body may be loaded now
  return true;
}

void Site::OnIdle(ClientConnection* conn) {
  if (SubmitReady(conn))
    return;
  idle_.push_back(conn);
  Reactor& reactor = engine_.reactor();
  reactor.CancelTimer(conn->idle_timer());
  conn->idle_timer() =
      reactor.AddTimer(reactor.now() + ToDuration(limits_.idle_timeout), [this, conn] {
        conn->idle_timer() = {};
        auto it = std::find(idle_.begin(), idle_.end(), conn);
        if (it != idle_.end())
          idle_.erase(it);
        conn->Quit();
      });
  if (!pending_.empty() || !ready_.empty())
    Pump();  // bodies for it to send, or the throttle's wake-up
}

void Site::NotePipelineNextRefused(const std::string& peer) {
  pipeline_next_refused_ = true;
  stats_.pipeline_next_refused.Set(1);
  SPATE_LOG(kInfo,
            "delivery: %s: %s refused commands pipelined behind the end of data (RFC 2920 3.1 "
            "allows them): sent again; this site's connections wait for each end-of-data reply",
            name_.c_str(), peer.c_str());
}

void Site::OnReadyForNext(ClientConnection* conn) {
  // Nothing to send now, or too much to send behind the end of data: the end-of-data reply makes
  // the connection idle, and OnIdle() takes it.
  if (!ready_.empty() && ready_.front().message != nullptr &&
      CommandBytes(ready_.front()) > kMaxBytesBehindData)
    return;
  SubmitReady(conn);
}

void Site::OnConnectionGone(ClientConnection* conn, bool ever_ready, bool tls_failed,
                            const smtp::Reply& why) {
  if (auto it = std::find(open_.begin(), open_.end(), conn); it != open_.end())
    open_.erase(it);
  if (auto it = std::find(idle_.begin(), idle_.end(), conn); it != idle_.end())
    idle_.erase(it);
  if (!ever_ready)
    --connecting_;
  if (conn->provider_slot() != nullptr)
    conn->provider_slot()->Closed();
  if (Cluster* c = engine_.cluster(); c != nullptr) {
    if (conn->lease() != 0)
      c->ReleaseLease(conn->lease());
    if (conn->provider_lease() != 0)
      c->ReleaseLease(conn->provider_lease());
  }
  UpdateConnections();
  if (engine_.shutting_down())
    return;
  if (why.code == 421) {
    // RFC 5321 §3.8: the server is closing the channel, in whatever phase; the provider
    // behind it is saying "not now" to the site, not to one address.
    pushback_until_ = engine_.reactor().now() + kPushbackHold;
  }
  if (tls_failed && tls_ == TlsMode::kOpportunistic && !engine_.TlsBroken(name_)) {
    // The host answered; its TLS did not work. The same attempt goes on in the clear, once,
    // and the site stays in the clear for a while.
    engine_.MarkTlsBroken(name_);
    engine_.stats().tls_fallbacks.Add();
    SPATE_LOG(kWarn, "delivery: %s: TLS failed (%s); in plaintext for %.0fs", name_.c_str(),
              why.ToString().c_str(), engine_.options().tls_broken_hold.count());
    Pump();
    return;
  }
  if (!ever_ready)
    HoldHost(conn->generation(), conn->host_index(), why);
  // Another address not held: the same attempt goes on there (the next address, the next MX).
  if (!ever_ready && PickHost() >= 0) {
    Pump();
    return;
  }
  if (!ever_ready && connecting_ == 0 && open_.empty()) {
    // The site could not be reached and no other connection works: everything waiting for it
    // is deferred now, instead of one connection attempt per queued message.
    smtp::Reply reply = why;
    if (reply.code == 0 || reply.positive())
      reply = Synthetic(451, "4.4.1", why.text.empty() ? "cannot connect" : why.text);
    DeferWaiting(reply);
    return;
  }
  Pump();
}

int Site::PickHost() {
  if (route_->hosts.empty())
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

void Site::HoldHost(uint64_t generation, size_t index, const smtp::Reply& why) {
  if (generation != route_generation_ || index >= host_hold_.size())
    return;  // an address of a route since replaced
  host_hold_[index] = engine_.reactor().now() + std::min(ToDuration(engine_.options().retry_base),
                                                         Clock::duration(std::chrono::seconds(5)));
  if (host_hold_.size() > 1) {
    SPATE_LOG(kDebug, "delivery: %s: %s failed (%s); trying the next address", name_.c_str(),
              route_->hosts[index].text.c_str(), why.ToString().c_str());
  }
}

std::vector<Job> Site::TakeIf(const std::function<bool(const Job&)>& take) {
  std::vector<Job> out;
  std::vector<Job> keep;
  pending_.Drain([&](Job&& job) { (take(job) ? out : keep).push_back(std::move(job)); });
  for (Job& job : out)
    CountQueued(job, -1);
  for (Job& job : keep)
    pending_.push_back(std::move(job));
  keep.clear();
  const size_t from_pending = out.size();
  ready_.Drain([&](Job&& job) { (take(job) ? out : keep).push_back(std::move(job)); });
  for (size_t i = from_pending; i < out.size(); ++i) {
    CountQueued(out[i], -1);
    engine_.ReleaseBody(out[i].body->size());
  }
  for (Job& job : keep)
    ready_.push_back(std::move(job));
  return out;
}

void Site::Shutdown() {
  while (!pending_.empty())
    PopPending();
  while (!ready_.empty())
    PopReady();
  std::vector<ClientConnection*> open = open_;
  for (ClientConnection* c : open)
    c->Abort();
}

}  // namespace spate::delivery
