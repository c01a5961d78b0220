// core/server/signing.h
//
// SigningStore: DKIM signing (issue 12, core/dkim) between the submission server and the spool.
// It is a MessageStore in front of the real one: each accepted message goes to a worker thread
// of its own, which signs it (RFC 6376; RSA-2048 costs about a millisecond, Ed25519 a tenth of
// that: never on a reactor) and only then hands it to the spool. So the stored message is the
// signed one (every destination and every retry sends the same bytes), and the 250 still comes
// only after the durable commit: the caller's `done` runs from the spool's commit, as before.
//
// A message whose From: domain (or a parent of it) has no [[dkim]] entry, and no default entry
// applies, goes on unsigned; one that cannot be signed (no From:, two of them) goes on unsigned
// too, counted as a failure and logged (at most once a minute): mail is not refused for it.
// The signer can be replaced while running (a reload): a message takes the one in force when it
// is accepted.
//
// The queue is not bounded here: each submission connection has at most one message between
// its data and its reply, so the connection limits bound it.
// Threading: Accept(), SetSigner() and the counters from any thread; Stop() and the destructor
// from one thread that is not a worker. The inner store's Accept() runs on a worker (or, with
// no signer in force, on the caller's thread).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/dkim/dkim.h"
#include "core/server/submission.h"

namespace spate::server {

class SigningStore final : public MessageStore {
 public:
  // `now` gives unix seconds for t= (a test's clock); null: the real one.
  SigningStore(MessageStore& inner, unsigned threads, std::function<int64_t()> now = nullptr);
  ~SigningStore() override;  // Stop()
  SigningStore(const SigningStore&) = delete;
  SigningStore& operator=(const SigningStore&) = delete;

  // The signer in force from now on (null or without entries: nothing is signed).
  void SetSigner(std::shared_ptr<const dkim::Signer> signer);

  void Accept(queue::NewMessage&& message, queue::Spool::AcceptDone done) override;
  smtp::Intake intake() const override { return inner_.intake(); }

  // Lets each worker finish the message it signs (and hand it to the store), then joins them.
  // Messages still queued are dropped unanswered: their clients get no 250 and send again.
  void Stop();

  // Messages signed by (d= domain, algorithm), one count per signature; failures.
  std::map<std::pair<std::string, std::string>, uint64_t> signed_counts() const;
  uint64_t failures() const;
  // Messages waiting for a worker.
  size_t queued() const;

 private:
  struct Request {
    queue::NewMessage message;
    queue::Spool::AcceptDone done;
    std::shared_ptr<const dkim::Signer> signer;
  };
  void Run();
  void Sign(Request& r);

  MessageStore& inner_;
  std::function<int64_t()> now_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;                                       // guarded by mu_
  std::shared_ptr<const dkim::Signer> signer_;                      // guarded by mu_
  std::map<std::pair<std::string, std::string>, uint64_t> signed_;  // guarded by mu_
  uint64_t failures_ = 0;                                           // guarded by mu_
  int64_t next_failure_log_ = 0;                                    // guarded by mu_
  bool stopping_ = false;                                           // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace spate::server
