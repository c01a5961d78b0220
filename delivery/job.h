// delivery/job.h
//
// The units of delivery work. A Message is what every destination's job of one accepted message
// shares: its envelope, made once and never changed, so one copy serves every shard. A Job is
// the recipients of one message for one destination domain, with their attempts and the time
// they are due. A Body is the message's bytes, one immutable buffer shared by every job of the
// message and freed with its last holder.
//
// Message and Body are the exceptions to "no shared_ptr across shards" (STYLE.md): both are
// immutable from the moment they are made, so the atomic reference count is the only thing two
// shards ever write, and the object dies on whichever shard drops it last. The one mutable
// part of a Message is its LoadedBody, a weak reference behind a mutex.
// Threading: Message and Body: any thread; a Job: one owner at a time, moved.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "queue/spool.h"

namespace spate::delivery {

using Body = std::shared_ptr<const std::string>;

// The body of a message as read from the spool for one of its jobs, while any job still holds
// it: the jobs of its other destinations (on any shard) take it from here instead of reading
// it again, so a message to ten domains is one buffer in memory, not ten (the kill -9
// restart's peak, bench/README.md). A weak reference: it never keeps a body alive, and the last
// job to let go (Job::DropBody) forgets it, so a message waiting for its retry holds nothing of
// its body. A copy of a Message starts with none. Guarded by one of a few mutexes shared by all
// messages (picked by address): taken once per body load, never on the send path.
class LoadedBody {
 public:
  LoadedBody() = default;
  LoadedBody(const LoadedBody&) {}
  LoadedBody& operator=(const LoadedBody&) = delete;

  // The body some job holds; null if none does.
  Body Get() const;
  // `body`, kept for the others, unless a job holds one already (a sibling's read that ended
  // first): then that one, and `body` goes with the caller.
  Body Offer(Body body) const;
  void Clear() const;

 private:
  std::mutex& Guard() const;

  mutable std::weak_ptr<const std::string> body_;
};

struct Message {
  queue::MessageId id = 0;
  std::string mail_from;
  uint64_t body_size = 0;
  bool body_8bit = false;
  bool smtputf8 = false;    // RFC 6531: must go out with SMTPUTF8
  int64_t received_ms = 0;  // unix ms when it was accepted; 0: unknown (never expires)
  // RFC 3461: ENVID, RET (0 unset, 1 FULL, 2 HDRS), and per position NOTIFY and ORCPT (empty
  // when the message had no DSN parameters at all).
  std::string envid;
  uint8_t ret = 0;
  std::string campaign;  // [server] campaign_header's value, or empty
  // RFC 6710 MT-PRIORITY, -9 (lowest) to 9 (highest); 0 normal. From the client's MAIL
  // parameter when it may set one, else its campaign's default ([campaigns]).
  int8_t priority = 0;
  std::vector<queue::DsnRequest> dsn;
  LoadedBody loaded_body;

  const queue::DsnRequest* dsn_of(uint32_t p) const { return p < dsn.size() ? &dsn[p] : nullptr; }

  // Recipient p's address (as received) and its index in the spool's envelope.
  std::string_view address(uint32_t p) const {
    return std::string_view(addresses_).substr(offsets_[p], offsets_[p + 1] - offsets_[p]);
  }
  uint32_t spool_index(uint32_t p) const { return indices_.empty() ? p : indices_[p]; }
  uint32_t recipients() const { return static_cast<uint32_t>(offsets_.size() - 1); }

  // Builder: recipients in order; `spool_index` defaults to the position. Reserve() first
  // when the total is known, so no buffer is larger than it needs.
  void Reserve(size_t recipients, size_t address_bytes);
  void AddRecipient(std::string_view address, uint32_t spool_index);

 private:
  std::string addresses_;                // every address, one after another
  std::vector<uint32_t> offsets_ = {0};  // recipient p: [offsets_[p], offsets_[p + 1])
  std::vector<uint32_t> indices_;        // empty while every index equals its position
};
using MessageRef = std::shared_ptr<const Message>;

struct Recipient {
  uint32_t pos = 0;  // in the Message
  uint16_t attempts = 0;
  bool delay_warned = false;  // its sender has had the delay notice (RFC 3464 "delayed")
  // Deferred by a rate limit (adaptive.h IsRateLimitReply): this try is not counted as an
  // attempt. Set by Engine::Record(), cleared by Reschedule().
  bool uncharged = false;
};

// A job's recipients: one inline (the common case: a message's recipients mostly go to
// different domains, so most jobs have one), more on the heap. 16 bytes, where a std::vector
// is 24 plus a heap block for even one recipient.
class RecipientList {
 public:
  RecipientList() {}
  RecipientList(const RecipientList& other) { assign(other.begin(), other.end()); }
  RecipientList(RecipientList&& other) noexcept { Take(other); }
  RecipientList& operator=(const RecipientList& other) {
    if (this != &other)
      assign(other.begin(), other.end());
    return *this;
  }
  RecipientList& operator=(RecipientList&& other) noexcept {
    if (this != &other) {
      Free();
      Take(other);
    }
    return *this;
  }
  RecipientList& operator=(const std::vector<Recipient>& v) {
    assign(v.data(), v.data() + v.size());
    return *this;
  }
  ~RecipientList() { Free(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  Recipient* begin() { return data(); }
  Recipient* end() { return data() + size_; }
  const Recipient* begin() const { return data(); }
  const Recipient* end() const { return data() + size_; }
  Recipient& operator[](size_t i) { return data()[i]; }
  const Recipient& operator[](size_t i) const { return data()[i]; }
  const Recipient& front() const { return data()[0]; }

  void push_back(Recipient r);
  void assign(const Recipient* first, const Recipient* last);
  void resize(size_t n) {  // shrinks only
    if (n < size_)
      size_ = static_cast<uint32_t>(n);
  }

 private:
  Recipient* data() { return cap_ <= 1 ? &one_ : many_; }
  const Recipient* data() const { return cap_ <= 1 ? &one_ : many_; }
  void Free() {
    if (cap_ > 1)
      delete[] many_;
    cap_ = 1;
    size_ = 0;
  }
  void Take(RecipientList& other) {
    size_ = other.size_;
    cap_ = other.cap_;
    if (cap_ > 1) {
      many_ = other.many_;
    } else {
      one_ = other.one_;
    }
    other.cap_ = 1;
    other.size_ = 0;
  }

  uint32_t size_ = 0;
  uint32_t cap_ = 1;
  union {
    Recipient one_;
    Recipient* many_;
  };
};

struct Job {
  MessageRef message;
  Body body;  // null until loaded
  RecipientList recipients;
  int64_t due_ms = 0;  // unix ms; 0: now
  // Held in a scheduler by an operator's suspension (controls.h): a resume releases it.
  bool held = false;
  // In a transaction: counted in its domain's and site's in_flight until it is rescheduled.
  bool in_flight = false;

  std::string_view address(const Recipient& r) const { return message->address(r.pos); }
  // Lets go of the body; the last job holding it also clears its message's LoadedBody.
  void DropBody() {
    if (body && body.use_count() == 1)
      message->loaded_body.Clear();
    body.reset();
  }
};

// The lower-cased domain of an address ("" without '@').
std::string DomainOf(std::string_view address);

}  // namespace spate::delivery
