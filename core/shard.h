// core/shard.h
//
// A Shard is one thread with one Reactor (io_uring), and the services that live on it: the
// submission listener and its sessions, the delivery queues and pools of the destinations it
// owns. Everything reachable from a Shard is owned by it and touched only on its thread
// (share-nothing, as in Seastar); objects die on the shard that made them.
//
// Cross-shard traffic has exactly one path: Post() moves a task into the target reactor's
// inbox and wakes it. The task must carry moved values, never references into the sender.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "core/reactor.h"
#include "core/result.h"

namespace spate {

using ShardId = uint16_t;

// A long-lived component on a shard. Shutdown() starts a graceful stop (close listeners, end
// sessions); the shard keeps turning its loop until the ring is quiet or a deadline passes.
class Service {
 public:
  virtual ~Service() = default;
  virtual void Shutdown() noexcept = 0;
};

class Shard {
 public:
  Shard(ShardId id, ShardId count);
  ~Shard();  // joins the thread
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // Starts the thread, creates the reactor on it (io_uring SINGLE_ISSUER wants the submitting
  // thread to create the ring), runs `init` there, then the loop. Returns once `init` has run.
  Result<void> Start(std::function<void(Shard&)> init);

  // Any thread. Runs `task` on this shard at its next loop turn; after the loop has ended the
  // task is destroyed with the shard instead.
  void Post(Reactor::Task task);

  // Any thread. Shuts every service down, drains, then ends the loop; Join() waits for it.
  void RequestStop();
  void Join();

  // Shard thread only.
  Reactor& reactor() { return *reactor_; }
  void AddService(std::unique_ptr<Service> service);
  ShardId id() const { return id_; }
  ShardId count() const { return count_; }

  // The shard running the calling thread, or nullptr off reactor threads.
  static Shard* Current();

 private:
  void Loop();

  ShardId id_;
  ShardId count_;
  std::unique_ptr<Reactor> reactor_;
  std::vector<std::unique_ptr<Service>> services_;
  std::thread thread_;
  bool draining_ = false;
};

// The shard that owns a destination domain: stable for the life of the process, so each
// domain's connection pool, limits and queue live in exactly one place.
ShardId OwnerOf(std::string_view domain, ShardId shard_count);

}  // namespace spate
