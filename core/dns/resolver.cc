#include "core/dns/resolver.h"

#include <chrono>
#include <utility>

#include <unbound.h>

#include "core/dns/message.h"
#include "core/log.h"

namespace spate::dns {
namespace {

constexpr int kClassIn = 1;
constexpr int kRcodeServFail = 2;
constexpr int kRcodeNxDomain = 3;
constexpr int kRcodeRefused = 5;

uint16_t RrType(Type type) {
  switch (type) {
    case Type::kMx:
      return kRrMx;
    case Type::kA:
      return kRrA;
    case Type::kAaaa:
      return kRrAaaa;
    case Type::kTxt:
      return kRrTxt;
    case Type::kTlsa:
      return kRrTlsa;
  }
  return kRrA;
}

// The records of a positive answer, each rdata as it came: a record that does not parse is
// left out, and an answer with none that does is an error.
template <typename Each>
void FillRecords(Type type, size_t count, Each rdata_at, Answer* a) {
  size_t bad = 0;
  for (size_t i = 0; i < count; ++i) {
    const std::string_view rdata = rdata_at(i);
    bool ok = false;
    Address addr;
    if (type == Type::kMx) {
      std::optional<MxRecord> mx = ParseMx(rdata);
      if ((ok = mx.has_value()))
        a->mx.push_back(std::move(*mx));
    } else if (type == Type::kTxt) {
      std::optional<std::string> txt = ParseTxt(rdata);
      if ((ok = txt.has_value()))
        a->txt.push_back(std::move(*txt));
    } else if (type == Type::kTlsa) {
      ok = true;  // its meaning is the caller's (an unusable record is not malformed DNS)
      a->rdata.emplace_back(rdata);
    } else if (type == Type::kA) {
      std::optional<in_addr> v4 = ParseA(rdata);
      if ((ok = v4.has_value())) {
        addr.family = AF_INET;
        addr.v4 = *v4;
        a->addresses.push_back(addr);
      }
    } else {
      std::optional<in6_addr> v6 = ParseAaaa(rdata);
      if ((ok = v6.has_value())) {
        addr.family = AF_INET6;
        addr.v6 = *v6;
        a->addresses.push_back(addr);
      }
    }
    bad += ok ? 0 : 1;
  }
  const bool none = a->mx.empty() && a->addresses.empty() && a->txt.empty() && a->rdata.empty();
  a->status = none ? Status::kError : Status::kOk;
  if (none || bad != 0)
    a->error = std::to_string(bad) + " malformed record(s)";
}

// What a resolver's raw reply (trust_ad) says, as libunbound's results are read below.
Answer FromReply(std::string_view packet, std::string_view name, Type type) {
  Answer a;
  std::optional<Reply> reply = ParseReply(packet, name, RrType(type));
  if (!reply) {
    a.status = Status::kError;
    a.error = "a malformed reply";
    return a;
  }
  if (reply->truncated) {  // res_nsend asks again over TCP; a truncated one here is broken
    a.status = Status::kError;
    a.error = "a truncated reply";
    return a;
  }
  a.secure = reply->authentic;
  if (reply->rcode == kRcodeNxDomain) {
    a.status = Status::kNxDomain;
    a.ttl = reply->negative_ttl.value_or(0);
  } else if (reply->rcode == kRcodeServFail || reply->rcode == kRcodeRefused) {
    // A validating resolver answers a bogus answer with SERVFAIL (RFC 4035 §5.5).
    a.status = Status::kServFail;
    a.secure = false;
    a.error = reply->rcode == kRcodeRefused ? "refused" : "server failure";
  } else if (reply->rcode != 0) {
    a.status = Status::kError;
    a.secure = false;
    a.error = "rcode " + std::to_string(reply->rcode);
  } else if (reply->rdata.empty()) {
    a.status = Status::kNoData;
    a.ttl = reply->negative_ttl.value_or(0);
  } else {
    a.ttl = reply->ttl;
    FillRecords(
        type, reply->rdata.size(), [&](size_t i) { return std::string_view(reply->rdata[i]); }, &a);
  }
  return a;
}

// "127.0.0.1:5300" / "[::1]:5300" -> libunbound's "127.0.0.1@5300" / "::1@5300".
bool ForwarderSpec(const std::string& hostport, std::string* out) {
  std::string host;
  std::string port;
  if (!hostport.empty() && hostport.front() == '[') {
    const size_t close = hostport.find(']');
    if (close == std::string::npos || close + 1 >= hostport.size() || hostport[close + 1] != ':')
      return false;
    host = hostport.substr(1, close - 1);
    port = hostport.substr(close + 2);
  } else {
    const size_t colon = hostport.rfind(':');
    if (colon == std::string::npos)
      return false;
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.find_first_not_of("0123456789") != std::string::npos)
    return false;
  *out = host + "@" + port;
  return true;
}

}  // namespace

const char* StatusName(Status status) {
  switch (status) {
    case Status::kOk:
      return "ok";
    case Status::kNoData:
      return "nodata";
    case Status::kNxDomain:
      return "nxdomain";
    case Status::kServFail:
      return "servfail";
    case Status::kTimeout:
      return "timeout";
    case Status::kBogus:
      return "bogus";
    case Status::kError:
      return "error";
  }
  return "error";
}

Result<std::unique_ptr<Resolver>> Resolver::Create(Reactor& reactor, const Options& options,
                                                   ResolverStats* stats, std::string* error) {
  if (options.trust_ad) {
    if (!options.trust_anchor_file.empty()) {
      *error = "dns: trust_ad and trust_anchor_file exclude each other";
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
    Stub::Options so;
    so.nameservers = options.nameservers;
    so.timeout = options.timeout;
    so.threads = std::min(4u, std::max(1u, options.max_inflight));
    auto stub = Stub::Create(so, error);
    if (!stub)
      return Unexpected{stub.error()};
    return std::unique_ptr<Resolver>(
        new Resolver(reactor, options, stats, nullptr, std::move(stub).value()));
  }
  ub_ctx* ctx = ub_ctx_create();
  if (ctx == nullptr) {
    *error = "dns: cannot create a resolver context";
    return Unexpected{std::make_error_code(std::errc::not_enough_memory)};
  }
  auto fail = [&](const std::string& what, int err) {
    *error = "dns: " + what + ": " + ub_strerror(err);
    ub_ctx_delete(ctx);
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  };
  // The work on a thread of libunbound's own; results are signalled on ub_fd().
  if (int err = ub_ctx_async(ctx, 1); err != 0)
    return fail("async", err);
  if (options.nameservers.empty()) {
    if (int err = ub_ctx_resolvconf(ctx, nullptr); err != 0)
      return fail("/etc/resolv.conf", err);
  } else {
    // A forwarder on loopback (a local resolver, or a test's server) is asked like any other.
    if (int err = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no"); err != 0)
      return fail("do-not-query-localhost", err);
    // libunbound answers "test." (RFC 6761 §6.2) NXDOMAIN itself by default; servers of one's
    // own choosing may serve it (a lab, the tests), signed zones too.
    if (int err = ub_ctx_set_option(ctx, "local-zone:", "test. transparent"); err != 0)
      return fail("local-zone test.", err);
    for (const std::string& ns : options.nameservers) {
      std::string spec;
      if (!ForwarderSpec(ns, &spec)) {
        *error = "dns: nameserver \"" + ns + "\" is not host:port";
        ub_ctx_delete(ctx);
        return Unexpected{std::make_error_code(std::errc::invalid_argument)};
      }
      if (int err = ub_ctx_set_fwd(ctx, spec.c_str()); err != 0)
        return fail("nameserver " + ns, err);
    }
  }
  // DNSSEC: with trust anchors libunbound validates every answer itself (RFC 4035 §5), so
  // Answer::secure means validated here, whatever the upstream says; a failure is kBogus.
  if (!options.trust_anchor_file.empty()) {
    if (int err = ub_ctx_add_ta_file(ctx, options.trust_anchor_file.c_str()); err != 0)
      return fail("trust anchor file " + options.trust_anchor_file, err);
  }
  return std::unique_ptr<Resolver>(new Resolver(reactor, options, stats, ctx, nullptr));
}

Resolver::Resolver(Reactor& reactor, const Options& options, ResolverStats* stats, ub_ctx* ctx,
                   std::unique_ptr<Stub> stub)
    : reactor_(reactor),
      options_(options),
      stats_(stats),
      ctx_(ctx),
      stub_(std::move(stub)),
      fd_(ctx != nullptr ? ub_fd(ctx) : -1) {
  if (options_.max_inflight == 0)
    options_.max_inflight = 1;
}

Resolver::~Resolver() {
  *alive_ = false;  // a poll completion or a stub's answer still queued finds us gone
  stub_.reset();    // no stub answer comes after this
  for (auto& [id, q] : inflight_) {
    if (ctx_ != nullptr)
      ub_cancel(ctx_, q->async_id);
    reactor_.CancelTimer(q->timer);
  }
  inflight_.clear();
  waiting_.clear();
  if (ctx_ != nullptr)
    ub_ctx_delete(ctx_);  // stops libunbound's thread
}

void Resolver::Lookup(std::string_view name, Type type, Done done) {
  auto q = std::make_unique<Query>();
  q->resolver = this;
  q->id = next_id_++;
  q->name = std::string(name);
  q->type = type;
  q->done = std::move(done);
  if (inflight_.size() >= options_.max_inflight) {
    waiting_.push_back(std::move(q));
    return;
  }
  Start(std::move(q));
}

void Resolver::Start(std::unique_ptr<Query> q) {
  Query* raw = q.get();
  const uint64_t id = q->id;
  inflight_.emplace(id, std::move(q));
  if (stub_ != nullptr) {
    StartStub(raw);
    return;
  }
  int err = ub_resolve_async(ctx_, raw->name.c_str(), RrType(raw->type), kClassIn, raw,
                             &Resolver::OnResult, &raw->async_id);
  if (err != 0) {
    FailLater(id, ub_strerror(err));
    return;
  }
  ArmTimeout(raw);
  ArmPoll();
}

void Resolver::StartStub(Query* q) {
  const uint64_t id = q->id;
  // The message id: random, as RFC 5452 §4.3 asks, though the path is loopback.
  const std::string query = BuildQuery(static_cast<uint16_t>(random_()), q->name, RrType(q->type));
  if (query.empty()) {
    FailLater(id, "not a valid name");
    return;
  }
  ArmTimeout(q);
  // The answer comes on a stub thread; it is read on the reactor's.
  stub_->Send(query, [this, id, name = q->name, type = q->type, alive = alive_](
                         std::string reply, std::string error, bool timed_out) mutable {
    reactor_.Post([this, id, name = std::move(name), type, reply = std::move(reply),
                   error = std::move(error), timed_out, alive = std::move(alive)]() mutable {
      if (!*alive)
        return;
      Answer a;
      if (!reply.empty()) {
        a = FromReply(reply, name, type);
      } else {
        a.status = timed_out ? Status::kTimeout : Status::kError;
        a.error = std::move(error);
      }
      Finish(id, std::move(a));
    });
  });
}

void Resolver::FailLater(uint64_t id, std::string error) {
  Answer a;
  a.status = Status::kError;
  a.error = std::move(error);
  // Never inside Lookup(): the caller hears of it from the loop.
  reactor_.Post([this, id, a = std::move(a), alive = alive_]() mutable {
    if (*alive)
      Finish(id, std::move(a));
  });
}

void Resolver::ArmTimeout(Query* q) {
  const uint64_t id = q->id;
  const auto timeout = std::chrono::duration_cast<Reactor::Clock::duration>(options_.timeout);
  q->timer = reactor_.AddTimer(reactor_.now() + timeout, [this, id] {
    auto it = inflight_.find(id);
    if (it == inflight_.end())
      return;
    it->second->timer = {};
    if (ctx_ != nullptr)
      ub_cancel(ctx_, it->second->async_id);
    if (stats_ != nullptr)
      stats_->timeouts.Add();
    Answer a;
    a.status = Status::kTimeout;
    a.error = "no answer within the timeout";
    Finish(id, std::move(a));
  });
}

void Resolver::ArmPoll() {
  if (ctx_ == nullptr || poll_armed_ || inflight_.empty())
    return;
  poll_armed_ = true;
  reactor_.PollIn(fd_, [this, alive = alive_](int) {
    if (!*alive)
      return;
    poll_armed_ = false;
    // Runs the callbacks of every answer that is ready (OnResult), on this thread.
    int err = ub_process(ctx_);
    if (err != 0)
      SPATE_LOG(kWarn, "dns: %s", ub_strerror(err));
    ArmPoll();
  });
}

void Resolver::OnResult(void* mydata, int err, ub_result* result) {
  auto* q = static_cast<Query*>(mydata);
  Answer a;
  if (err != 0) {
    a.status = Status::kError;
    a.error = ub_strerror(err);
  } else {
    a.ttl = result->ttl > 0 ? static_cast<uint32_t>(result->ttl) : 0;
    a.secure = result->secure != 0;
    if (result->bogus) {
      a.status = Status::kBogus;
      a.error = result->why_bogus != nullptr ? result->why_bogus : "DNSSEC validation failed";
    } else if (result->nxdomain) {
      a.status = Status::kNxDomain;
    } else if (result->rcode == kRcodeServFail || result->rcode == kRcodeRefused) {
      a.status = Status::kServFail;
      a.error = result->rcode == kRcodeRefused ? "refused" : "server failure";
    } else if (result->rcode != 0) {
      a.status = Status::kError;
      a.error = "rcode " + std::to_string(result->rcode);
    } else if (!result->havedata) {
      a.status = Status::kNoData;
    } else {
      size_t count = 0;
      while (result->data[count] != nullptr)
        ++count;
      FillRecords(
          q->type, count,
          [&](size_t i) {
            return std::string_view(result->data[i], static_cast<size_t>(result->len[i]));
          },
          &a);
    }
  }
  if (result != nullptr)
    ub_resolve_free(result);
  q->resolver->Finish(q->id, std::move(a));
}

void Resolver::Finish(uint64_t id, Answer&& answer) {
  auto it = inflight_.find(id);
  if (it == inflight_.end())
    return;
  std::unique_ptr<Query> q = std::move(it->second);
  inflight_.erase(it);
  reactor_.CancelTimer(q->timer);
  if (stats_ != nullptr)
    stats_->lookups[static_cast<int>(q->type)][static_cast<int>(answer.status)].Add();
  while (!waiting_.empty() && inflight_.size() < options_.max_inflight) {
    std::unique_ptr<Query> next = std::move(waiting_.front());
    waiting_.pop_front();
    Start(std::move(next));
  }
  q->done(std::move(answer));
}

}  // namespace spate::dns
