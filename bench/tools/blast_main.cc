// bench/tools/blast_main.cc
//
// spate-blast: an SMTP load generator on io_uring (spate's Reactor and Connection). It opens
// --connections connections to a submission port, sends --messages messages of --size octets
// (or a --size-mix), each with --rcpts recipients spread over --domains destination domains,
// and reports how many were accepted, how fast, and the accept latency: from the end of the
// data (the moment "<CRLF>.<CRLF>" is handed to the kernel) to the server's reply.
//
// With PIPELINING offered (RFC 2920), MAIL, every RCPT and DATA go in one write, and the next
// transaction's commands follow the end of data of the previous one at once (--pipeline-next),
// so a connection never waits a round trip between messages. Without it, one command at a
// time. --rate caps the start of transactions (messages/s over all connections).
//
// Each message carries "X-Blast-Ts: <ns since the epoch>" as its first header, stamped when its
// data is sent, so a sink can measure the end-to-end latency through an MTA.
//
// Output: one progress line per second on stderr; at the end one JSON object on stdout (and in
// --json FILE). Every run is bounded: --messages, and --timeout seconds.
// Threading: --threads shards (spate::Shard), each with its own connections; the main thread
// only prints progress and waits for signals.

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/tools/common.h"
#include "bench/tools/histogram.h"
#include "core/connection.h"
#include "core/counter.h"
#include "core/log.h"
#include "core/shard.h"
#include "core/smtp/reply_parser.h"

namespace spate::bench {
namespace {

struct Options {
  std::string server = "127.0.0.1:2525";
  uint64_t connections = 50;
  uint64_t messages = 10000;
  uint64_t size = 2048;
  std::string size_mix;
  uint64_t rcpts = 1;
  uint64_t domains = 10;
  std::string domain_suffix = "bench.test";
  std::string from = "blast@spate-bench.test";
  std::string helo = "spate-blast.test";
  double rate = 0;
  bool pipelining = true;
  bool pipeline_next = true;
  uint64_t threads = 1;
  double timeout = 600;
  uint64_t max_reconnects = 1000;
  std::string json;
  bool progress = true;
  bool quit = true;
};

// One message shape: the text with a placeholder for the timestamp, ended by ".\r\n".
struct Template {
  uint64_t size = 0;  // octets of the message proper (headers and body, without the final ".")
  std::string text;
  size_t ts_offset = 0;
};

Template MakeTemplate(uint64_t size, const Options& o) {
  Template t;
  t.size = size;
  std::string& s = t.text;
  s += kTimestampHeader;
  t.ts_offset = s.size();
  s.append(kTimestampDigits, '0');
  s += "\r\nFrom: <" + o.from + ">\r\nTo: undisclosed-recipients:;\r\n";
  s += "Subject: spate-blast " + std::to_string(size) + " octets\r\n";
  s += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  // Body lines of 78 octets with CRLF; none starts with '.', so no dot-stuffing is needed.
  static constexpr std::string_view kLine =
      "The quick brown fox jumps over the lazy dog; spate-blast padding line. 0123\r\n";
  while (s.size() + kLine.size() <= size)
    s += kLine;
  if (s.size() + 2 < size) {
    s.append(size - s.size() - 2, 'x');
    s += "\r\n";
  }
  s += ".\r\n";
  return t;
}

uint64_t Mix(uint64_t x) {  // splitmix64: spreads message numbers over the size mix
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Per worker counters: written by the worker's shard, read by the main thread.
struct WorkerStats {
  Counter accepted;
  Counter failed;
  Counter bytes;
  Gauge connections;
  Gauge in_flight;  // messages whose data is sent and unanswered
  Histogram latency;
  std::atomic<uint64_t> first_accept_ns{0};
  std::atomic<uint64_t> last_accept_ns{0};
  std::atomic<bool> done{false};
  std::atomic<bool> pipelining{false};  // the server offered PIPELINING and it was used
  // Written on the worker's shard only; read after it has stopped.
  std::map<std::string, uint64_t> errors;
};

// What all workers share (read-only but for the message counter).
struct Shared {
  Options options;
  std::vector<Template> templates;
  std::vector<uint64_t> weights;  // cumulative, one per template
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::atomic<uint64_t> next_message{0};
  std::atomic<unsigned> workers_done{0};

  const Template& Pick(uint64_t seq) const {
    if (templates.size() == 1)
      return templates[0];
    uint64_t r = Mix(seq) % weights.back();
    size_t i = 0;
    while (weights[i] <= r)
      ++i;
    return templates[i];
  }
};

class Worker;

class BlastConnection final : public Connection {
 public:
  BlastConnection(Worker& worker, int fd);
  void Begin();

 protected:
  void OnConnected(int error) noexcept override;
  void OnData(std::string_view data) noexcept override;
  void OnClosed(int error) noexcept override;

 private:
  enum class Kind : uint8_t { kGreeting, kEhlo, kHelo, kMail, kRcpt, kData, kEndOfData, kQuit };
  struct Command {
    Kind kind;
    std::string text;
  };
  struct Txn {
    uint64_t seq = 0;
    uint32_t rcpts_ok = 0;
    bool body_sent = false;
    uint64_t eod_ns = 0;  // monotonic, when the data was sent
  };

  void OnReply(const smtp::Reply& reply);
  void Stage(Kind kind, std::string text);
  void Pump();
  void StartNext();
  void StageTransaction(uint64_t seq);
  void SendBody(Txn& txn);
  void FinishTxn(bool accepted, const smtp::Reply& reply);
  void Fail(const std::string& why);
  void Flush();

  Worker& worker_;
  smtp::ReplyParser parser_;
  std::deque<Kind> expected_;  // sent, unanswered; the front is the next reply's command
  std::deque<Command> unsent_;
  std::deque<Txn> txns_;  // staged or in flight, oldest first
  std::string out_;       // output of this turn: one send per batch of replies
  bool pipelining_ = false;
  bool ready_ = false;  // greeting and EHLO done
  bool quitting_ = false;
  bool start_pending_ = false;  // a rate-limit timer will stage message pending_seq_
  uint64_t pending_seq_ = 0;
  Reactor::TimerId start_timer_;
};

class Worker final : public Service {
 public:
  Worker(Shard& shard, Shared& shared, WorkerStats& stats, unsigned connections)
      : shard_(shard), shared_(shared), stats_(stats), connections_(connections) {}

  void Start() {
    for (unsigned i = 0; i < connections_; ++i)
      Open();
    CheckDone();
  }

  void Shutdown() noexcept override {
    stopping_ = true;
    std::vector<BlastConnection*> open(live_.begin(), live_.end());
    for (BlastConnection* c : open)
      c->Abort();
    CheckDone();
  }

  // The next message to send, or nullopt when all are taken.
  std::optional<uint64_t> TakeMessage() {
    if (stopping_)
      return std::nullopt;
    if (!requeued_.empty()) {
      uint64_t seq = requeued_.back();
      requeued_.pop_back();
      return seq;
    }
    uint64_t seq = shared_.next_message.fetch_add(1, std::memory_order_relaxed);
    if (seq >= shared_.options.messages)
      return std::nullopt;
    return seq;
  }
  // A message staged on a connection that broke before its data was sent: someone else sends it.
  void Requeue(uint64_t seq) { requeued_.push_back(seq); }

  // Rate limit: when (CLOCK_MONOTONIC ns) the caller may start a transaction; 0: now. The
  // slots are spaced evenly; a late caller does not earn a burst. A transaction starts at the
  // first millisecond tick at or after its slot, so the slots of one tick share one wake-up of
  // the loop (at 15,000 messages a second, 1,000 wake-ups instead of 15,000: paced one by one,
  // the blaster took 3 times the CPU a message it takes unpaced, on the cores the MTA under
  // test shares).
  static constexpr uint64_t kTickNs = 1'000'000;
  uint64_t StartAtNs() {
    if (shared_.options.rate <= 0)
      return 0;
    uint64_t now = MonotonicNs();
    uint64_t interval = static_cast<uint64_t>(1e9 * static_cast<double>(shared_.options.threads) /
                                              shared_.options.rate);
    uint64_t slot = std::max(now, next_slot_ns_);
    next_slot_ns_ = slot + interval;
    return slot == now ? 0 : (slot + kTickNs - 1) / kTickNs * kTickNs;
  }

  void CountError(const std::string& what) { ++stats_.errors[what]; }

  void Accepted(uint64_t latency_ns) {
    stats_.accepted.Add();
    stats_.latency.Record(latency_ns);
    uint64_t now = WallNs();
    if (stats_.first_accept_ns.load(std::memory_order_relaxed) == 0)
      stats_.first_accept_ns.store(now, std::memory_order_relaxed);
    stats_.last_accept_ns.store(now, std::memory_order_relaxed);
  }

  void OnConnectionClosed(BlastConnection* c, bool failed_to_connect) {
    live_.erase(c);
    stats_.connections.Set(static_cast<int64_t>(live_.size()));
    if (stopping_ || Exhausted()) {
      CheckDone();
      return;
    }
    // Messages are left: open a replacement, unless the budget for that is spent.
    if (reconnects_ >= shared_.options.max_reconnects) {
      if (reconnects_ == shared_.options.max_reconnects) {
        CountError("reconnect budget exhausted");
        ++reconnects_;
      }
      CheckDone();
      return;
    }
    ++reconnects_;
    auto delay = failed_to_connect ? std::chrono::milliseconds(50) : std::chrono::milliseconds(0);
    ++reconnect_timers_;
    shard_.reactor().AddTimer(shard_.reactor().now() + delay, [this] {
      --reconnect_timers_;
      if (!stopping_)
        Open();
      CheckDone();
    });
  }

  Reactor& reactor() { return shard_.reactor(); }
  const Shared& shared() const { return shared_; }
  WorkerStats& stats() { return stats_; }

 private:
  bool Exhausted() const {
    return requeued_.empty() &&
           shared_.next_message.load(std::memory_order_relaxed) >= shared_.options.messages;
  }

  void Open() {
    int fd = socket(shared_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      CountError(std::string("socket: ") + std::strerror(errno));
      return;
    }
    auto* c = new BlastConnection(*this, fd);
    live_.insert(c);
    stats_.connections.Set(static_cast<int64_t>(live_.size()));
    c->Begin();
  }

  void CheckDone() {
    if (live_.empty() && reconnect_timers_ == 0 && !stats_.done.load()) {
      stats_.done.store(true);
      shared_.workers_done.fetch_add(1);
    }
  }

  Shard& shard_;
  Shared& shared_;
  WorkerStats& stats_;
  unsigned connections_;
  std::unordered_set<BlastConnection*> live_;
  std::vector<uint64_t> requeued_;
  uint64_t reconnects_ = 0;
  int reconnect_timers_ = 0;
  uint64_t next_slot_ns_ = 0;
  bool stopping_ = false;
};

BlastConnection::BlastConnection(Worker& worker, int fd)
    : Connection(worker.reactor(), fd), worker_(worker) {}

void BlastConnection::Begin() {
  Connect(worker_.shared().addr, worker_.shared().addr_len);
}

void BlastConnection::OnConnected(int error) noexcept {
  if (error != 0) {
    worker_.CountError(std::string("connect: ") + std::strerror(error));
    Abort();
    return;
  }
  expected_.push_back(Kind::kGreeting);
  StartReading();
}

void BlastConnection::OnData(std::string_view data) noexcept {
  while (!data.empty() && !closing()) {
    auto used = parser_.Feed(data);
    if (!used) {
      Fail("malformed reply");
      return;
    }
    data.remove_prefix(*used);
    std::optional<smtp::Reply> reply = parser_.TakeReply();
    if (!reply) {
      if (*used == 0)
        break;  // a partial reply: wait for more
      continue;
    }
    OnReply(*reply);
  }
  Flush();
}

void BlastConnection::Flush() {
  if (!out_.empty() && !closing())
    Send(std::move(out_));
  out_.clear();
}

void BlastConnection::Fail(const std::string& why) {
  worker_.CountError(why);
  Abort();
}

void BlastConnection::OnReply(const smtp::Reply& reply) {
  if (expected_.empty()) {
    if (reply.code == 421) {
      worker_.CountError("421");
      Close();
      return;
    }
    Fail("unexpected reply");
    return;
  }
  Kind kind = expected_.front();
  expected_.pop_front();
  std::string code = std::to_string(reply.code);
  switch (kind) {
    case Kind::kGreeting:
      if (reply.code != 220)
        return Fail("greeting " + code);
      Stage(Kind::kEhlo, "EHLO " + worker_.shared().options.helo + "\r\n");
      break;
    case Kind::kEhlo:
      if (!reply.positive()) {
        Stage(Kind::kHelo, "HELO " + worker_.shared().options.helo + "\r\n");
        break;
      }
      // The text holds one line per capability after the first (the server's name).
      for (size_t pos = 0; pos < reply.text.size();) {
        size_t end = reply.text.find('\n', pos);
        if (end == std::string::npos)
          end = reply.text.size();
        std::string_view line(reply.text.data() + pos, end - pos);
        if (line.size() >= 10 && strncasecmp(line.data(), "PIPELINING", 10) == 0 &&
            (line.size() == 10 || line[10] == ' ')) {
          pipelining_ = worker_.shared().options.pipelining;
        }
        pos = end + 1;
      }
      if (pipelining_)
        worker_.stats().pipelining.store(true, std::memory_order_relaxed);
      ready_ = true;
      StartNext();
      break;
    case Kind::kHelo:
      if (!reply.positive())
        return Fail("helo " + code);
      ready_ = true;
      StartNext();
      break;
    case Kind::kMail:
      if (!reply.positive())
        worker_.CountError(code);
      break;
    case Kind::kRcpt:
      if (reply.positive()) {
        ++txns_.front().rcpts_ok;
      } else {
        worker_.CountError(code);
      }
      break;
    case Kind::kData:
      if (reply.code == 354) {
        SendBody(txns_.front());
        if (pipelining_ && worker_.shared().options.pipeline_next)
          StartNext();
      } else {
        FinishTxn(false, reply);
        StartNext();
      }
      break;
    case Kind::kEndOfData:
      FinishTxn(reply.positive(), reply);
      StartNext();
      break;
    case Kind::kQuit:
      Close();
      return;
  }
  if (reply.code == 421 && !closing()) {
    // The server is going away (RFC 5321 §3.8): what is in flight is lost; it closes.
    Close();
    return;
  }
  Pump();
}

void BlastConnection::Stage(Kind kind, std::string text) {
  unsent_.push_back(Command{kind, std::move(text)});
}

void BlastConnection::Pump() {
  while (!unsent_.empty()) {
    if (!expected_.empty()) {
      // Without PIPELINING: lock-step. With it, a command that must end a group (EHLO, DATA:
      // RFC 2920 §3.1) is only followed after its reply (DATA: after the data is sent).
      Kind last = expected_.back();
      if (!pipelining_ || last == Kind::kGreeting || last == Kind::kEhlo || last == Kind::kHelo ||
          last == Kind::kData) {
        break;
      }
    }
    expected_.push_back(unsent_.front().kind);
    out_ += unsent_.front().text;
    unsent_.pop_front();
  }
}

void BlastConnection::StartNext() {
  if (!ready_ || quitting_ || start_pending_ || closing())
    return;
  size_t limit = pipelining_ && worker_.shared().options.pipeline_next ? 2 : 1;
  if (txns_.size() >= limit)
    return;
  // A transaction whose data is not sent yet keeps the next one waiting (one DATA at a time).
  if (!txns_.empty() && !txns_.back().body_sent)
    return;
  std::optional<uint64_t> seq = worker_.TakeMessage();
  if (!seq) {
    if (txns_.empty() && worker_.shared().options.quit) {
      quitting_ = true;
      Stage(Kind::kQuit, "QUIT\r\n");
    } else if (txns_.empty()) {
      Close();
    }
    return;
  }
  const uint64_t at = worker_.StartAtNs();
  if (at < MonotonicNs() + 20000) {  // under 20 us away: not worth a timer
    StageTransaction(*seq);
    return;
  }
  start_pending_ = true;
  pending_seq_ = *seq;
  // The reactor's clock is CLOCK_MONOTONIC too (steady_clock): every slot of a tick gets the
  // same deadline, and one wake-up fires them all.
  const Reactor::Clock::time_point deadline{std::chrono::nanoseconds(at)};
  start_timer_ = reactor().AddTimer(deadline, [this] {
    start_timer_ = {};
    start_pending_ = false;
    StageTransaction(pending_seq_);
    Pump();
    Flush();
  });
}

void BlastConnection::StageTransaction(uint64_t seq) {
  const Options& o = worker_.shared().options;
  txns_.push_back(Txn{seq, 0, false, 0});
  char buf[160];
  std::snprintf(buf, sizeof buf, "MAIL FROM:<%s>\r\n", o.from.c_str());
  Stage(Kind::kMail, buf);
  for (uint64_t i = 0; i < o.rcpts; ++i) {
    uint64_t domain = (seq * o.rcpts + i) % o.domains;
    std::snprintf(buf, sizeof buf, "RCPT TO:<u%" PRIu64 ".%" PRIu64 "@d%" PRIu64 ".%s>\r\n", seq, i,
                  domain, o.domain_suffix.c_str());
    Stage(Kind::kRcpt, buf);
  }
  Stage(Kind::kData, "DATA\r\n");
}

void BlastConnection::SendBody(Txn& txn) {
  const Template& t = worker_.shared().Pick(txn.seq);
  size_t at = out_.size();
  out_ += t.text;
  char digits[kTimestampDigits + 1];
  std::snprintf(digits, sizeof digits, "%019" PRIu64, WallNs());
  std::memcpy(out_.data() + at + t.ts_offset, digits, kTimestampDigits);
  txn.body_sent = true;
  txn.eod_ns = MonotonicNs();
  expected_.push_back(Kind::kEndOfData);
  worker_.stats().bytes.Add(t.text.size());
  worker_.stats().in_flight.Add(1);
}

void BlastConnection::FinishTxn(bool accepted, const smtp::Reply& reply) {
  Txn txn = txns_.front();
  txns_.pop_front();
  if (txn.body_sent)
    worker_.stats().in_flight.Add(-1);
  if (accepted) {
    worker_.Accepted(MonotonicNs() - txn.eod_ns);
  } else {
    worker_.stats().failed.Add();
    worker_.CountError(std::to_string(reply.code));
  }
}

void BlastConnection::OnClosed(int error) noexcept {
  reactor().CancelTimer(start_timer_);
  // Messages whose data went out and got no answer have an unknown fate: failed. The others
  // were never offered: another connection sends them.
  for (const Txn& t : txns_) {
    if (t.body_sent) {
      worker_.stats().failed.Add();
      worker_.stats().in_flight.Add(-1);
      worker_.CountError("connection lost after data");
    } else {
      worker_.Requeue(t.seq);
    }
  }
  if (start_pending_) {
    start_pending_ = false;
    worker_.Requeue(pending_seq_);
  }
  if (error != 0 && !quitting_)
    worker_.CountError(std::string("connection: ") + std::strerror(error));
  worker_.OnConnectionClosed(this, !ready_);
}

bool ParseSizeMix(const std::string& text, Shared& shared) {
  size_t pos = 0;
  uint64_t total = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? comma : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    unsigned long long size = 0, weight = 1;
    int n = std::sscanf(item.c_str(), "%llu:%llu", &size, &weight);
    if (n < 1 || size == 0 || weight == 0)
      return false;
    shared.templates.push_back(MakeTemplate(size, shared.options));
    total += weight;
    shared.weights.push_back(total);
  }
  return !shared.templates.empty();
}

std::string ErrorsJson(const std::map<std::string, uint64_t>& errors) {
  JsonObject o;
  for (const auto& [what, n] : errors)
    o.Add(what, n);
  return o.Finish();
}

int Main(int argc, char** argv) {
  auto shared = std::make_unique<Shared>();
  Options& o = shared->options;
  FlagSet flags("spate-blast",
                "SMTP load generator on io_uring: N connections, M messages, JSON result on "
                "stdout,\nprogress on stderr.");
  flags.String("server", &o.server, "host:port to submit to");
  flags.Uint("connections", &o.connections, "connections open at once");
  flags.Uint("messages", &o.messages, "messages to send in all");
  flags.Uint("size", &o.size, "message size in octets (headers and body)");
  flags.String("size-mix", &o.size_mix, "size:weight,... e.g. 2048:9,102400:1 (overrides --size)");
  flags.Uint("rcpts", &o.rcpts, "recipients per message");
  flags.Uint("domains", &o.domains, "destination domains d0..d<K-1>.<domain-suffix>");
  flags.String("domain-suffix", &o.domain_suffix, "suffix of the destination domains");
  flags.String("from", &o.from, "envelope sender");
  flags.String("helo", &o.helo, "EHLO name");
  flags.Double("rate", &o.rate, "messages/s over all connections; 0: no limit");
  flags.Bool("pipelining", &o.pipelining, "use PIPELINING when the server offers it");
  flags.Bool("pipeline-next", &o.pipeline_next,
             "with PIPELINING, send the next MAIL/RCPT/DATA right after the end of data");
  flags.Uint("threads", &o.threads, "reactor threads, connections split between them");
  flags.Double("timeout", &o.timeout, "give up after this many seconds");
  flags.Uint("max-reconnects", &o.max_reconnects, "replacement connections allowed in all");
  flags.String("json", &o.json, "also write the JSON result to this file");
  flags.Bool("progress", &o.progress, "one progress line per second on stderr");
  flags.Bool("quit", &o.quit, "end each connection with QUIT");
  if (!flags.Parse(argc, argv))
    return 2;
  if (o.connections == 0 || o.threads == 0 || o.domains == 0 || o.rcpts == 0) {
    std::fprintf(stderr, "spate-blast: --connections, --threads, --domains, --rcpts must be > 0\n");
    return 2;
  }
  if (o.threads > o.connections)
    o.threads = o.connections;
  if (o.size_mix.empty()) {
    shared->templates.push_back(MakeTemplate(o.size, o));
    shared->weights.push_back(1);
  } else if (!ParseSizeMix(o.size_mix, *shared)) {
    std::fprintf(stderr, "spate-blast: bad --size-mix '%s'\n", o.size_mix.c_str());
    return 2;
  }
  auto addr = ParseEndpoint(o.server, &shared->addr_len);
  if (!addr) {
    std::fprintf(stderr, "spate-blast: bad --server '%s'\n", o.server.c_str());
    return 2;
  }
  shared->addr = *addr;
  log::SetLevel(log::Level::kWarn);

  // Signals go to this thread only (sigtimedwait below); the shards inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  uint64_t start_wall = WallNs();
  uint64_t start = MonotonicNs();
  std::vector<std::unique_ptr<WorkerStats>> stats;
  std::vector<std::unique_ptr<Shard>> shards;
  for (uint64_t i = 0; i < o.threads; ++i) {
    stats.push_back(std::make_unique<WorkerStats>());
    unsigned conns =
        static_cast<unsigned>(o.connections / o.threads + (i < o.connections % o.threads ? 1 : 0));
    shards.push_back(std::make_unique<Shard>(static_cast<ShardId>(i), o.threads));
    WorkerStats* st = stats.back().get();
    Shared* sh = shared.get();
    auto started = shards.back()->Start([sh, st, conns](Shard& shard) {
      auto w = std::make_unique<Worker>(shard, *sh, *st, conns);
      Worker* raw = w.get();
      shard.AddService(std::move(w));
      raw->Start();
    });
    if (!started) {
      std::fprintf(stderr, "spate-blast: io_uring: %s\n", started.error().message().c_str());
      return 1;
    }
  }

  // Progress: one line per second, and the same numbers as the JSON timeline.
  std::string timeline = "[";
  Histogram::Counts previous;
  uint64_t previous_accepted = 0;
  double previous_secs = 0;
  uint64_t next_tick = start + 1000000000u;
  bool timed_out = false;
  bool interrupted = false;
  auto total = [&](auto field) {
    uint64_t n = 0;
    for (auto& s : stats)
      n += field(*s);
    return n;
  };
  auto sample = [&](uint64_t now) {
    Histogram::Counts all;
    for (auto& s : stats) {
      Histogram::Counts c;
      s->latency.Snapshot(&c);
      all.Add(c);
    }
    Histogram::Counts interval = all;
    interval.Subtract(previous);
    previous = all;
    uint64_t accepted = total([](WorkerStats& s) { return s.accepted.Get(); });
    uint64_t failed = total([](WorkerStats& s) { return s.failed.Get(); });
    int64_t conns = 0, in_flight = 0;
    for (auto& s : stats) {
      conns += s->connections.Get();
      in_flight += s->in_flight.Get();
    }
    double secs = static_cast<double>(now - start) / 1e9;
    uint64_t delta = accepted - previous_accepted;
    previous_accepted = accepted;
    if (o.progress) {
      std::fprintf(stderr,
                   "spate-blast: %6.1fs accepted %" PRIu64 " (+%" PRIu64 "/s) failed %" PRIu64
                   " conns %" PRId64 " in-flight %" PRId64 " p50 %.2fms p99 %.2fms\n",
                   secs, accepted, delta, failed, conns, in_flight,
                   static_cast<double>(interval.Quantile(0.5)) / 1e6,
                   static_cast<double>(interval.Quantile(0.99)) / 1e6);
    }
    // A sample covers (previous, now]: usually a second, the last one less.
    JsonObject t;
    t.Add("unix", static_cast<double>(start_wall + (now - start)) / 1e9)
        .Add("elapsed", secs)
        .Add("width", secs - previous_secs)
        .Add("accepted", delta)
        .Add("p50_ms", static_cast<double>(interval.Quantile(0.5)) / 1e6)
        .Add("p99_ms", static_cast<double>(interval.Quantile(0.99)) / 1e6);
    timeline += (timeline.size() > 1 ? ", " : "") + t.Finish();
    previous_secs = secs;
  };
  uint64_t deadline = start + static_cast<uint64_t>(o.timeout * 1e9);
  while (shared->workers_done.load() < o.threads) {
    uint64_t now = MonotonicNs();
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    if (now >= next_tick) {
      sample(now);
      next_tick += 1000000000u;
    }
    timespec wait{0, 10 * 1000 * 1000};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT) {
      interrupted = true;
      break;
    }
  }
  uint64_t end = MonotonicNs();
  sample(end);
  timeline += "]";
  for (auto& s : shards)
    s->RequestStop();
  for (auto& s : shards)
    s->Join();

  Histogram::Counts latency;
  std::map<std::string, uint64_t> errors;
  uint64_t first_accept = 0, last_accept = 0;
  bool pipelining = false;
  for (auto& s : stats) {
    Histogram::Counts c;
    s->latency.Snapshot(&c);
    latency.Add(c);
    for (const auto& [what, n] : s->errors)
      errors[what] += n;
    uint64_t f = s->first_accept_ns.load();
    if (f != 0 && (first_accept == 0 || f < first_accept))
      first_accept = f;
    last_accept = std::max(last_accept, s->last_accept_ns.load());
    pipelining = pipelining || s->pipelining.load();
  }
  uint64_t accepted = total([](WorkerStats& s) { return s.accepted.Get(); });
  uint64_t failed = total([](WorkerStats& s) { return s.failed.Get(); });
  uint64_t bytes = total([](WorkerStats& s) { return s.bytes.Get(); });
  double elapsed = static_cast<double>(end - start) / 1e9;
  double accept_span =
      last_accept > first_accept ? static_cast<double>(last_accept - first_accept) / 1e9 : 0;

  JsonObject out;
  out.Add("tool", "spate-blast")
      .Add("server", o.server)
      .Add("connections", o.connections)
      .Add("threads", o.threads)
      .Add("messages_requested", o.messages)
      .Add("messages_accepted", accepted)
      .Add("messages_failed", failed)
      .Add("recipients_per_message", o.rcpts)
      .Add("domains", o.domains)
      .Add("size", o.size_mix.empty() ? std::to_string(o.size) : o.size_mix)
      .Add("rate_limit", o.rate)
      .Add("pipelining", pipelining)
      .Add("pipeline_next", pipelining && o.pipeline_next)
      .Add("bytes_sent", bytes)
      .Add("elapsed_s", elapsed)
      .Add("msgs_per_s", elapsed > 0 ? static_cast<double>(accepted) / elapsed : 0.0)
      .Add("accept_span_s", accept_span)
      .Add("start_ns", start_wall)
      .Add("first_accept_ns", first_accept)
      .Add("last_accept_ns", last_accept)
      .Raw("accept_latency_ms", latency.SummaryJson())
      .Raw("errors", ErrorsJson(errors))
      .Add("timed_out", timed_out)
      .Add("interrupted", interrupted)
      .Raw("timeline", timeline)
      .Raw("latency_cdf", latency.CdfJson());
  std::string json = out.Finish() + "\n";
  std::fwrite(json.data(), 1, json.size(), stdout);
  std::fflush(stdout);
  if (!o.json.empty() && !WriteFileAtomically(o.json, json)) {
    std::fprintf(stderr, "spate-blast: cannot write %s: %s\n", o.json.c_str(),
                 std::strerror(errno));
    return 1;
  }
  if (timed_out)
    return 3;
  return interrupted ? 130 : 0;
}

}  // namespace
}  // namespace spate::bench

int main(int argc, char** argv) {
  return spate::bench::Main(argc, argv);
}
