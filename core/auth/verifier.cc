// core/auth/verifier.cc
#include "core/auth/verifier.h"

#include "core/auth/credentials.h"
#include "core/wipe.h"

namespace spate::auth {

// A password is wiped once it has been checked (or dropped), and so is every string it was
// moved out of: a short one (SSO) keeps its bytes when moved from.

Verifier::Verifier(const CredentialStore& store, unsigned threads) : store_(store) {
  if (threads == 0)
    threads = 1;
  workers_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i)
    workers_.emplace_back([this] { Run(); });
}

Verifier::~Verifier() {
  Stop();
}

void Verifier::Verify(std::string user, std::string password, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      queue_.push_back({std::move(user), std::move(password), std::move(done)});
      cv_.notify_one();
      Wipe(password);
      return;
    }
  }
  Wipe(password);  // stopped: `done` goes with this frame, unrun
}

void Verifier::Stop() {
  std::deque<Request> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable())
      t.join();
  }
  for (Request& r : dropped)
    Wipe(r.password);
}

void Verifier::Run() {
  for (;;) {
    Request r;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      r = std::move(queue_.front());
      Wipe(queue_.front().password);
      queue_.pop_front();
    }
    bool ok = store_.Verify(r.user, r.password);
    Wipe(r.password);
    r.done(ok);
  }
}

}  // namespace spate::auth
