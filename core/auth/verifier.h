// core/auth/verifier.h
//
// Verifier runs CredentialStore::Verify() (one PBKDF2, milliseconds at the default iteration
// count) on worker threads of its own, so that no reactor thread blocks on it. Requests are
// taken in arrival order by [auth] verify_threads workers; each verdict goes to the request's
// callback, on the worker that computed it. The callback must only hand the verdict on (post it
// to the shard that asked, which then looks its connection up by id: it may be gone).
//
// The cost is the store's: an unknown user costs one PBKDF2 against the dummy entry, as a known
// one does, so the time to the verdict does not tell which users exist.
//
// The queue is not bounded here: each connection has at most one AUTH outstanding (the session
// pauses until its verdict), so the connection limits bound it.
// Threading: Verify() from any thread; Stop() and the destructor from one thread that is not a
// worker; callbacks on the workers. May block: Stop() waits for the running verifications. The
// store must outlive the Verifier.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace spate::auth {

class CredentialStore;

class Verifier {
 public:
  using Done = std::function<void(bool ok)>;

  // Starts `threads` workers (at least one).
  Verifier(const CredentialStore& store, unsigned threads = 1);
  ~Verifier();  // Stop()
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  // Queues a verification; `done(ok)` runs on a worker. After Stop(), `done` is destroyed
  // without running.
  void Verify(std::string user, std::string password, Done done);

  // Lets each worker finish the verification it is running, then joins them. Requests still
  // queued are dropped: their callbacks are destroyed, on this thread, without running (at
  // shutdown nobody is left to answer). Idempotent.
  void Stop();

 private:
  struct Request {
    std::string user;
    std::string password;
    Done done;
  };

  void Run();

  const CredentialStore& store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;  // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace spate::auth
