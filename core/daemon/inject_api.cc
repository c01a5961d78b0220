#include "core/daemon/inject_api.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <utility>
#include <vector>

#include <openssl/sha.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/smtp/date.h"
#include "queue/suppression.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

namespace {

// SHA-256 of a request's body, hex: what an Idempotency-Key is held to.
std::string Fingerprint(std::string_view body) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(body.data()), body.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof digest);
  for (uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

using Json = nlohmann::json;

constexpr std::string_view kKeyPrefix = "idempotency/";
constexpr size_t kMaxKey = 255;
constexpr size_t kMaxErrors = 100;  // of one answer's "errors": the rest are counted

http::Response Answer(int status, const Json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  return r;
}

bool ValidKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKey)
    return false;
  for (char c : key) {
    if (c <= ' ' || c >= 127)
      return false;
  }
  return true;
}

}  // namespace

InjectApi::InjectApi(Reactor& reactor, Options options, server::MessageStore& store,
                     queue::Spool& spool, Accepted accepted, Offload offload)
    : reactor_(reactor),
      options_(std::move(options)),
      store_(store),
      spool_(spool),
      accepted_(std::move(accepted)),
      offload_(std::move(offload)) {}

size_t InjectApi::LoadKeys(int64_t now_ms) {
  auto entries = spool_.ReadState(kKeyPrefix);
  if (!entries)
    return 0;
  std::lock_guard lock(mu_);
  for (const auto& [key, value] : *entries) {
    Json j = Json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.value("expires_ms", Json()).is_number_integer() ||
        !j.value("status", Json()).is_number_integer() || !j.value("body", Json()).is_string() ||
        j["expires_ms"].get<int64_t>() <= now_ms) {
      spool_.PutState(key, std::nullopt);
      continue;
    }
    const Json fp = j.value("fingerprint", Json());
    keys_[key.substr(kKeyPrefix.size())] = {j["status"].get<int>(), j["body"].get<std::string>(),
                                            j["expires_ms"].get<int64_t>(),
                                            fp.is_string() ? fp.get<std::string>() : ""};
  }
  return keys_.size();
}

void InjectApi::Handle(const http::Request& r, AdminServer::Respond respond) {
  const std::string key(r.header("idempotency-key"));
  if (r.headers.end() != std::find_if(r.headers.begin(), r.headers.end(),
                                      [](const auto& h) { return h.first == "idempotency-key"; })) {
    if (!ValidKey(key)) {
      return respond(
          AdminServer::Error(400, "Idempotency-Key: 1 to 255 printable octets", "Idempotency-Key"));
    }
    const int64_t now = reactor_.wall_ms();
    std::lock_guard lock(mu_);
    auto it = keys_.find(key);
    if (it != keys_.end() && it->second.expires_ms == 0) {
      return respond(AdminServer::Error(
          409, "a request with this Idempotency-Key is still being answered", "Idempotency-Key"));
    }
    // Hashed here (up to max_body_bytes, on the reactor) only for a retry that finds an answer
    // kept; a new request's body is hashed on the worker (Run).
    if (it != keys_.end() && it->second.expires_ms > now && !it->second.fingerprint.empty() &&
        it->second.fingerprint != Fingerprint(r.body)) {
      // The key names another request (draft-ietf-httpapi-idempotency-key-header §2.7: 422).
      return respond(AdminServer::Error(
          422, "this Idempotency-Key was used with a different request", "Idempotency-Key"));
    }
    if (it != keys_.end() && it->second.expires_ms > now) {
      http::Response resp;
      resp.status = it->second.status;
      resp.body = it->second.body;
      resp.headers.emplace_back("Idempotent-Replayed", "true");
      return respond(std::move(resp));
    }
    keys_[key] = Kept{};  // being answered (expires_ms 0); its fingerprint comes with Run
  }
  // Turned away before anything is built: the key is free again for the retry.
  auto refuse = [&](int status, std::string text, const char* retry_after) {
    if (!key.empty()) {
      std::lock_guard lock(mu_);
      keys_.erase(key);
    }
    http::Response resp = AdminServer::Error(status, std::move(text));
    resp.headers.emplace_back("Retry-After", retry_after);
    respond(std::move(resp));
  };
  // A draining node takes nothing new: the balancer sends the client to another.
  if (options_.draining != nullptr && options_.draining->load())
    return refuse(503, "this node is draining: send to another", "60");
  // The spool sheds load: nothing is built.
  if (const smtp::Intake intake = store_.intake(); intake != smtp::Intake::kOpen) {
    return refuse(503,
                  intake == smtp::Intake::kFull
                      ? "the spool is short of disk space: try again later"
                      : "the spool cannot write now: try again later",
                  "60");
  }
  if (pending_.load() >= options_.max_pending)
    return refuse(429, "too much is being injected now: try again", "1");
  if (requests_.fetch_add(1) >= options_.max_requests) {
    --requests_;
    return refuse(429, "too many injection requests at once: try again", "1");
  }
  offload_(
      [this, r, key] {
        struct Done {
          std::atomic<size_t>& n;
          ~Done() { --n; }
        } done{requests_};
        return Run(r, key);
      },
      std::move(respond));
}

// On the admin API's worker: builds, stores, waits for every commit, keeps the answer.
http::Response InjectApi::Run(const http::Request& r, const std::string& key) {
  if (!key.empty()) {
    std::string fingerprint = Fingerprint(r.body);
    std::lock_guard lock(mu_);
    keys_[key].fingerprint = std::move(fingerprint);  // kept with the answer (Keep)
  }
  const int64_t now = Clock::Real().WallMs();
  inject::Context context;
  context.hostname = options_.hostname;
  context.now_ms = now;
  context.message_id_base =
      std::to_string(now) + "." + std::to_string(sequence_.fetch_add(1)) + ".spate";
  inject::Request built;
  inject::Error error;
  http::Response resp;
  if (!inject::Build(r.body, options_.limits, context, &built, &error)) {
    Json body = {{"error", error.text}};
    if (!error.field.empty())
      body["field"] = error.field;
    resp = Answer(error.status, body);
    // Nothing was done: the key is free again, for the request put right (kept, the refusal
    // would be replayed to it for a day). As Stripe does for a request that fails validation.
    if (!key.empty()) {
      std::lock_guard lock(mu_);
      keys_.erase(key);
    }
    return resp;
  }
  // RFC 5321 §4.4: the client, as an address literal with the same as its TCP-info (HTTP has no
  // HELO name to put first); none on a connection with no address (a Unix socket).
  const std::string from =
      r.peer_address.empty() ? "" : "from [" + r.peer_address + "] ([" + r.peer_address + "]) ";
  const std::string received =
      "Received: " + from + "by " + options_.hostname + " (spate) with HTTP; " +
      smtp::FormatDate(std::chrono::system_clock::time_point(std::chrono::milliseconds(now))) +
      "\r\n";
  struct Gather {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
    size_t ok = 0;
    bool refused = false;  // a commit failed: the spool's doing
    std::vector<std::string> failed;
    std::vector<std::string> errors;
  };
  auto g = std::make_shared<Gather>();
  const queue::Suppression& suppression = spool_.suppression();
  std::vector<queue::NewMessage> out;
  out.reserve(built.messages.size());
  for (inject::Message& m : built.messages) {
    if (std::optional<queue::SuppressionEntry> e = suppression.Lookup(m.recipient, now)) {
      g->failed.push_back(m.recipient);
      if (g->errors.size() < kMaxErrors) {
        g->errors.push_back(m.recipient + ": suppressed since " +
                            queue::FormatRfc3339(e->since_ms) + " (" + e->klass + ")");
      }
      continue;
    }
    smtp::ReceivedMessage rm;
    rm.mail_from = built.envelope_sender;
    rm.rcpt_to = {m.recipient};
    rm.body.reserve(received.size() + m.data.size());
    rm.body = received;
    rm.body += m.data;
    rm.body_8bit = m.body_8bit;
    rm.smtputf8 = m.smtputf8;
    out.push_back(server::ToSpoolMessage(std::move(rm), options_.postmaster,
                                         options_.campaign_header, options_.campaign_priority));
  }
  g->left = out.size();
  pending_ += out.size();
  for (queue::NewMessage& m : out) {
    std::string rcpt = m.rcpt_to.front();
    store_.Accept(std::move(m), [this, g, rcpt = std::move(rcpt)](Result<queue::MessageId> id,
                                                                  queue::NewMessage&& stored) {
      // On the store's thread: the durable message goes on to delivery, as an SMTP one.
      if (id)
        accepted_(*id, std::move(stored));
      --pending_;
      std::lock_guard lock(g->mu);
      if (id) {
        ++g->ok;
      } else {
        g->refused = true;
        g->failed.push_back(rcpt);
        if (g->errors.size() < kMaxErrors)
          g->errors.push_back(rcpt + ": not stored: " + id.error().message());
      }
      if (--g->left == 0)
        g->cv.notify_one();
    });
  }
  {
    std::unique_lock lock(g->mu);
    g->cv.wait(lock, [&] { return g->left == 0; });
  }
  Json errors = g->errors;
  if (g->failed.size() > g->errors.size()) {
    errors.push_back(std::to_string(g->failed.size() - g->errors.size()) + " more not listed");
  }
  const Json body = {{"success_count", g->ok},
                     {"fail_count", g->failed.size()},
                     {"failed_recipients", g->failed},
                     {"errors", errors}};
  if (g->ok == 0 && g->refused) {
    // Nothing stored, by the spool's doing: the client is to try again (and may: no key kept).
    resp = Answer(503, body);
    resp.headers.emplace_back("Retry-After", "60");
    std::lock_guard lock(mu_);
    keys_.erase(key);
    return resp;
  }
  if (g->ok > 0) {
    const std::string failed =
        g->failed.empty() ? "" : ", " + std::to_string(g->failed.size()) + " failed";
    SPATE_LOG(kInfo, "inject: %zu messages queued from <%s>%s", g->ok,
              built.envelope_sender.c_str(), failed.c_str());
  }
  resp = Answer(200, body);
  Keep(key, resp);
  return resp;
}

// The answer to `key` (none: ""), kept in memory and in the spool's state before it goes out.
void InjectApi::Keep(const std::string& key, const http::Response& resp) {
  if (key.empty())
    return;
  const int64_t now = Clock::Real().WallMs();
  const int64_t expires = now + options_.idempotency_ttl_ms;
  std::string fingerprint;
  {
    std::lock_guard lock(mu_);
    if (auto it = keys_.find(key); it != keys_.end())
      fingerprint = it->second.fingerprint;
  }
  // Written with the next commit batch, and waited for: a retry after a restart finds it.
  struct Written {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto w = std::make_shared<Written>();
  spool_.PutState(std::string(kKeyPrefix) + key,
                  Json({{"status", resp.status},
                        {"body", resp.body},
                        {"expires_ms", expires},
                        {"fingerprint", fingerprint}})
                      .dump(),
                  [w] {
                    std::lock_guard lock(w->mu);
                    w->done = true;
                    w->cv.notify_one();
                  });
  {
    std::unique_lock lock(w->mu);
    // Bounded: a spool that cannot write holds the answer 30 s at most (the messages are on
    // disk already; only a retry's replay is at stake).
    if (!w->cv.wait_for(lock, std::chrono::seconds(30), [&] { return w->done; }))
      SPATE_LOG(kWarn, "inject: Idempotency-Key %s not written yet", key.c_str());
  }
  std::lock_guard lock(mu_);
  keys_[key] = Kept{resp.status, resp.body, expires, fingerprint};
  if (now >= next_prune_ms_) {
    next_prune_ms_ = now + 60 * 1000;
    for (auto it = keys_.begin(); it != keys_.end();) {
      if (it->second.expires_ms != 0 && it->second.expires_ms <= now) {
        spool_.PutState(std::string(kKeyPrefix) + it->first, std::nullopt);
        it = keys_.erase(it);
      } else {
        ++it;
      }
    }
  }
}

}  // namespace spate::daemon
