// core/dns/resolver.h
//
// Resolver is a shard's DNS: asynchronous lookups through libunbound, whose answers come back on
// the shard's reactor thread. libunbound does the network work, the caching (with the records'
// TTLs, and negative answers) and DNSSEC validation (with trust anchors) on a thread of its own;
// it signals results on a descriptor that the reactor polls (io_uring), and the callbacks run
// from there. With Options::trust_ad the lookups go instead straight to the configured
// resolvers (core/dns/stub.h, message.h), which must validate: their AD bit is what makes an
// answer secure, and their cache is the only one. Nothing on the reactor blocks. Each lookup has a
// timeout of ours on top of libunbound's own retries, and at most max_inflight run at once (more
// wait their turn, in order). Threading: one per shard, used on its reactor thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <netinet/in.h>

#include "core/clock.h"
#include "core/counter.h"
#include "core/dns/stub.h"
#include "core/dns/wire.h"
#include "core/reactor.h"
#include "core/result.h"
#include "core/task.h"

struct ub_ctx;
struct ub_result;

namespace spate::dns {

// kTxt: MTA-STS's _mta-sts record (RFC 8461 §3.1); kTlsa: DANE's (RFC 6698 §2, RFC 7672 §2.2).
enum class Type : uint8_t { kMx, kA, kAaaa, kTxt, kTlsa };
inline constexpr int kTypeCount = 5;

enum class Status : uint8_t {
  kOk,        // records in the answer
  kNoData,    // the name exists, without records of the type
  kNxDomain,  // the name does not exist (RCODE 3)
  kServFail,  // the server failed or refused (RCODE 2, 5): try again later
  kTimeout,   // no answer within the timeout
  kBogus,     // DNSSEC validation failed
  kError,     // anything else (a malformed answer, a resolver error)
};
const char* StatusName(Status status);  // "ok", "nodata", "nxdomain", ...

struct Address {
  int family = AF_INET;  // AF_INET or AF_INET6
  in_addr v4{};
  in6_addr v6{};
};

struct Answer {
  Status status = Status::kError;
  uint32_t ttl = 0;     // of the records, or of the negative answer
  bool secure = false;  // DNSSEC-validated
  std::vector<MxRecord> mx;
  std::vector<Address> addresses;
  std::vector<std::string> txt;    // each TXT record's character-strings, concatenated
  std::vector<std::string> rdata;  // each TLSA record's rdata, raw (tls::ParseTlsaRdata)
  std::string error;               // what went wrong, for logs
};

// Lookups by type and outcome, for the metrics (single writer: the shard).
struct ResolverStats {
  Counter lookups[kTypeCount][7];  // [Type][Status]
  Counter timeouts;
};

class Resolver {
 public:
  struct Options {
    // "host:port" of the servers to ask (forwarding; "[::1]:53" for IPv6); empty: the system's
    // (/etc/resolv.conf).
    std::vector<std::string> nameservers;
    Seconds timeout{10};
    unsigned max_inflight = 256;
    // DNSSEC trust anchors (DS or DNSKEY lines in zone-file form, e.g. Debian's dns-root-data
    // /usr/share/dns/root.key); "": no validation, nothing is secure.
    std::string trust_anchor_file;
    // Trust the AD bit of `nameservers`, which must be validating resolvers over a secure path
    // (on loopback: RFC 4035 §4.9.3), instead of validating here: no libunbound, no cache of
    // ours. Excludes trust_anchor_file.
    bool trust_ad = false;
  };
  using Done = UniqueFunction<void(Answer&&)>;

  static Result<std::unique_ptr<Resolver>> Create(Reactor& reactor, const Options& options,
                                                  ResolverStats* stats, std::string* error);
  ~Resolver();  // lookups still out are dropped: their callbacks never run
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // `done` runs once, on the reactor thread, never inside Lookup().
  void Lookup(std::string_view name, Type type, Done done);

  size_t inflight() const { return inflight_.size(); }
  size_t waiting() const { return waiting_.size(); }

 private:
  struct Query {
    Resolver* resolver = nullptr;
    uint64_t id = 0;
    std::string name;
    Type type = Type::kA;
    Done done;
    int async_id = 0;
    Reactor::TimerId timer;
  };

  Resolver(Reactor& reactor, const Options& options, ResolverStats* stats, ub_ctx* ctx,
           std::unique_ptr<Stub> stub);
  void Start(std::unique_ptr<Query> q);
  void StartStub(Query* q);
  void ArmTimeout(Query* q);
  void FailLater(uint64_t id, std::string error);
  void Finish(uint64_t id, Answer&& answer);
  void ArmPoll();
  static void OnResult(void* mydata, int err, ub_result* result);

  Reactor& reactor_;
  Options options_;
  ResolverStats* stats_;
  ub_ctx* ctx_;                 // null with trust_ad
  std::unique_ptr<Stub> stub_;  // with trust_ad only
  int fd_ = -1;
  bool poll_armed_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  uint64_t next_id_ = 1;
  std::minstd_rand random_{std::random_device{}()};
  std::unordered_map<uint64_t, std::unique_ptr<Query>> inflight_;
  std::deque<std::unique_ptr<Query>> waiting_;
};

}  // namespace spate::dns
