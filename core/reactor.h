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
//    Tasks, timers and completions are move-only (core/task.h): they carry moved values.
//  - Time comes from a Clock (core/clock.h): the real one, or a test's ManualClock, which moves
//    only when the test says so (a timer fires at the first loop turn after its deadline).
//  - RecvPooled() reads into a buffer the kernel picks from the reactor's provided-buffer ring
//    (io_uring buffer selection), handed back as soon as the completion returns: an idle
//    connection with a recv armed holds no buffer of its own.
// Threading: everything but Post() and Stop() on the reactor's own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include <sys/socket.h>

#include <liburing.h>

#include "core/clock.h"
#include "core/result.h"
#include "core/task.h"

namespace spate {

class Reactor {
 public:
  using Clock = std::chrono::steady_clock;
  using Completion = UniqueFunction<void(int result)>;
  // `data` is the received bytes (valid for the call only) when result > 0.
  using RecvDone = UniqueFunction<void(int result, std::string_view data)>;
  using Task = spate::Task;
  struct TimerId {
    Clock::time_point deadline;
    uint64_t seq = 0;
    bool valid() const { return seq != 0; }
  };
  using OpId = uint64_t;

  // `clock`: null for the real clocks; else borrowed for the reactor's life.
  static Result<std::unique_ptr<Reactor>> Create(unsigned entries, spate::Clock* clock = nullptr);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  OpId Accept(int listen_fd, Completion done);
  OpId Recv(int fd, void* buf, size_t len, Completion done);
  // A recv into a pooled buffer (see above). Falls back to a buffer of the caller's when the
  // kernel has no buffer rings: `fallback` must then stay valid until the completion.
  OpId RecvPooled(int fd, std::string* fallback, RecvDone done);
  OpId Send(int fd, const void* buf, size_t len, Completion done);
  OpId Connect(int fd, const sockaddr* addr, socklen_t len, Completion done);
  OpId Read(int fd, void* buf, size_t len, Completion done);
  // One-shot readiness: completes with the poll mask (POLLIN...) once `fd` is readable, for a
  // library that hands over a descriptor to watch (the DNS resolver's).
  OpId PollIn(int fd, Completion done);
  // Asks the kernel to cancel an in-flight operation; its completion still runs.
  void Cancel(OpId op);

  TimerId AddTimer(Clock::time_point deadline, Task fire);
  void CancelTimer(TimerId& id);  // no-op when already fired or cancelled; resets `id`

  // Any thread. The task runs on the reactor thread at its next loop turn. Tasks still queued
  // when the reactor is destroyed are destroyed without running. While a PostBatch lives on the
  // calling thread, the task waits in it (see there).
  void Post(Task task);

  // The Post()s one thread makes while this lives (on that thread) go out at its end, one task
  // per reactor that runs them in their order: a thread handing many results to few reactors
  // (the spool's commit thread: a reply and a delivery job per message of a batch) pays one
  // inbox node, one wake-up and one allocation per reactor, not per message. Nested batches
  // join the outermost.
  class PostBatch {
   public:
    PostBatch();
    ~PostBatch();
    PostBatch(const PostBatch&) = delete;
    PostBatch& operator=(const PostBatch&) = delete;

   private:
    friend class Reactor;
    std::vector<std::pair<Reactor*, std::vector<Task>>> pending_;
    bool outermost_ = false;
  };

  // Runs until Stop(). Stop() is callable from any thread.
  void Run();
  void Stop();
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

  // Runs one loop turn, waiting at most until `deadline` for something to happen.
  void RunOnce(Clock::time_point deadline);

  Clock::time_point now() const { return now_; }
  // Wall-clock time of the same clock, read now.
  std::chrono::system_clock::time_point wall_now() const { return clock_->WallNow(); }
  int64_t wall_ms() const { return clock_->WallMs(); }
  spate::Clock& clock() const { return *clock_; }
  size_t pending_ops() const { return live_ops_; }

 private:
  struct Slot {
    Completion done;
    RecvDone recv_done;  // RecvPooled()
    int fd = -1;         // RecvPooled(): re-armed on ENOBUFS
    uint32_t generation = 0;
    bool busy = false;
    bool pooled = false;
  };
  struct InboxNode {
    Task task;
    InboxNode* next = nullptr;
  };

  Reactor() = default;
  void PostNow(Task task);
  io_uring_sqe* GetSqe();
  OpId Arm(io_uring_sqe* sqe, Completion done);
  void Complete(uint64_t user_data, int result, uint32_t flags);
  uint32_t TakeSlot();
  void SetUpBufferRing();
  void ArmPooled(uint32_t index);
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
  spate::Clock* clock_ = nullptr;
  Clock::time_point now_{};
  // The provided-buffer ring (buffer group 0): kPoolBuffers buffers of kPoolBufferSize.
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  std::unique_ptr<char[]> pool_;
  std::atomic<InboxNode*> inbox_{nullptr};
  std::atomic<bool> stop_{false};
};

}  // namespace spate
