// delivery/spool_port.h
//
// SpoolPort is all the delivery engine asks of the spool: record an outcome, record a deferral,
// read a body. The daemon gives it QueueSpool (the RocksDB spool, below); component tests give
// it a fake that records calls and answers reads when the test says.
// Threading: called on the engine's shard; ReadBody's `done` may run on any thread (the engine
// posts the result back to its shard).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/result.h"
#include "core/task.h"
#include "queue/spool.h"
#include "queue/suppression.h"

namespace spate::delivery {

class SpoolPort {
 public:
  using BodyDone = UniqueFunction<void(Result<std::string>)>;

  virtual ~SpoolPort() = default;
  // The recipient's outcome is final (delivered or failed).
  virtual void Finish(queue::MessageId id, uint32_t index) = 0;
  // The recipient is tried again at `next_attempt_ms` (unix ms); `delay_warned` as
  // queue::Spool::Defer.
  virtual void Defer(queue::MessageId id, uint32_t index, uint16_t attempts,
                     int64_t next_attempt_ms, bool delay_warned) = 0;
  virtual void ReadBody(queue::MessageId id, BodyDone done) = 0;
  // A message made by delivery (a DSN): stored durably like an accepted one, then delivered
  // like one. `done(true, its id)` once it is on disk, `done(false, 0)` if the spool refused
  // it; on any thread.
  using InjectDone = UniqueFunction<void(bool durable, queue::MessageId id)>;
  virtual void Inject(queue::NewMessage&& message, InjectDone done) = 0;
  // A recipient that bounced for good goes on the suppression list (queue/suppression.h).
  virtual void Suppress(queue::SuppressionEntry&& entry) = 0;
};

// The real spool behind the port.
class QueueSpool final : public SpoolPort {
 public:
  // `accepted` hands a stored message to delivery (the Dispatcher's DispatchAccepted).
  using Accepted = std::function<void(queue::MessageId, queue::NewMessage&&)>;
  QueueSpool(queue::Spool& spool, Accepted accepted)
      : spool_(spool), accepted_(std::move(accepted)) {}
  void Finish(queue::MessageId id, uint32_t index) override { spool_.Finish(id, index); }
  void Defer(queue::MessageId id, uint32_t index, uint16_t attempts, int64_t next_attempt_ms,
             bool delay_warned) override {
    spool_.Defer(id, index, attempts, next_attempt_ms, delay_warned);
  }
  void ReadBody(queue::MessageId id, BodyDone done) override {
    spool_.ReadBody(id, std::move(done));
  }
  void Inject(queue::NewMessage&& message, InjectDone done) override {
    spool_.Accept(std::move(message),
                  [this, done = std::move(done)](Result<queue::MessageId> id,
                                                 queue::NewMessage&& stored) mutable {
                    done(id.has_value(), id ? *id : 0);
                    if (id && accepted_)
                      accepted_(*id, std::move(stored));
                  });
  }

  void Suppress(queue::SuppressionEntry&& entry) override {
    spool_.suppression().Add(std::move(entry));
  }

 private:
  queue::Spool& spool_;
  Accepted accepted_;
};

}  // namespace spate::delivery
