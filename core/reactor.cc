#include "core/reactor.h"

#include <cerrno>

#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"

namespace spate {

Result<std::unique_ptr<Reactor>> Reactor::Create(unsigned entries) {
  std::unique_ptr<Reactor> r(new Reactor());
  io_uring_params params{};
  // One submitter (this thread), and completions are reaped only when the loop asks: the
  // kernel may skip inter-processor interrupts and task work can wait for the next enter.
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
  params.cq_entries = entries * 4;
  params.flags |= IORING_SETUP_CQSIZE;
  int rc = io_uring_queue_init_params(entries, &r->ring_, &params);
  if (rc < 0) {
    // Older kernels refuse the flags: retry plain.
    params = {};
    rc = io_uring_queue_init_params(entries, &r->ring_, &params);
  }
  if (rc < 0)
    return Errno(-rc);
  r->ring_ok_ = true;
  if (!(params.features & IORING_FEAT_EXT_ARG))
    return Errno(ENOSYS);  // need wait timeouts
  r->event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->event_fd_ < 0)
    return Errno(errno);
  r->slots_.reserve(1024);
  r->ArmWakeup();
  return r;
}

Reactor::~Reactor() {
  if (ring_ok_)
    io_uring_queue_exit(&ring_);
  if (event_fd_ >= 0)
    close(event_fd_);
  InboxNode* n = inbox_.exchange(nullptr);
  while (n != nullptr) {
    InboxNode* next = n->next;
    delete n;
    n = next;
  }
}

io_uring_sqe* Reactor::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // The submission queue is full: hand it to the kernel and take a fresh entry.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  SPATE_CHECK(sqe != nullptr);
  return sqe;
}

Reactor::OpId Reactor::Arm(io_uring_sqe* sqe, Completion done) {
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[index];
  s.done = std::move(done);
  s.busy = true;
  ++live_ops_;
  OpId id = (static_cast<uint64_t>(s.generation) << 32) | index;
  io_uring_sqe_set_data64(sqe, id);
  return id;
}

Reactor::OpId Reactor::Accept(int listen_fd, Completion done) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  return Arm(sqe, std::move(done));
}

Reactor::OpId Reactor::Recv(int fd, void* buf, size_t len, Completion done) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recv(sqe, fd, buf, len, 0);
  return Arm(sqe, std::move(done));
}

Reactor::OpId Reactor::Send(int fd, const void* buf, size_t len, Completion done) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
  return Arm(sqe, std::move(done));
}

Reactor::OpId Reactor::Connect(int fd, const sockaddr* addr, socklen_t len, Completion done) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_connect(sqe, fd, addr, len);
  return Arm(sqe, std::move(done));
}

Reactor::OpId Reactor::Read(int fd, void* buf, size_t len, Completion done) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, fd, buf, static_cast<unsigned>(len), 0);
  return Arm(sqe, std::move(done));
}

void Reactor::Cancel(OpId op) {
  uint32_t index = static_cast<uint32_t>(op);
  if (index >= slots_.size() || !slots_[index].busy ||
      slots_[index].generation != static_cast<uint32_t>(op >> 32)) {
    return;  // already completed
  }
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel64(sqe, op, 0);
  io_uring_sqe_set_data64(sqe, UINT64_MAX);  // the cancel's own completion is ignored
}

void Reactor::Complete(uint64_t user_data, int result) {
  if (user_data == UINT64_MAX)
    return;
  uint32_t index = static_cast<uint32_t>(user_data);
  SPATE_CHECK(index < slots_.size());
  Slot& s = slots_[index];
  SPATE_CHECK(s.busy && s.generation == static_cast<uint32_t>(user_data >> 32));
  Completion done = std::move(s.done);
  s.done = nullptr;
  s.busy = false;
  ++s.generation;
  free_slots_.push_back(index);
  --live_ops_;
  done(result);
}

Reactor::TimerId Reactor::AddTimer(Clock::time_point deadline, Task fire) {
  TimerId id{deadline, ++timer_seq_};
  timers_.emplace(std::make_pair(deadline, id.seq), std::move(fire));
  return id;
}

void Reactor::CancelTimer(TimerId& id) {
  if (id.valid())
    timers_.erase(std::make_pair(id.deadline, id.seq));
  id = TimerId{};
}

void Reactor::RunTimers() {
  while (!timers_.empty() && timers_.begin()->first.first <= now_) {
    auto node = timers_.extract(timers_.begin());
    node.mapped()();
  }
}

void Reactor::Post(Task task) {
  auto* node = new InboxNode{std::move(task), nullptr};
  InboxNode* head = inbox_.load(std::memory_order_relaxed);
  do {
    node->next = head;
  } while (!inbox_.compare_exchange_weak(head, node, std::memory_order_release,
                                         std::memory_order_relaxed));
  if (head == nullptr) {
    // The inbox went from empty to non-empty: wake the loop. Later pushes ride on this wake-up
    // because the loop drains the whole list at once.
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = write(event_fd_, &one, sizeof one);
  }
}

void Reactor::DrainInbox() {
  InboxNode* n = inbox_.exchange(nullptr, std::memory_order_acquire);
  // The list is newest first: reverse it to run tasks in the order they were posted.
  InboxNode* reversed = nullptr;
  while (n != nullptr) {
    InboxNode* next = n->next;
    n->next = reversed;
    reversed = n;
    n = next;
  }
  while (reversed != nullptr) {
    InboxNode* next = reversed->next;
    reversed->task();
    delete reversed;
    reversed = next;
  }
}

void Reactor::ArmWakeup() {
  Read(event_fd_, &event_buf_, sizeof event_buf_, [this](int) {
    ArmWakeup();  // always armed, so a drain can count it as the one resident op
  });
}

void Reactor::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(event_fd_, &one, sizeof one);
}

void Reactor::RunOnce(Clock::time_point deadline) {
  // Wait (unless work is already waiting), then completions, then the inbox, then timers: the
  // work a wake-up brought in is done before RunOnce returns.
  now_ = Clock::now();
  if (!timers_.empty() && timers_.begin()->first.first < deadline) {
    deadline = timers_.begin()->first.first;
  }
  io_uring_cqe* cqe = nullptr;
  bool inbox_pending = inbox_.load(std::memory_order_relaxed) != nullptr;
  if (inbox_pending || deadline <= now_) {
    io_uring_submit(&ring_);
  } else {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now_).count();
    __kernel_timespec ts{};
    ts.tv_sec = ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      SPATE_LOG(kError, "io_uring wait failed: %d", rc);
    }
  }
  // Reap everything that is ready; completions may submit more.
  struct Done {
    uint64_t data;
    int res;
  };
  Done batch[256];
  for (;;) {
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      batch[count++] = {cqe->user_data, cqe->res};
      if (count == 256)
        break;
    }
    if (count == 0)
      break;
    io_uring_cq_advance(&ring_, count);
    now_ = Clock::now();
    for (unsigned i = 0; i < count; ++i)
      Complete(batch[i].data, batch[i].res);
  }
  DrainInbox();
  now_ = Clock::now();
  RunTimers();
}

void Reactor::Run() {
  while (!stopping()) {
    RunOnce(Clock::now() + std::chrono::seconds(1));
  }
}

}  // namespace spate
