// bench/tools/sink_main.cc
//
// spate-sink: a fast SMTP sink on io_uring (spate's Reactor and Connection). It accepts mail,
// counts it and throws it away, and measures the end-to-end latency of each message from the
// "X-Blast-Ts:" header that spate-blast stamps (its clock is CLOCK_REALTIME, same machine).
//
// It can push back the way real receivers do: PIPELINING on or off, a delay before every reply
// and before the end-of-data reply, a probability of 4xx/5xx per RCPT and per end of data, a
// probability of dropping the connection after the data instead of answering, a cap on
// concurrent connections (421 beyond it), and "421 then close" (RFC 5321 §3.8) with a probability
// per RCPT and per end of data, or to the first RCPT of the sink's first N transactions.
//
// The parser is minimal on purpose (it serves load, it is not a conforming server): command
// lines end at LF, the data phase ends only at <CRLF>.<CRLF>; replies to a batch of pipelined
// commands go out in one write once the input at hand is consumed (RFC 2920 §3.2).
//
// Output: JSON on stdout when it exits: on SIGTERM/SIGINT, once --expect messages arrived, or
// after --duration seconds; the same JSON every second in --stats-file when given. With
// --arrivals-file, one line per accepted message at exit: "USEC CONN" (CLOCK_REALTIME µs of its
// end of data, the connection's sequence number over the sink), sorted by time.
// Threading: --threads shards (spate::Shard), each with its own SO_REUSEPORT listener; the main
// thread samples the counters every second and waits for signals.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include "bench/tools/common.h"
#include "bench/tools/histogram.h"
#include "core/connection.h"
#include "core/counter.h"
#include "core/log.h"
#include "core/shard.h"

namespace spate::bench {
namespace {

struct Options {
  std::string listen = "127.0.0.1:0";
  uint64_t threads = 1;
  bool pipelining = true;
  double reply_delay_ms = 0;
  double data_delay_ms = 0;
  double rcpt_tempfail = 0;
  double rcpt_permfail = 0;
  double data_tempfail = 0;
  double data_permfail = 0;
  double drop_after_data = 0;
  uint64_t max_connections = 0;
  double rcpt_421 = 0;
  double data_421 = 0;
  uint64_t first_421 = 0;
  std::string text_421 = "4.7.0 spate-sink: try again later";
  std::string arrivals_file;
  uint64_t expect = 0;
  double duration = 0;
  std::string stats_file;
  std::string json;
  std::string port_file;
  uint64_t seed = 1;
  bool progress = false;
};

// Counters of one shard: its writer is that shard; the main thread reads them.
struct SinkStats {
  Counter messages;
  Counter recipients;
  Counter bytes;
  Counter connections;
  Counter refused_connections;
  Counter dropped_after_data;
  Counter missing_timestamp;
  Counter rcpt_4xx, rcpt_5xx, data_4xx, data_5xx;
  Counter replies_421;  // --rcpt-421, --data-421, --first-421 and --max-connections
  Counter arrivals_dropped;
  Histogram latency;
  std::atomic<uint64_t> first_ns{0};
  std::atomic<uint64_t> last_ns{0};
  std::atomic<uint64_t> max_messages_per_connection{0};
  // --arrivals-file: (µs since the epoch, connection number) per accepted message. Written by the
  // shard; read once it has joined.
  std::vector<std::pair<uint64_t, uint64_t>> arrivals;
};

constexpr size_t kMaxArrivals = 1000000;  // per shard; beyond, counted in arrivals_dropped

struct Shared {
  Options options;
  std::atomic<int64_t> live_connections{0};
  std::atomic<int64_t> max_live{0};
  std::atomic<uint64_t> messages{0};        // over all shards, for --expect
  std::atomic<uint64_t> connection_seq{0};  // numbers the accepted connections, from 1
  std::atomic<uint64_t> transactions{0};    // first RCPTs of a transaction, for --first-421
};

class Sink;

class SinkConnection final : public Connection {
 public:
  SinkConnection(Sink& sink, int fd, uint64_t seq);
  void Begin(bool refuse);

 protected:
  void OnData(std::string_view data) noexcept override;
  void OnClosed(int error) noexcept override;

 private:
  enum class State : uint8_t { kCommand, kData, kRefused };
  void Command(std::string_view line);
  // Queues a reply to go out `delay_ns` after now (never before the replies queued earlier).
  void Reply(std::string_view text, uint64_t delay_ns);
  void Flush();
  void EndOfData();
  // "421 <--text-421>" after the replies queued so far, then close (RFC 5321 §3.8).
  void Reply421(uint64_t delay_ns);
  bool Chance(double p);

  Sink& sink_;
  uint64_t seq_;  // accept order over the sink, from 1
  State state_ = State::kCommand;
  std::string line_;
  // Data phase: how far "\r\n.\r\n" is matched (0 none, 1 "\r", 2 "\r\n", 3 "\r\n.",
  // 4 "\r\n.\r"); the data starts at a line start, so as if after "\r\n".
  int eod_ = 2;
  std::string head_;  // the first octets of the message, where the timestamp header is
  uint64_t size_ = 0;
  uint32_t rcpts_ = 0;
  bool mail_ = false;
  bool rcpt_seen_ = false;  // a RCPT came in this transaction (accepted or not)
  uint64_t messages_ = 0;   // accepted on this connection
  // Replies waiting for their time, oldest first (all at once when there is no delay).
  std::deque<std::pair<uint64_t, std::string>> delayed_;
  std::string out_;
  Reactor::TimerId timer_;
  bool quit_ = false;  // QUIT received or 421 sent: read no more, close once the replies are out
};

class Sink final : public Service {
 public:
  Sink(Shard& shard, Shared& shared, SinkStats& stats, int listen_fd, uint64_t seed)
      : shard_(shard), shared_(shared), stats_(stats), listen_fd_(listen_fd), rng_(seed) {}
  ~Sink() override { close(listen_fd_); }

  void Start() { ArmAccept(); }

  void Shutdown() noexcept override {
    stopping_ = true;
    if (accepting_)
      shard_.reactor().Cancel(accept_op_);
    std::vector<SinkConnection*> open(live_.begin(), live_.end());
    for (SinkConnection* c : open)
      c->Abort();
  }

  void Closed(SinkConnection* c) {
    live_.erase(c);
    shared_.live_connections.fetch_sub(1, std::memory_order_relaxed);
  }

  double Uniform() {  // xorshift64*: cheap, and reproducible per --seed
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return static_cast<double>((rng_ * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
  }

  Reactor& reactor() { return shard_.reactor(); }
  const Options& options() const { return shared_.options; }
  Shared& shared() { return shared_; }
  SinkStats& stats() { return stats_; }

 private:
  void ArmAccept() {
    if (stopping_)
      return;
    accepting_ = true;
    accept_op_ = shard_.reactor().Accept(listen_fd_, [this](int res) {
      accepting_ = false;
      if (res >= 0 && stopping_) {
        close(res);
        return;
      }
      if (res >= 0) {
        stats_.connections.Add();
        int64_t live = shared_.live_connections.fetch_add(1, std::memory_order_relaxed) + 1;
        bool refuse = options().max_connections != 0 &&
                      live > static_cast<int64_t>(options().max_connections);
        int64_t max = shared_.max_live.load(std::memory_order_relaxed);
        while (live > max && !shared_.max_live.compare_exchange_weak(max, live)) {
        }
        if (refuse)
          stats_.refused_connections.Add();
        uint64_t seq = shared_.connection_seq.fetch_add(1, std::memory_order_relaxed) + 1;
        auto* c = new SinkConnection(*this, res, seq);
        live_.insert(c);
        c->Begin(refuse);
      } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED && !stopping_) {
        SPATE_LOG(kWarn, "accept: %s", std::strerror(-res));
      }
      ArmAccept();
    });
  }

  Shard& shard_;
  Shared& shared_;
  SinkStats& stats_;
  int listen_fd_;
  uint64_t rng_;
  bool accepting_ = false;
  bool stopping_ = false;
  Reactor::OpId accept_op_ = 0;
  std::unordered_set<SinkConnection*> live_;
};

constexpr size_t kHeadBytes = 4096;  // the timestamp header is looked for this far in
constexpr size_t kMaxLine = 4096;

SinkConnection::SinkConnection(Sink& sink, int fd, uint64_t seq)
    : Connection(sink.reactor(), fd), sink_(sink), seq_(seq) {}

uint64_t MsToNs(double ms) {
  return ms <= 0 ? 0 : static_cast<uint64_t>(ms * 1e6);
}

void SinkConnection::Begin(bool refuse) {
  if (refuse) {
    state_ = State::kRefused;
    sink_.stats().replies_421.Add();
    Send(std::string_view("421 4.7.0 spate-sink: too many connections\r\n"));
    Close();
    return;
  }
  Reply("220 spate-sink ESMTP\r\n", MsToNs(sink_.options().reply_delay_ms));
  Flush();
  StartReading();
}

bool SinkConnection::Chance(double p) {
  return p > 0 && sink_.Uniform() < p;
}

void SinkConnection::OnData(std::string_view data) noexcept {
  const char* p = data.data();
  const char* end = p + data.size();
  while (p < end && !closing() && !quit_) {
    if (state_ == State::kData) {
      // Keep the head of the message for its timestamp header; then scan for the end.
      if (head_.size() < kHeadBytes) {
        size_t take = std::min<size_t>(kHeadBytes - head_.size(), end - p);
        head_.append(p, take);
      }
      const char* start = p;
      bool ended = false;
      while (p < end) {
        if (eod_ == 0) {
          const void* cr = std::memchr(p, '\r', end - p);
          if (cr == nullptr) {
            p = end;
            break;
          }
          p = static_cast<const char*>(cr) + 1;
          eod_ = 1;
          continue;
        }
        char c = *p++;
        switch (eod_) {
          case 1:
            eod_ = c == '\n' ? 2 : (c == '\r' ? 1 : 0);
            break;
          case 2:
            eod_ = c == '.' ? 3 : (c == '\r' ? 1 : 0);
            break;
          case 3:
            eod_ = c == '\r' ? 4 : 0;
            break;
          case 4:
            if (c == '\n') {
              ended = true;
            } else {
              eod_ = c == '\r' ? 1 : 0;
            }
            break;
        }
        if (ended)
          break;
      }
      size_ += static_cast<uint64_t>(p - start);
      if (ended)
        EndOfData();
      continue;
    }
    // Command phase: whole lines, ended by LF.
    const void* lf = std::memchr(p, '\n', end - p);
    if (lf == nullptr) {
      line_.append(p, end - p);
      if (line_.size() > kMaxLine) {
        Send(std::string_view("500 5.5.2 line too long\r\n"));
        Close();
      }
      break;
    }
    const char* next = static_cast<const char*>(lf) + 1;
    if (line_.empty()) {
      Command(std::string_view(p, next - p));
    } else {
      line_.append(p, next - p);
      Command(line_);
      line_.clear();
    }
    p = next;
  }
  Flush();
}

void SinkConnection::Command(std::string_view line) {
  const Options& o = sink_.options();
  uint64_t delay = MsToNs(o.reply_delay_ms);
  auto is = [&](const char* verb) {
    size_t n = std::strlen(verb);
    return line.size() >= n && strncasecmp(line.data(), verb, n) == 0;
  };
  if (is("MAIL")) {
    mail_ = true;
    rcpts_ = 0;
    rcpt_seen_ = false;
    Reply("250 2.1.0 Ok\r\n", delay);
  } else if (is("RCPT")) {
    bool first = mail_ && !rcpt_seen_;
    if (mail_)
      rcpt_seen_ = true;
    if (!mail_) {
      Reply("503 5.5.1 need MAIL first\r\n", delay);
    } else if (first && o.first_421 != 0 &&
               sink_.shared().transactions.fetch_add(1, std::memory_order_relaxed) < o.first_421) {
      Reply421(delay);
    } else if (Chance(o.rcpt_421)) {
      Reply421(delay);
    } else if (Chance(o.rcpt_tempfail)) {
      sink_.stats().rcpt_4xx.Add();
      Reply("451 4.3.0 spate-sink: recipient deferred\r\n", delay);
    } else if (Chance(o.rcpt_permfail)) {
      sink_.stats().rcpt_5xx.Add();
      Reply("550 5.1.1 spate-sink: recipient rejected\r\n", delay);
    } else {
      ++rcpts_;
      Reply("250 2.1.5 Ok\r\n", delay);
    }
  } else if (is("DATA")) {
    if (rcpts_ == 0) {
      Reply("554 5.5.1 no valid recipients\r\n", delay);
    } else {
      state_ = State::kData;
      eod_ = 2;
      size_ = 0;
      head_.clear();
      Reply("354 End data with <CR><LF>.<CR><LF>\r\n", delay);
    }
  } else if (is("EHLO")) {
    mail_ = false;
    Reply(o.pipelining ? "250-spate-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                         "250-SIZE 0\r\n250 ENHANCEDSTATUSCODES\r\n"
                       : "250-spate-sink\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
          delay);
  } else if (is("HELO")) {
    mail_ = false;
    Reply("250 spate-sink\r\n", delay);
  } else if (is("RSET")) {
    mail_ = false;
    rcpts_ = 0;
    Reply("250 2.0.0 Ok\r\n", delay);
  } else if (is("NOOP")) {
    Reply("250 2.0.0 Ok\r\n", delay);
  } else if (is("QUIT")) {
    Reply("221 2.0.0 Bye\r\n", delay);
    quit_ = true;
  } else {
    Reply("502 5.5.2 command not implemented\r\n", delay);
  }
}

void SinkConnection::EndOfData() {
  const Options& o = sink_.options();
  state_ = State::kCommand;
  mail_ = false;
  SinkStats& st = sink_.stats();
  if (Chance(o.drop_after_data)) {
    st.dropped_after_data.Add();
    Abort();
    return;
  }
  uint64_t delay = MsToNs(o.reply_delay_ms) + MsToNs(o.data_delay_ms);
  if (Chance(o.data_421)) {
    Reply421(delay);
    return;
  }
  if (Chance(o.data_tempfail)) {
    st.data_4xx.Add();
    Reply("451 4.3.0 spate-sink: message deferred\r\n", delay);
    return;
  }
  if (Chance(o.data_permfail)) {
    st.data_5xx.Add();
    Reply("554 5.6.0 spate-sink: message rejected\r\n", delay);
    return;
  }
  uint64_t now = WallNs();
  uint64_t ts = FindTimestamp(head_);
  if (ts != 0 && ts <= now) {
    st.latency.Record(now - ts);
  } else {
    st.missing_timestamp.Add();
  }
  st.messages.Add();
  st.recipients.Add(rcpts_);
  st.bytes.Add(size_);
  if (st.first_ns.load(std::memory_order_relaxed) == 0)
    st.first_ns.store(now, std::memory_order_relaxed);
  st.last_ns.store(now, std::memory_order_relaxed);
  sink_.shared().messages.fetch_add(1, std::memory_order_relaxed);
  ++messages_;
  if (messages_ > st.max_messages_per_connection.load(std::memory_order_relaxed))
    st.max_messages_per_connection.store(messages_, std::memory_order_relaxed);
  if (!o.arrivals_file.empty()) {
    if (st.arrivals.size() < kMaxArrivals) {
      st.arrivals.emplace_back(now / 1000, seq_);
    } else {
      st.arrivals_dropped.Add();
    }
  }
  Reply("250 2.0.0 Ok: discarded\r\n", delay);
}

void SinkConnection::Reply421(uint64_t delay_ns) {
  sink_.stats().replies_421.Add();
  Reply("421 " + sink_.options().text_421 + "\r\n", delay_ns);
  quit_ = true;
}

void SinkConnection::Reply(std::string_view text, uint64_t delay_ns) {
  if (delay_ns == 0 && delayed_.empty()) {
    out_.append(text);
    return;
  }
  uint64_t due = MonotonicNs() + delay_ns;
  if (!delayed_.empty() && delayed_.back().first > due)
    due = delayed_.back().first;  // replies keep their order
  delayed_.emplace_back(due, std::string(text));
}

void SinkConnection::Flush() {
  if (closing())
    return;
  uint64_t now = MonotonicNs();
  while (!delayed_.empty() && delayed_.front().first <= now) {
    out_ += delayed_.front().second;
    delayed_.pop_front();
  }
  if (!out_.empty()) {
    Send(std::move(out_));
    out_.clear();
  }
  if (quit_ && delayed_.empty()) {
    Close();
    return;
  }
  if (!delayed_.empty() && !timer_.valid()) {
    auto at = reactor().now() + std::chrono::nanoseconds(delayed_.front().first - now);
    timer_ = reactor().AddTimer(at, [this] {
      timer_ = {};
      Flush();
    });
  }
}

void SinkConnection::OnClosed(int /*error*/) noexcept {
  reactor().CancelTimer(timer_);
  sink_.Closed(this);
}

std::string SinkJson(const Shared& shared, const std::vector<std::unique_ptr<SinkStats>>& stats,
                     const std::string& listen, uint64_t start_wall, double elapsed,
                     const std::string& timeline, bool with_cdf) {
  auto total = [&](auto field) {
    uint64_t n = 0;
    for (const auto& s : stats)
      n += field(*s).Get();
    return n;
  };
  Histogram::Counts latency;
  uint64_t first = 0, last = 0, max_per_connection = 0;
  for (const auto& s : stats) {
    max_per_connection = std::max(max_per_connection, s->max_messages_per_connection.load());
    Histogram::Counts c;
    s->latency.Snapshot(&c);
    latency.Add(c);
    uint64_t f = s->first_ns.load();
    if (f != 0 && (first == 0 || f < first))
      first = f;
    last = std::max(last, s->last_ns.load());
  }
  uint64_t messages = total([](SinkStats& s) -> Counter& { return s.messages; });
  double span = last > first ? static_cast<double>(last - first) / 1e9 : 0;
  const Options& o = shared.options;
  JsonObject rejected;
  rejected.Add("rcpt_4xx", total([](SinkStats& s) -> Counter& { return s.rcpt_4xx; }))
      .Add("rcpt_5xx", total([](SinkStats& s) -> Counter& { return s.rcpt_5xx; }))
      .Add("data_4xx", total([](SinkStats& s) -> Counter& { return s.data_4xx; }))
      .Add("data_5xx", total([](SinkStats& s) -> Counter& { return s.data_5xx; }));
  JsonObject out;
  out.Add("tool", "spate-sink")
      .Add("listen", listen)
      .Add("threads", o.threads)
      .Add("pipelining", o.pipelining)
      .Add("messages", messages)
      .Add("recipients", total([](SinkStats& s) -> Counter& { return s.recipients; }))
      .Add("bytes", total([](SinkStats& s) -> Counter& { return s.bytes; }))
      .Add("connections", total([](SinkStats& s) -> Counter& { return s.connections; }))
      .Add("max_concurrent_connections", static_cast<uint64_t>(shared.max_live.load()))
      .Add("max_messages_per_connection", max_per_connection)
      .Add("refused_connections",
           total([](SinkStats& s) -> Counter& { return s.refused_connections; }))
      .Add("replies_421", total([](SinkStats& s) -> Counter& { return s.replies_421; }))
      .Add("dropped_after_data",
           total([](SinkStats& s) -> Counter& { return s.dropped_after_data; }))
      .Raw("rejected", rejected.Finish())
      .Add("missing_timestamp", total([](SinkStats& s) -> Counter& { return s.missing_timestamp; }))
      .Add("arrivals_dropped", total([](SinkStats& s) -> Counter& { return s.arrivals_dropped; }))
      .Add("start_ns", start_wall)
      .Add("first_message_ns", first)
      .Add("last_message_ns", last)
      .Add("elapsed_s", elapsed)
      .Add("msgs_per_s", span > 0 ? static_cast<double>(messages - 1) / span : 0.0)
      .Raw("e2e_latency_ms", latency.SummaryJson())
      .Raw("timeline", timeline + "]");
  if (with_cdf)
    out.Raw("latency_cdf", latency.CdfJson());
  return out.Finish() + "\n";
}

int Main(int argc, char** argv) {
  auto shared = std::make_unique<Shared>();
  Options& o = shared->options;
  FlagSet flags("spate-sink",
                "SMTP sink on io_uring: counts and discards mail, measures end-to-end latency "
                "from the\nX-Blast-Ts header, and pushes back on request. JSON on stdout at exit.");
  flags.String("listen", &o.listen, "host:port; port 0 picks one (see --port-file and stderr)");
  flags.Uint("threads", &o.threads, "reactor threads (SO_REUSEPORT listener each)");
  flags.Bool("pipelining", &o.pipelining, "offer PIPELINING in the EHLO reply");
  flags.Double("reply-delay-ms", &o.reply_delay_ms, "delay before every reply");
  flags.Double("data-delay-ms", &o.data_delay_ms, "extra delay before the end-of-data reply");
  flags.Double("rcpt-tempfail", &o.rcpt_tempfail, "probability of 451 to a RCPT");
  flags.Double("rcpt-permfail", &o.rcpt_permfail, "probability of 550 to a RCPT");
  flags.Double("data-tempfail", &o.data_tempfail, "probability of 451 at the end of data");
  flags.Double("data-permfail", &o.data_permfail, "probability of 554 at the end of data");
  flags.Double("drop-after-data", &o.drop_after_data,
               "probability of closing the connection at the end of data, unanswered");
  flags.Uint("max-connections", &o.max_connections, "concurrent connections, 421 beyond; 0: any");
  flags.Double("rcpt-421", &o.rcpt_421, "probability of 421 to a RCPT, then close");
  flags.Double("data-421", &o.data_421, "probability of 421 at the end of data, then close");
  flags.Uint("first-421", &o.first_421,
             "421 to the first RCPT of the sink's first N transactions (all threads), then close");
  flags.String("text-421", &o.text_421, "text of those 421 replies, after \"421 \"");
  flags.String("arrivals-file", &o.arrivals_file,
               "at exit, one line per accepted message: \"USEC CONN\" (realtime microseconds, "
               "connection number), sorted");
  flags.Uint("expect", &o.expect,
             "exit once this many messages were accepted and the clients left (or 1 s "
             "passed); 0: never");
  flags.Double("duration", &o.duration, "exit after this many seconds; 0: only on a signal");
  flags.String("stats-file", &o.stats_file, "write the JSON here every second");
  flags.String("json", &o.json, "also write the final JSON to this file");
  flags.String("port-file", &o.port_file, "write the bound port here once listening");
  flags.Uint("seed", &o.seed, "random seed for the failure probabilities");
  flags.Bool("progress", &o.progress, "one progress line per second on stderr");
  if (!flags.Parse(argc, argv))
    return 2;
  if (o.threads == 0)
    o.threads = 1;
  const std::pair<const char*, double> probabilities[] = {{"rcpt-tempfail", o.rcpt_tempfail},
                                                          {"rcpt-permfail", o.rcpt_permfail},
                                                          {"data-tempfail", o.data_tempfail},
                                                          {"data-permfail", o.data_permfail},
                                                          {"drop-after-data", o.drop_after_data},
                                                          {"rcpt-421", o.rcpt_421},
                                                          {"data-421", o.data_421}};
  for (const auto& [name, p] : probabilities) {
    if (!(p >= 0 && p <= 1)) {
      std::fprintf(stderr, "spate-sink: --%s must be in 0..1\n", name);
      return 2;
    }
  }
  if (o.text_421.find_first_of("\r\n") != std::string::npos) {
    std::fprintf(stderr, "spate-sink: --text-421 must be one line\n");
    return 2;
  }
  socklen_t len = 0;
  auto addr = ParseEndpoint(o.listen, &len);
  if (!addr) {
    std::fprintf(stderr, "spate-sink: bad --listen '%s'\n", o.listen.c_str());
    return 2;
  }
  log::SetLevel(log::Level::kWarn);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // One listener per thread on the same port; port 0 picks it once.
  sockaddr_storage bind_addr = *addr;
  std::vector<int> fds;
  for (uint64_t i = 0; i < o.threads; ++i) {
    auto fd = Listen(bind_addr, len, /*reuse_port=*/true);
    if (!fd) {
      std::fprintf(stderr, "spate-sink: cannot listen on %s: %s\n", o.listen.c_str(),
                   fd.error().message().c_str());
      return 1;
    }
    if (i == 0) {
      int port = LocalPort(*fd);
      if (bind_addr.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&bind_addr)->sin_port = htons(port);
      } else {
        reinterpret_cast<sockaddr_in6*>(&bind_addr)->sin6_port = htons(port);
      }
    }
    fds.push_back(*fd);
  }
  std::string listen = FormatAddress(bind_addr);

  std::vector<std::unique_ptr<SinkStats>> stats;
  std::vector<std::unique_ptr<Shard>> shards;
  for (uint64_t i = 0; i < o.threads; ++i) {
    stats.push_back(std::make_unique<SinkStats>());
    shards.push_back(std::make_unique<Shard>(static_cast<ShardId>(i), o.threads));
    SinkStats* st = stats.back().get();
    Shared* sh = shared.get();
    int fd = fds[i];
    uint64_t seed = o.seed * 0x9e3779b97f4a7c15ull + i + 1;
    auto started = shards.back()->Start([sh, st, fd, seed](Shard& shard) {
      auto s = std::make_unique<Sink>(shard, *sh, *st, fd, seed);
      Sink* raw = s.get();
      shard.AddService(std::move(s));
      raw->Start();
    });
    if (!started) {
      std::fprintf(stderr, "spate-sink: io_uring: %s\n", started.error().message().c_str());
      return 1;
    }
  }
  // Ready: the port is bound and every shard is accepting.
  std::fprintf(stderr, "spate-sink: listening on %s\n", listen.c_str());
  if (!o.port_file.empty()) {
    WriteFileAtomically(o.port_file, std::to_string(LocalPort(fds[0])) + "\n");
  }

  uint64_t start_wall = WallNs();
  uint64_t start = MonotonicNs();
  uint64_t next_tick = start + 1000000000u;
  uint64_t previous = 0;
  double previous_secs = 0;
  std::string timeline = "[";
  auto elapsed = [&](uint64_t now) { return static_cast<double>(now - start) / 1e9; };
  // One sample covers (previous sample, now]: a second, except the last one at exit.
  auto sample = [&](uint64_t now) {
    uint64_t messages = 0;
    for (auto& s : stats)
      messages += s->messages.Get();
    JsonObject t;
    t.Add("unix", static_cast<double>(start_wall + (now - start)) / 1e9)
        .Add("elapsed", elapsed(now))
        .Add("width", elapsed(now) - previous_secs)
        .Add("messages", messages - previous);
    timeline += (timeline.size() > 1 ? ", " : "") + t.Finish();
    if (o.progress) {
      std::fprintf(stderr, "spate-sink: %6.1fs messages %" PRIu64 " (+%" PRIu64 ")\n", elapsed(now),
                   messages, messages - previous);
    }
    previous = messages;
    previous_secs = elapsed(now);
  };
  uint64_t deadline = o.duration > 0 ? start + static_cast<uint64_t>(o.duration * 1e9) : 0;
  std::string reason = "signal";
  uint64_t expect_met = 0;  // when --expect was reached
  for (;;) {
    uint64_t now = MonotonicNs();
    if (o.expect != 0 && shared->messages.load() >= o.expect) {
      // The last replies may still be on their way (or delayed): let the clients finish and
      // leave, for up to a second, so no client loses the 250 of a message counted here.
      if (expect_met == 0)
        expect_met = now;
      if (shared->live_connections.load() == 0 || now - expect_met > 1000000000u) {
        reason = "expect";
        break;
      }
    }
    if (deadline != 0 && now >= deadline) {
      reason = "duration";
      break;
    }
    if (now >= next_tick) {
      sample(now);
      next_tick += 1000000000u;
      if (!o.stats_file.empty()) {
        WriteFileAtomically(o.stats_file, SinkJson(*shared, stats, listen, start_wall, elapsed(now),
                                                   timeline, false));
      }
    }
    // Short waits while --expect is near, so the exit follows the last message closely.
    timespec wait{0, 2 * 1000 * 1000};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGTERM || sig == SIGINT)
      break;
  }
  uint64_t end = MonotonicNs();
  sample(end);
  for (auto& s : shards)
    s->RequestStop();
  for (auto& s : shards)
    s->Join();
  int status = 0;
  // Before the JSON, so the arrivals are there once the JSON is.
  if (!o.arrivals_file.empty()) {
    std::vector<std::pair<uint64_t, uint64_t>> all;
    for (auto& s : stats)
      all.insert(all.end(), s->arrivals.begin(), s->arrivals.end());
    std::sort(all.begin(), all.end());
    std::string text;
    text.reserve(all.size() * 24);
    char line[48];
    for (const auto& [usec, conn] : all) {
      int n = std::snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 "\n", usec, conn);
      text.append(line, static_cast<size_t>(n));
    }
    if (!WriteFileAtomically(o.arrivals_file, text)) {
      std::fprintf(stderr, "spate-sink: cannot write %s: %s\n", o.arrivals_file.c_str(),
                   std::strerror(errno));
      status = 1;  // the JSON goes out anyway
    }
  }
  std::string json = SinkJson(*shared, stats, listen, start_wall, elapsed(end), timeline, true);
  // Why it stopped, as the last field.
  json.insert(json.size() - 2, ", \"exit\": " + JsonString(reason));
  std::fwrite(json.data(), 1, json.size(), stdout);
  std::fflush(stdout);
  if (!o.stats_file.empty())
    WriteFileAtomically(o.stats_file, json);
  if (!o.json.empty() && !WriteFileAtomically(o.json, json)) {
    std::fprintf(stderr, "spate-sink: cannot write %s: %s\n", o.json.c_str(), std::strerror(errno));
    return 1;
  }
  return status;
}

}  // namespace
}  // namespace spate::bench

int main(int argc, char** argv) {
  return spate::bench::Main(argc, argv);
}
