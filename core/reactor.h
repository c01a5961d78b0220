// core/reactor.h
//
// Reactor is one io_uring event loop: socket operations (accept, recv, send, connect), timers and
// a cross-thread inbox. Every in-flight submission has an owner slot in a per-reactor op table;
// the io_uring user_data is the slot index and a generation, never a raw pointer (helio style).
//
// Contract:
//  - Each operation's completion runs exactly once, on the reactor thread, with the kernel's
//    result (>= 0, or -errno; -ECANCELED after Cancel()).
//  - Buffers and addresses named by an operation must stay valid until its completion runs.
//  - Timers are kept in the reactor; the loop waits in the ring with the nearest deadline as
//    its timeout (io_uring_submit_and_wait_timeout), so time passes through the ring too.
//  - Post() is the only method callable from other threads: it pushes onto a lock-free
//    multi-producer inbox and wakes the loop through an eventfd read that is always armed.
// Threading: everything but Post() and Stop() on the reactor's own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include <sys/socket.h>

#include <liburing.h>

#include "core/result.h"

namespace spate {

class Reactor {
 public:
  using Clock = std::chrono::steady_clock;
  using Completion = std::function<void(int result)>;
  using Task = std::function<void()>;
  struct TimerId {
    Clock::time_point deadline;
    uint64_t seq = 0;
    bool valid() const { return seq != 0; }
  };
  using OpId = uint64_t;

  static Result<std::unique_ptr<Reactor>> Create(unsigned entries);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  OpId Accept(int listen_fd, Completion done);
  OpId Recv(int fd, void* buf, size_t len, Completion done);
  OpId Send(int fd, const void* buf, size_t len, Completion done);
  OpId Connect(int fd, const sockaddr* addr, socklen_t len, Completion done);
  OpId Read(int fd, void* buf, size_t len, Completion done);
  // Asks the kernel to cancel an in-flight operation; its completion still runs.
  void Cancel(OpId op);

  TimerId AddTimer(Clock::time_point deadline, Task fire);
  void CancelTimer(TimerId& id);  // no-op when already fired or cancelled; resets `id`

  // Any thread. The task runs on the reactor thread at its next loop turn. Tasks still queued
  // when the reactor is destroyed are destroyed without running.
  void Post(Task task);

  // Runs until Stop(). Stop() is callable from any thread.
  void Run();
  void Stop();
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

  // Runs one loop turn, waiting at most until `deadline` for something to happen.
  void RunOnce(Clock::time_point deadline);

  Clock::time_point now() const { return now_; }
  size_t pending_ops() const { return live_ops_; }

 private:
  struct Slot {
    Completion done;
    uint32_t generation = 0;
    bool busy = false;
  };
  struct InboxNode {
    Task task;
    InboxNode* next = nullptr;
  };

  Reactor() = default;
  io_uring_sqe* GetSqe();
  OpId Arm(io_uring_sqe* sqe, Completion done);
  void Complete(uint64_t user_data, int result);
  void DrainInbox();
  void ArmWakeup();
  void RunTimers();

  io_uring ring_{};
  bool ring_ok_ = false;
  int event_fd_ = -1;
  uint64_t event_buf_ = 0;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  size_t live_ops_ = 0;
  std::map<std::pair<Clock::time_point, uint64_t>, Task> timers_;
  uint64_t timer_seq_ = 0;
  Clock::time_point now_ = Clock::now();
  std::atomic<InboxNode*> inbox_{nullptr};
  std::atomic<bool> stop_{false};
};

}  // namespace spate
