#include "core/server/signing.h"

#include <chrono>

#include "core/log.h"

namespace spate::server {

SigningStore::SigningStore(MessageStore& inner, unsigned threads, std::function<int64_t()> now)
    : inner_(inner), now_(std::move(now)) {
  if (!now_) {
    now_ = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
  for (unsigned i = 0; i < std::max(1u, threads); ++i)
    workers_.emplace_back([this] { Run(); });
}

SigningStore::~SigningStore() {
  Stop();
}

void SigningStore::SetSigner(std::shared_ptr<const dkim::Signer> signer) {
  std::lock_guard lock(mu_);
  signer_ = std::move(signer);
}

void SigningStore::Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) {
  std::shared_ptr<const dkim::Signer> signer;
  {
    std::lock_guard lock(mu_);
    signer = signer_;
    if (signer != nullptr && !signer->entries().empty() && !stopping_) {
      queue_.push_back({std::move(message), std::move(done), std::move(signer)});
      cv_.notify_one();
      return;
    }
  }
  inner_.Accept(std::move(message), std::move(done));  // nothing to sign: no thread hop
}

void SigningStore::Run() {
  for (;;) {
    Request r;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      r = std::move(queue_.front());
      queue_.pop_front();
    }
    Sign(r);
    inner_.Accept(std::move(r.message), std::move(r.done));
  }
}

void SigningStore::Sign(Request& r) {
  std::vector<size_t> by;
  std::string why;
  std::string headers = r.signer->Sign(r.message.body, now_(), &by, &why);
  if (!headers.empty()) {
    // In front of the message: the header block is the signatures, then what it had.
    headers.reserve(headers.size() + r.message.body.size());
    headers += r.message.body;
    r.message.body = std::move(headers);
    std::lock_guard lock(mu_);
    for (size_t i : by) {
      const dkim::Signer::Entry& e = r.signer->entries()[i];
      ++signed_[{e.spec.domain, std::string(dkim::AlgorithmName(e.algorithm))}];
    }
    return;
  }
  if (why.empty())
    return;  // no entry for its From: domain: not ours to sign
  std::lock_guard lock(mu_);
  ++failures_;
  const int64_t now = now_();
  if (now >= next_failure_log_) {
    next_failure_log_ = now + 60;
    SPATE_LOG(kWarn, "dkim: a message from <%s> goes unsigned: %s (%llu so far)",
              r.message.mail_from.c_str(), why.c_str(), static_cast<unsigned long long>(failures_));
  }
}

void SigningStore::Stop() {
  std::deque<Request> dropped;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable())
      t.join();
  }
  workers_.clear();
  // `dropped` goes here, on this thread: their callbacks never run.
}

std::map<std::pair<std::string, std::string>, uint64_t> SigningStore::signed_counts() const {
  std::lock_guard lock(mu_);
  return signed_;
}

size_t SigningStore::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

uint64_t SigningStore::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

}  // namespace spate::server
