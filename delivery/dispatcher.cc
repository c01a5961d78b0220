#include "delivery/dispatcher.h"

#include <string_view>
#include <unordered_map>

#include "core/check.h"
#include "core/clock.h"
#include "delivery/accounting.h"
#include "delivery/delivery.h"

namespace spate::delivery {

Dispatcher::Dispatcher(ShardId shards, std::string postmaster)
    : targets_(shards), postmaster_(std::move(postmaster)) {}

std::string_view Dispatcher::Routable(std::string_view address) const {
  if (!postmaster_.empty() && address.find('@') == std::string_view::npos)
    return postmaster_;
  return address;
}

void Dispatcher::Attach(ShardId id, Reactor* reactor, Delivery* delivery) {
  SPATE_CHECK(id < targets_.size());
  targets_[id] = Target{reactor, delivery};
}

void Dispatcher::DispatchAccepted(queue::MessageId id, queue::NewMessage&& m) {
  auto message = std::make_shared<Message>();
  message->id = id;
  message->mail_from = std::move(m.mail_from);
  message->body_size = m.body.size();
  message->body_8bit = m.body_8bit;
  message->smtputf8 = m.smtputf8;
  message->received_ms = Clock::Real().WallMs();  // made durable just now
  message->envid = std::move(m.envid);
  message->ret = m.ret;
  message->campaign = std::move(m.campaign);
  message->priority = m.priority;
  message->dsn = std::move(m.dsn);  // parallel to rcpt_to: position i is recipient i
  size_t bytes = 0;
  for (const std::string& r : m.rcpt_to)
    bytes += Routable(r).size();
  message->Reserve(m.rcpt_to.size(), bytes);
  for (uint32_t i = 0; i < m.rcpt_to.size(); ++i)
    message->AddRecipient(Routable(m.rcpt_to[i]), i);
  if (accounting_ != nullptr) {
    Record rec;
    rec.type = RecordType::kReception;
    rec.id = id;
    rec.sender = message->mail_from;
    rec.campaign = message->campaign;
    rec.size = message->body_size;
    rec.queued_ms = message->received_ms;
    rec.event_ms = message->received_ms;
    for (uint32_t p = 0; p < message->recipients(); ++p) {
      const std::string domain = DomainOf(message->address(p));
      rec.recipient = message->address(p);
      rec.domain = domain;
      accounting_->Write(rec);
    }
  }
  Body body = std::make_shared<const std::string>(std::move(m.body));
  // A site past its shard's body budget lets its job's copy go; read again later, it is this
  // one while a sibling still holds it.
  message->loaded_body.Offer(body);
  Split(std::move(message), std::move(body), {}, {});
}

void Dispatcher::DispatchRecovered(queue::RecoveredMessage&& m) {
  auto message = std::make_shared<Message>();
  message->id = m.id;
  message->mail_from = std::move(m.mail_from);
  message->body_size = m.body_size;
  message->body_8bit = m.body_8bit;
  message->smtputf8 = m.smtputf8;
  message->received_ms = m.received_ms;
  message->envid = std::move(m.envid);
  message->ret = m.ret;
  message->campaign = std::move(m.campaign);
  message->priority = m.priority;
  std::vector<Recipient> state;  // attempts and delay notice, per position
  std::vector<int64_t> due;
  state.reserve(m.recipients.size());
  due.reserve(m.recipients.size());
  size_t bytes = 0;
  for (const queue::PendingRecipient& r : m.recipients)
    bytes += Routable(r.address).size();
  message->Reserve(m.recipients.size(), bytes);
  bool any_dsn = false;
  for (const queue::PendingRecipient& r : m.recipients)
    any_dsn = any_dsn || r.dsn.notify != 0 || !r.dsn.orcpt.empty();
  if (any_dsn) {
    for (queue::PendingRecipient& r : m.recipients)
      message->dsn.push_back(std::move(r.dsn));
  }
  for (const queue::PendingRecipient& r : m.recipients) {
    message->AddRecipient(Routable(r.address), r.index);
    state.push_back({0, r.attempts, r.delay_warned});
    due.push_back(r.next_attempt_ms);
  }
  Split(std::move(message), nullptr, state, due);
}

void Dispatcher::Split(MessageRef message, Body body, const std::vector<Recipient>& state,
                       const std::vector<int64_t>& due_ms) {
  // Per shard, the jobs of the domains it owns; per domain, its job's slot. Linear in the
  // recipients: a message to 1,000 domains is not 1,000 x 1,000 comparisons.
  // A few domains (the usual message) are found by comparing; past kLinearDomains, by hash.
  constexpr size_t kLinearDomains = 8;
  std::vector<std::vector<DomainJob>> per_shard(targets_.size());
  std::vector<std::pair<ShardId, size_t>> slots;  // first-seen order
  std::unordered_map<std::string, size_t> index;  // copies: the jobs move as vectors grow
  const ShardId n = shards();
  const uint32_t count = message->recipients();
  for (uint32_t p = 0; p < count; ++p) {
    std::string domain = DomainOf(message->address(p));
    size_t found = slots.size();
    if (slots.size() <= kLinearDomains) {
      for (size_t i = 0; i < slots.size(); ++i) {
        if (per_shard[slots[i].first][slots[i].second].domain == domain) {
          found = i;
          break;
        }
      }
    } else {
      if (index.empty()) {
        for (size_t i = 0; i < slots.size(); ++i)
          index.emplace(per_shard[slots[i].first][slots[i].second].domain, i);
      }
      if (auto it = index.find(domain); it != index.end())
        found = it->second;
    }
    if (found == slots.size()) {
      ShardId owner = OwnerOf(domain, n);
      slots.emplace_back(owner, per_shard[owner].size());
      DomainJob& dj = per_shard[owner].emplace_back();
      dj.domain = std::move(domain);
      dj.job.message = message;
      dj.job.body = body;
      if (!index.empty())
        index.emplace(dj.domain, found);
    }
    Job& job = per_shard[slots[found].first][slots[found].second].job;
    if (state.empty()) {
      job.recipients.push_back({p, 0, false});
    } else {
      job.recipients.push_back({p, state[p].attempts, state[p].delay_warned});
    }
    // The job is due when its last recipient is (recipients keep their retry time).
    if (!due_ms.empty())
      job.due_ms = std::max(job.due_ms, due_ms[p]);
  }
  for (ShardId s = 0; s < n; ++s) {
    if (per_shard[s].empty())
      continue;
    Target t = targets_[s];
    t.reactor->Post([d = t.delivery, jobs = std::move(per_shard[s])]() mutable {
      for (DomainJob& dj : jobs)
        d->Enqueue(dj.domain, std::move(dj.job));
    });
  }
}

void Dispatcher::PostToSite(ShardId owner, std::string site, TlsMode tls, bool own_domain,
                            RouteRef route, Job&& job) {
  SPATE_CHECK(owner < targets_.size());
  Target t = targets_[owner];
  t.reactor->Post([d = t.delivery, site = std::move(site), tls, own_domain,
                   route = std::move(route), job = std::move(job)]() mutable {
    d->EnqueueForSite(std::move(site), tls, own_domain, std::move(route), std::move(job));
  });
}

}  // namespace spate::delivery
