// core/daemon/inject_api.h
//
// HTTP injection (issue 13): POST /api/inject/v1 on the admin listener, in KumoMTA's request
// shape (core/inject/inject.h builds the messages, one per recipient, templated). Each message
// goes the way an SMTP one does: a Received: line, the campaign header and its priority
// (server::ToSpoolMessage), the suppression list, the MessageStore (DKIM signing, then the
// spool's group commit) and, once durable, delivery. The answer comes only after every message
// is on disk:
//   200 {"success_count", "fail_count", "failed_recipients": [...], "errors": [...]}
//   400 malformed JSON, a bad address or template (naming the field); 413 past a limit;
//   429 too much being injected at once; 503 the spool takes nothing now (Retry-After).
// A recipient on the suppression list, or one whose commit failed, is a failed recipient.
//
// Idempotency-Key (a header, up to 255 printable octets): the first answer is kept 24 h (in
// memory and in the spool's state, written before the answer goes out), and a request with the
// same key gets it again without queuing anything; one still being answered gets 409. A crash
// after the messages' commit and before the key's leaves the key unknown: a retry then queues
// them again (at least once, never lost).
// Threading: Handle() on the admin reactor; building and storing on the admin API's worker;
// commits finish on the spool's thread and post back.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/daemon/admin.h"
#include "core/inject/inject.h"
#include "core/reactor.h"
#include "core/server/submission.h"
#include "queue/spool.h"

namespace spate::daemon {

class InjectApi {
 public:
  struct Options {
    std::string hostname;  // Received:, Message-ID
    std::string postmaster;
    std::string campaign_header;
    server::CampaignPriorities campaign_priority;
    inject::Limits limits;
    // Messages being built or committed at once, over every request: past it, 429.
    size_t max_pending = 100000;
    // Requests waiting for the admin API's worker or being answered by it, each holding its
    // body (up to the listener's max_body_bytes): past it, 429. The worker answers one at a
    // time, so max_pending alone never counts more than one request's messages.
    size_t max_requests = 8;
    int64_t idempotency_ttl_ms = 24 * 3600 * 1000;
    // Set while the node drains (spate ctl drain): 503, nothing is taken. Null: never.
    const std::atomic<bool>* draining = nullptr;
  };
  using Accepted = std::function<void(queue::MessageId, queue::NewMessage&&)>;
  using Offload = std::function<void(std::function<http::Response()>, AdminServer::Respond)>;

  // Everything borrowed. `accepted` runs on the store's thread for each durable message (the
  // dispatcher), `offload` runs work off the reactor (AdminApi::Offload).
  InjectApi(Reactor& reactor, Options options, server::MessageStore& store, queue::Spool& spool,
            Accepted accepted, Offload offload);

  void Handle(const http::Request& r, AdminServer::Respond respond);

  // Before serving: the idempotency keys kept in the spool (expired ones deleted). How many.
  size_t LoadKeys(int64_t now_ms);

 private:
  struct Kept {
    int status = 200;
    std::string body;
    int64_t expires_ms = 0;   // 0: still being answered
    std::string fingerprint;  // of the request's body (Fingerprint); "" from before it was kept
  };
  http::Response Run(const http::Request& r, const std::string& key);
  void Keep(const std::string& key, const http::Response& resp);

  Reactor& reactor_;
  Options options_;
  server::MessageStore& store_;
  queue::Spool& spool_;
  Accepted accepted_;
  Offload offload_;
  std::atomic<size_t> pending_{0};
  std::atomic<size_t> requests_{0};  // offloaded and not answered yet
  std::atomic<uint64_t> sequence_{0};
  std::mutex mu_;  // keys_: the reactor looks, the worker keeps
  std::unordered_map<std::string, Kept> keys_;
  int64_t next_prune_ms_ = 0;
};

}  // namespace spate::daemon
