#include "core/reactor.h"

#include <cerrno>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"

namespace spate {

namespace {
// Receive buffers shared by every connection of a reactor: 8 MiB a shard, whatever the number
// of connections (32 KiB each, the size one recv of a pipelined burst or a 100 KB body wants).
constexpr unsigned kPoolBuffers = 256;  // a power of two (the ring's size)
constexpr size_t kPoolBufferSize = 32 * 1024;
constexpr int kBufferGroup = 0;
}  // namespace

Result<std::unique_ptr<Reactor>> Reactor::Create(unsigned entries, spate::Clock* clock) {
  std::unique_ptr<Reactor> r(new Reactor());
  r->clock_ = clock != nullptr ? clock : &spate::Clock::Real();
  r->now_ = r->clock_->Now();
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
  r->SetUpBufferRing();
  r->ArmWakeup();
  return r;
}

void Reactor::SetUpBufferRing() {
  // Kernel 5.19+: a ring of buffers the kernel picks from for each RecvPooled(). Without it
  // RecvPooled() reads into the caller's buffer instead.
  size_t bytes = kPoolBuffers * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED)
    return;
  auto* br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = kPoolBuffers;
  reg.bgid = kBufferGroup;
  if (io_uring_register_buf_ring(&ring_, &reg, 0) != 0) {
    munmap(mem, bytes);
    return;
  }
  pool_.reset(new char[kPoolBuffers * kPoolBufferSize]);
  for (unsigned i = 0; i < kPoolBuffers; ++i) {
    io_uring_buf_ring_add(br, pool_.get() + i * kPoolBufferSize, kPoolBufferSize,
                          static_cast<unsigned short>(i), io_uring_buf_ring_mask(kPoolBuffers),
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br, kPoolBuffers);
  buf_ring_ = br;
  buf_ring_bytes_ = bytes;
}

Reactor::~Reactor() {
  if (ring_ok_)
    io_uring_queue_exit(&ring_);
  if (buf_ring_ != nullptr)
    munmap(buf_ring_, buf_ring_bytes_);
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

uint32_t Reactor::TakeSlot() {
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  return index;
}

Reactor::OpId Reactor::Arm(io_uring_sqe* sqe, Completion done) {
  uint32_t index = TakeSlot();
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

Reactor::OpId Reactor::RecvPooled(int fd, std::string* fallback, RecvDone done) {
  if (buf_ring_ == nullptr) {
    if (fallback->size() < kPoolBufferSize)
      fallback->resize(kPoolBufferSize);
    return Recv(fd, fallback->data(), fallback->size(),
                [fallback, done = std::move(done)](int res) mutable {
                  done(res, res > 0 ? std::string_view(fallback->data(), static_cast<size_t>(res))
                                    : std::string_view());
                });
  }
  uint32_t index = TakeSlot();
  Slot& s = slots_[index];
  s.recv_done = std::move(done);
  s.fd = fd;
  s.pooled = true;
  s.busy = true;
  ++live_ops_;
  ArmPooled(index);
  return (static_cast<uint64_t>(s.generation) << 32) | index;
}

void Reactor::ArmPooled(uint32_t index) {
  Slot& s = slots_[index];
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recv(sqe, s.fd, nullptr, kPoolBufferSize, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(s.generation) << 32) | index);
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

Reactor::OpId Reactor::PollIn(int fd, Completion done) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_poll_add(sqe, fd, POLLIN);
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

void Reactor::Complete(uint64_t user_data, int result, uint32_t flags) {
  if (user_data == UINT64_MAX)
    return;
  uint32_t index = static_cast<uint32_t>(user_data);
  SPATE_CHECK(index < slots_.size());
  Slot& s = slots_[index];
  SPATE_CHECK(s.busy && s.generation == static_cast<uint32_t>(user_data >> 32));
  if (s.pooled) {
    if (result == -ENOBUFS) {
      // Every pooled buffer was taken by completions of this same turn, handed back by now:
      // ask again, as the same operation.
      ArmPooled(index);
      return;
    }
    RecvDone recv_done = std::move(s.recv_done);
    s.recv_done = nullptr;
    s.pooled = false;
    s.busy = false;
    ++s.generation;
    free_slots_.push_back(index);
    --live_ops_;
    if ((flags & IORING_CQE_F_BUFFER) == 0) {
      recv_done(result, std::string_view());
      return;
    }
    auto bid = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
    char* buf = pool_.get() + static_cast<size_t>(bid) * kPoolBufferSize;
    recv_done(result,
              result > 0 ? std::string_view(buf, static_cast<size_t>(result)) : std::string_view());
    // The callback is done with the bytes: the buffer goes back to the kernel.
    io_uring_buf_ring_add(buf_ring_, buf, kPoolBufferSize, bid,
                          io_uring_buf_ring_mask(kPoolBuffers), 0);
    io_uring_buf_ring_advance(buf_ring_, 1);
    return;
  }
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
  // Only the timers armed before this pass: one that a timer arms for now (the rest of a batch
  // "at the next turn") runs at the next turn, after the I/O that waits.
  const uint64_t last = timer_seq_;
  auto it = timers_.begin();
  while (it != timers_.end() && it->first.first <= now_) {
    if (it->first.second > last) {
      ++it;
      continue;
    }
    auto node = timers_.extract(it);
    node.mapped()();
    it = timers_.begin();  // the callback may have added or cancelled timers
  }
}

namespace {
thread_local Reactor::PostBatch* t_post_batch = nullptr;  // this thread's outermost batch
}  // namespace

Reactor::PostBatch::PostBatch() {
  if (t_post_batch == nullptr) {
    t_post_batch = this;
    outermost_ = true;
  }
}

Reactor::PostBatch::~PostBatch() {
  if (!outermost_)
    return;
  t_post_batch = nullptr;
  for (auto& [reactor, tasks] : pending_) {
    if (tasks.size() == 1) {
      reactor->PostNow(std::move(tasks.front()));
      continue;
    }
    reactor->PostNow([tasks = std::move(tasks)]() mutable {
      for (Task& t : tasks)
        t();
    });
  }
}

void Reactor::Post(Task task) {
  if (PostBatch* batch = t_post_batch) {
    for (auto& [reactor, tasks] : batch->pending_) {
      if (reactor == this) {
        tasks.push_back(std::move(task));
        return;
      }
    }
    batch->pending_.emplace_back(this, std::vector<Task>{});
    batch->pending_.back().second.push_back(std::move(task));
    return;
  }
  PostNow(std::move(task));
}

void Reactor::PostNow(Task task) {
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
  now_ = clock_->Now();
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
    uint32_t flags;
  };
  Done batch[256];
  for (;;) {
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      batch[count++] = {cqe->user_data, cqe->res, cqe->flags};
      if (count == 256)
        break;
    }
    if (count == 0)
      break;
    io_uring_cq_advance(&ring_, count);
    now_ = clock_->Now();
    for (unsigned i = 0; i < count; ++i)
      Complete(batch[i].data, batch[i].res, batch[i].flags);
  }
  DrainInbox();
  now_ = clock_->Now();
  RunTimers();
}

void Reactor::Run() {
  while (!stopping()) {
    RunOnce(clock_->Now() + std::chrono::seconds(1));
  }
}

}  // namespace spate
