#include "core/shard.h"

#include <future>
#include <string_view>

#include "core/log.h"

namespace spate {
namespace {
thread_local Shard* t_current = nullptr;
constexpr auto kDrainDeadline = std::chrono::seconds(5);
}  // namespace

Shard::Shard(ShardId id, ShardId count) : id_(id), count_(count) {}

Shard::~Shard() {
  Join();
}

Shard* Shard::Current() {
  return t_current;
}

Result<void> Shard::Start(std::function<void(Shard&)> init) {
  std::promise<std::error_code> started;
  auto started_future = started.get_future();
  thread_ = std::thread([this, &started, init = std::move(init)] {
    t_current = this;
    auto r = Reactor::Create(4096);
    if (!r) {
      started.set_value(r.error());
      return;
    }
    reactor_ = std::move(r).value();
    init(*this);
    started.set_value({});
    Loop();
    // Services die on their own shard. The reactor stays until ~Shard: threads that outlive
    // this loop (the spool's) may still Post() to it; those tasks are freed, never run.
    services_.clear();
    t_current = nullptr;
  });
  std::error_code ec = started_future.get();
  if (ec) {
    thread_.join();
    return Unexpected{ec};
  }
  return {};
}

void Shard::Post(Reactor::Task task) {
  reactor_->Post(std::move(task));
}

void Shard::AddService(std::unique_ptr<Service> service) {
  services_.push_back(std::move(service));
}

void Shard::RequestStop() {
  Post([this] {
    if (draining_)
      return;
    draining_ = true;
    for (auto& s : services_)
      s->Shutdown();
    reactor_->Stop();
  });
}

void Shard::Loop() {
  reactor_->Run();
  // Drain: let the operations that Shutdown() cancelled complete (their buffers belong to the
  // services), bounded in time. One op is always armed: the inbox wake-up read.
  auto deadline = Reactor::Clock::now() + kDrainDeadline;
  while (reactor_->pending_ops() > 1 && Reactor::Clock::now() < deadline) {
    reactor_->RunOnce(deadline);
  }
  if (reactor_->pending_ops() > 1) {
    SPATE_LOG(kWarn, "shard %u: %zu operations still pending at exit", id_,
              reactor_->pending_ops() - 1);
  }
}

void Shard::Join() {
  if (thread_.joinable())
    thread_.join();
}

ShardId OwnerOf(std::string_view domain, ShardId shard_count) {
  // FNV-1a: stable across runs and builds (std::hash is not guaranteed to be).
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : domain) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<ShardId>(h % shard_count);
}

}  // namespace spate
