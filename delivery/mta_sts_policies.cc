#include "delivery/mta_sts_policies.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <netinet/in.h>
#include <sys/socket.h>

#include "core/connection.h"
#include "core/http/client.h"
#include "core/log.h"

namespace spate::delivery {

std::optional<StsCache::Entry> StsCache::Get(std::string_view domain, int64_t now_ms) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(std::string(domain));
  if (it == entries_.end() || now_ms >= it->second.expires_ms())
    return std::nullopt;
  return it->second;
}

void StsCache::Put(const std::string& domain, Entry entry) {
  const std::string encoded = sts::EncodePolicy(*entry.policy, entry.id, entry.fetched_ms);
  {
    std::lock_guard lock(mu_);
    entries_[domain] = std::move(entry);
  }
  if (persist_)
    persist_(domain, encoded);
}

bool StsCache::Load(const std::string& domain, std::string_view encoded) {
  auto policy = std::make_shared<sts::Policy>();
  Entry e;
  if (!sts::DecodePolicy(encoded, policy.get(), &e.id, &e.fetched_ms))
    return false;
  e.policy = std::move(policy);
  std::lock_guard lock(mu_);
  entries_[domain] = std::move(e);
  return true;
}

size_t StsCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

// One policy fetch: TCP to mta-sts.<domain>, TLS verified for that name, one GET, the response
// read to its end; then `done` (once) and the object deletes itself with its connection.
class StsPolicies::Fetch final : public Connection {
 public:
  using Done = UniqueFunction<void(bool ok, std::string body, std::string error)>;

  Fetch(Reactor& reactor, int fd, const tls::TlsContext& context, std::string host, Seconds timeout,
        Done done)
      : Connection(reactor, fd),
        host_(std::move(host)),
        tls_(context, host_, /*verify=*/true),
        parser_(sts::kMaxPolicyBytes),
        done_(std::move(done)) {
    timer_ = reactor.AddTimer(reactor.now() + std::chrono::duration_cast<Reactor::Clock::duration>(
                                                  std::chrono::duration<double>(timeout.count())),
                              [this] {
                                timer_ = {};
                                End(false, "timed out");
                              });
  }

  // The owner goes: nothing is said any more.
  void Drop() {
    done_ = nullptr;
    Abort();
  }

 protected:
  void OnConnected(int error) noexcept override {
    if (error != 0) {
      End(false, std::string("connect: ") + std::strerror(error));
      return;
    }
    if (tls_.failed()) {
      End(false, "TLS: " + tls_.failure());
      return;
    }
    // Kept by the session until the handshake is done (RFC 8461 §3.3: HTTPS, no redirects).
    (void)tls_.Write(http::FormatGet(host_, sts::kPolicyPath, "spate"));
    Flush();
    StartReading();
  }

  void OnData(std::string_view data) noexcept override {
    std::string plain;
    Result<void> fed = tls_.FeedCiphertext(data, &plain);
    Flush();
    if (!fed) {
      End(false, "TLS: " + tls_.failure());
      return;
    }
    if (!plain.empty())
      parser_.OnBytes(plain);
    if (tls_.peer_closed())
      parser_.OnEof();
    Check();
  }

  void OnClosed(int error) noexcept override {
    reactor().CancelTimer(timer_);
    if (ended_)
      return;
    parser_.OnEof();  // a response read to the end of the connection is whole now
    Check();
    if (!ended_)
      End(false, error != 0 ? std::strerror(error) : "connection closed");
  }

 private:
  void Flush() {
    std::string out = tls_.TakeCiphertext();
    if (!out.empty())
      Send(std::move(out));
  }

  void Check() {
    if (parser_.failed()) {
      End(false, "HTTP: " + parser_.error());
    } else if (parser_.done()) {
      if (parser_.status() != 200) {
        // A redirect is not followed (RFC 8461 §3.3): it is a failed fetch like any other.
        End(false, "HTTP status " + std::to_string(parser_.status()));
      } else if (std::string_view type = parser_.header("content-type");
                 type.substr(0, std::min(type.size(), size_t{10})) != "text/plain") {
        End(false, "Content-Type is not text/plain");  // RFC 8461 §3.2
      } else {
        End(true, parser_.body());
      }
    }
  }

  void End(bool ok, std::string text) {
    if (ended_)
      return;
    ended_ = true;
    reactor().CancelTimer(timer_);
    if (done_) {
      Done done = std::move(done_);
      done_ = nullptr;
      if (ok)
        done(true, std::move(text), {});
      else
        done(false, {}, std::move(text));
    }
    Abort();
  }

  std::string host_;
  tls::TlsSession tls_;
  http::ResponseParser parser_;
  Done done_;
  Reactor::TimerId timer_;
  bool ended_ = false;
};

StsPolicies::StsPolicies(Reactor& reactor, dns::Resolver& resolver, StsCache& cache,
                         Options options, StsStats* stats)
    : reactor_(reactor), resolver_(resolver), cache_(cache), options_(options), stats_(stats) {}

StsPolicies::~StsPolicies() {
  *alive_ = false;
  for (auto& [domain, w] : waiting_) {
    if (w.fetch != nullptr)
      w.fetch->Drop();
  }
  for (auto& [domain, r] : refreshing_) {
    if (r.first != nullptr)
      r.first->Drop();
  }
}

void StsPolicies::Policy(std::string_view domain, UniqueFunction<void(StsPolicyRef)> done) {
  std::string key(domain);
  if (auto it = waiting_.find(key); it != waiting_.end()) {
    it->second.waiters.push_back(std::move(done));
    return;
  }
  Waiting& w = waiting_[key];
  w.waiters.push_back(std::move(done));
  w.cached = cache_.Get(key, reactor_.wall_ms());
  resolver_.Lookup("_mta-sts." + key, dns::Type::kTxt,
                   [this, key, alive = alive_](dns::Answer&& a) {
                     if (*alive)
                       OnTxt(key, std::move(a));
                   });
}

void StsPolicies::OnTxt(const std::string& domain, dns::Answer&& txt) {
  auto it = waiting_.find(domain);
  if (it == waiting_.end())
    return;
  Waiting& w = it->second;
  std::optional<std::string> id;
  if (txt.status == dns::Status::kOk)
    id = sts::PickStsTxt(txt.txt);
  if (!id) {
    // No record (or none valid, or the lookup failed): the cached policy while it lasts
    // (RFC 8461 §5.1: a policy is not withdrawn by taking its record away).
    return Finish(domain, w.cached ? w.cached->policy : nullptr);
  }
  if (w.cached && w.cached->id == *id)
    return Finish(domain, w.cached->policy);
  if (options_.https == nullptr)
    return Finish(domain, w.cached ? w.cached->policy : nullptr);
  if (w.cached) {
    // A new id: the cached policy holds meanwhile (RFC 8461 §5.1), the new one is fetched
    // behind it.
    StsPolicyRef cached = w.cached->policy;
    if (refreshing_.count(domain) == 0) {
      refreshing_[domain] = {nullptr, *id};
      StartFetch(domain);
    }
    return Finish(domain, std::move(cached));
  }
  w.id = *id;
  StartFetch(domain);
}

void StsPolicies::StartFetch(const std::string& domain) {
  resolver_.Lookup(sts::PolicyHost(domain), dns::Type::kA,
                   [this, domain, alive = alive_](dns::Answer&& a) {
                     if (*alive)
                       OnAddress(domain, std::move(a));
                   });
}

void StsPolicies::OnAddress(const std::string& domain, dns::Answer&& a) {
  auto it = waiting_.find(domain);
  auto refresh = refreshing_.find(domain);
  if (it == waiting_.end() && refresh == refreshing_.end())
    return;
  if (a.status != dns::Status::kOk || a.addresses.empty())
    return Fetched(domain, false, {}, "no address for " + sts::PolicyHost(domain));
  sockaddr_storage addr{};
  auto* in = reinterpret_cast<sockaddr_in*>(&addr);
  in->sin_family = AF_INET;
  in->sin_port = htons(options_.port);
  in->sin_addr = a.addresses.front().v4;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return Fetched(domain, false, {}, std::string("socket: ") + std::strerror(errno));
  auto* fetch =
      new Fetch(reactor_, fd, *options_.https, sts::PolicyHost(domain), options_.fetch_timeout,
                [this, domain, alive = alive_](bool ok, std::string body, std::string error) {
                  if (*alive)
                    Fetched(domain, ok, std::move(body), std::move(error));
                });
  if (refresh != refreshing_.end())
    refresh->second.first = fetch;
  else
    it->second.fetch = fetch;
  fetch->Connect(addr, sizeof(sockaddr_in));
}

void StsPolicies::Fetched(const std::string& domain, bool ok, std::string body, std::string error) {
  auto policy = std::make_shared<sts::Policy>();
  // A failed fetch is a policy failure for TLSRPT (RFC 8460 §4.3.2.2): the certificate of the
  // policy host, a policy that does not parse, or any other failure to fetch it.
  auto report = [&](const StsPolicyRef& cached, bool fetched) {
    if (options_.reports == nullptr)
      return;
    const tlsrpt::ResultType type = fetched ? tlsrpt::ResultType::kStsPolicyInvalid
                                    : error.find("certificate verify failed") != std::string::npos
                                        ? tlsrpt::ResultType::kStsWebpkiInvalid
                                        : tlsrpt::ResultType::kStsPolicyFetchError;
    options_.reports->Fail(
        domain, tlsrpt::PolicyType::kSts, "",
        [&cached](tlsrpt::PolicyReport* r) {
          if (cached != nullptr)
            tlsrpt::DescribeSts(*cached, r);
        },
        tlsrpt::Failure{type, "", sts::PolicyHost(domain), "", error});
  };
  if (auto r = refreshing_.find(domain); r != refreshing_.end()) {
    // In the background: a new policy goes in force; a failure leaves the cached one.
    const std::string id = r->second.second;
    refreshing_.erase(r);
    const bool fetched = ok;
    if (ok && sts::ParsePolicy(body, policy.get(), &error)) {
      if (stats_ != nullptr)
        stats_->fetches_ok.Add();
      SPATE_LOG(kInfo, "mta-sts: %s: policy %s (new id): mode %s, %zu mx patterns", domain.c_str(),
                id.c_str(), std::string(sts::ModeName(policy->mode)).c_str(), policy->mx.size());
      cache_.Put(domain, StsCache::Entry{policy, id, reactor_.wall_ms()});
    } else {
      if (stats_ != nullptr)
        stats_->fetches_failed.Add();
      SPATE_LOG(kWarn,
                "mta-sts: %s: the new policy (id %s) could not be fetched: %s; the cached "
                "one stays in force",
                domain.c_str(), id.c_str(), error.c_str());
      const std::optional<StsCache::Entry> cached = cache_.Get(domain, reactor_.wall_ms());
      report(cached ? cached->policy : nullptr, fetched);
    }
    return;
  }
  auto it = waiting_.find(domain);
  if (it == waiting_.end())
    return;
  Waiting& w = it->second;
  w.fetch = nullptr;
  const bool fetched = ok;
  if (ok && !sts::ParsePolicy(body, policy.get(), &error))
    ok = false;
  if (!ok) {
    report(w.cached ? w.cached->policy : nullptr, fetched);
    if (stats_ != nullptr)
      stats_->fetches_failed.Add();
    SPATE_LOG(kWarn, "mta-sts: %s: the policy (id %s) could not be fetched: %s; %s", domain.c_str(),
              w.id.c_str(), error.c_str(),
              w.cached ? "the cached one stays in force" : "no policy in force");
    return Finish(domain, w.cached ? w.cached->policy : nullptr);
  }
  if (stats_ != nullptr)
    stats_->fetches_ok.Add();
  SPATE_LOG(kInfo, "mta-sts: %s: policy %s: mode %s, %zu mx patterns, max_age %llds",
            domain.c_str(), w.id.c_str(), std::string(sts::ModeName(policy->mode)).c_str(),
            policy->mx.size(), static_cast<long long>(policy->max_age_s));
  StsCache::Entry e{policy, w.id, reactor_.wall_ms()};
  cache_.Put(domain, e);
  Finish(domain, std::move(policy));
}

void StsPolicies::Finish(const std::string& domain, StsPolicyRef policy) {
  auto it = waiting_.find(domain);
  if (it == waiting_.end())
    return;
  std::vector<UniqueFunction<void(StsPolicyRef)>> waiters = std::move(it->second.waiters);
  waiting_.erase(it);
  if (policy != nullptr && policy->mode == sts::Policy::Mode::kNone)
    policy = nullptr;  // RFC 8461 §5: "none" asks for nothing
  for (auto& w : waiters)
    w(policy);
}

}  // namespace spate::delivery
