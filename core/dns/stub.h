// core/dns/stub.h
//
// Stub sends DNS queries to the configured resolvers and hands back their raw replies, for
// `[dns] trust_ad`, where the resolver's AD bit must reach spate (core/dns/message.h). The
// network work is glibc's res_nsend(): UDP, TCP when the reply is truncated, the retries and
// the servers in turn, the reply's id and question checked, and with RES_TRUSTAD the AD bit
// kept (glibc clears it otherwise). res_nsend blocks, so it runs on threads of the Stub's own,
// each with its own resolver state; the reactor never waits on it.
// Threading: Send() and the destructor on one thread (the shard's); `done` runs on a Stub
// thread, and never after the destructor has returned.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "core/task.h"

namespace spate::dns {

class Stub {
 public:
  struct Options {
    // "a.b.c.d:port" of the resolvers, at most 3 (glibc's MAXNS); empty: /etc/resolv.conf's.
    std::vector<std::string> nameservers;
    Seconds timeout{10};  // res_nsend's own bound: about this long over its retries
    unsigned threads = 4;
  };
  // The reply, or "" and what went wrong; timed_out when no server answered in time.
  using Done = UniqueFunction<void(std::string reply, std::string error, bool timed_out)>;

  static Result<std::unique_ptr<Stub>> Create(const Options& options, std::string* error);
  // Returns at once: a query still in res_nsend finishes on its (detached) thread, and its
  // `done` is dropped.
  ~Stub();
  Stub(const Stub&) = delete;
  Stub& operator=(const Stub&) = delete;

  void Send(std::string query, Done done);

 private:
  struct State;
  static void Work(std::shared_ptr<State> state);
  explicit Stub(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace spate::dns
