// bench/micro/micro_bench.cc
//
// Google Benchmark micro-benchmarks of the hot paths: SMTP command parsing and the data phase
// (server session), dot-stuffing (client), reply parsing, a spool commit batch (real RocksDB,
// synced and not), a cross-shard message (reactor inbox + eventfd wake-up, round trip), the
// delivery scheduler (jobs in and out of its time buckets) and the dispatcher's split of a
// message by domain.
// Run: make micro-bench   (not part of the test suite: numbers, not verdicts).
#include <atomic>
#include <deque>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <stdlib.h>

#include <benchmark/benchmark.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "core/allocator.h"
#include "core/clock.h"
#include "core/dkim/dkim.h"
#include "core/reactor.h"
#include "core/smtp/reply_parser.h"
#include "core/smtp/server_session.h"
#include "delivery/dispatcher.h"
#include "delivery/dot_stuff.h"
#include "delivery/scheduler.h"
#include "queue/spool.h"

namespace spate {
namespace {

std::string Body(size_t size) {
  std::string body = "From: a@b.test\r\nTo: c@d.test\r\nSubject: bench\r\n\r\n";
  std::string line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\r\n";
  size_t n = 0;
  while (body.size() < size) {
    // Every 20th line starts with a dot, so stuffing has something to do.
    body += (++n % 20 == 0) ? "." + line : line;
  }
  return body;
}

std::string Stuffed(const std::string& body) {
  std::string out;
  delivery::AppendDotStuffed(out, body);
  return out;
}

smtp::ServerSession::Options SessionOptions() {
  smtp::ServerSession::Options o;
  o.hostname = "bench.test";
  o.client_may_relay = true;
  return o;
}

// One pipelined transaction (MAIL, RCPT, DATA, body) through the server session, committed.
// DKIM (issue 12): one Sign() of a 2 KB message, what each signing worker pays per message.
// Arg 0: Ed25519 (RFC 8032 §7.1's test key); 1: RSA-2048, a key made for the run.
std::string RsaPem(int bits) {
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  BN_set_word(e.get(), RSA_F4);
  RSA_generate_key_ex(rsa.get(), bits, e.get(), nullptr);
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_RSAPrivateKey(bio.get(), rsa.get(), nullptr, nullptr, 0, nullptr, nullptr);
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio.get(), &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

void BM_DkimSign(benchmark::State& state) {
  dkim::KeySpec spec;
  spec.domain = "b.test";
  spec.selector = "s1";
  spec.key_file = "bench.pem";
  const std::string pem =
      state.range(0) == 0 ? std::string(
                                "-----BEGIN PRIVATE KEY-----\n"
                                "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
                                "-----END PRIVATE KEY-----\n")
                          : RsaPem(2048);
  std::string error;
  std::optional<dkim::Signer> signer = dkim::Signer::CreateFromPem({spec}, {pem}, &error);
  if (!signer) {
    state.SkipWithError(error.c_str());
    return;
  }
  const std::string message = Body(2 << 10);
  for (auto _ : state)
    benchmark::DoNotOptimize(signer->Sign(message, 1764600000));
  state.SetLabel(state.range(0) == 0 ? "ed25519-sha256" : "rsa-sha256 2048");
}
BENCHMARK(BM_DkimSign)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_ServerTransaction(benchmark::State& state) {
  std::string body = Stuffed(Body(static_cast<size_t>(state.range(0))));
  std::string txn =
      "MAIL FROM:<sender@campaign.test> BODY=8BITMIME\r\nRCPT TO:<user@dest.test>\r\n"
      "DATA\r\n" +
      body;
  smtp::ServerSession session(SessionOptions());
  session.Start();
  session.Feed("EHLO client.test\r\n");
  (void)session.TakeOutput();
  for (auto _ : state) {
    session.Feed(txn);
    auto m = session.TakeMessage();
    benchmark::DoNotOptimize(m);
    session.OnCommitted(std::string("0123456789abcdef"));
    benchmark::DoNotOptimize(session.TakeOutput());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * txn.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ServerTransaction)->Arg(2 << 10)->Arg(100 << 10);

// Command parsing alone: RSET/NOOP pairs pipelined in one chunk.
void BM_ServerCommands(benchmark::State& state) {
  std::string cmds;
  for (int i = 0; i < 64; ++i)
    cmds += "NOOP\r\nRSET\r\n";
  smtp::ServerSession session(SessionOptions());
  session.Start();
  session.Feed("EHLO client.test\r\n");
  for (auto _ : state) {
    session.Feed(cmds);
    benchmark::DoNotOptimize(session.TakeOutput());
  }
  state.SetItemsProcessed(state.iterations() * 128);
}
BENCHMARK(BM_ServerCommands);

void BM_DotStuff(benchmark::State& state) {
  std::string body = Body(static_cast<size_t>(state.range(0)));
  std::string out;
  for (auto _ : state) {
    out.clear();
    delivery::AppendDotStuffed(out, body);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_DotStuff)->Arg(2 << 10)->Arg(100 << 10);

void BM_ReplyParser(benchmark::State& state) {
  std::string replies =
      "250-mx.dest.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250 8BITMIME\r\n"
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
      "250 2.0.0 Ok: queued as 4Xyz\r\n";
  smtp::ReplyParser parser;
  for (auto _ : state) {
    std::string_view in = replies;
    while (!in.empty()) {
      auto used = parser.Feed(in);
      in.remove_prefix(*used);
      benchmark::DoNotOptimize(parser.TakeReply());
    }
  }
  state.SetItemsProcessed(state.iterations() * 5);
}
BENCHMARK(BM_ReplyParser);

// A spool in a fresh directory under /tmp, recovered and started; removed with the directory.
class BenchSpool {
 public:
  explicit BenchSpool(bool sync) {
    char dir[] = "/tmp/spate-bench-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      error_ = "mkdtemp";
      return;
    }
    dir_ = dir;
    queue::Spool::Options options;
    options.path = dir_;
    options.sync = sync;
    auto spool = queue::Spool::Open(options, &error_);
    if (!spool)
      return;
    spool_ = std::move(spool).value();
    (void)spool_->Recover([](queue::RecoveredMessage&&) {});
    spool_->Start();
  }
  ~BenchSpool() {
    spool_.reset();
    if (!dir_.empty())
      std::filesystem::remove_all(dir_);
  }
  queue::Spool* get() const { return spool_.get(); }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  std::string error_;
  std::unique_ptr<queue::Spool> spool_;
};

// A commit batch of `range(0)` 2 KB messages, synced (range(1) = 1) or not.
void BM_SpoolCommitBatch(benchmark::State& state) {
  BenchSpool bench(state.range(1) == 1);
  queue::Spool* const spool = bench.get();
  if (spool == nullptr)
    return state.SkipWithError(bench.error().c_str());
  std::string body = Body(2 << 10);
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::promise<void> done;
    std::atomic<int> left{batch};
    // All requests are queued before the commit thread wakes up: one synced write per batch
    // (approximately: the first may go alone while the rest gather).
    for (int i = 0; i < batch; ++i) {
      queue::NewMessage m;
      m.mail_from = "sender@campaign.test";
      m.rcpt_to = {"user@dest.test"};
      m.body = body;
      spool->Accept(std::move(m), [&](Result<queue::MessageId>, queue::NewMessage&&) {
        if (--left == 0)
          done.set_value();
      });
    }
    done.get_future().wait();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["batches"] = static_cast<double>(spool->stats().batches);
}
BENCHMARK(BM_SpoolCommitBatch)
    ->Args({1, 1})
    ->Args({64, 1})
    ->Args({64, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// The spool at work: each batch takes `range(0)` new 2 KB messages and removes as many older
// ones (their one recipient finished), interleaved as the shards send them, over a queue of
// `range(1)` messages; unsynced (the commit thread's CPU, not the disk's). The requests are
// queued while the commit thread is held in a state write's callback, so each iteration is one
// batch.
void BM_SpoolSteadyBatch(benchmark::State& state) {
  BenchSpool bench(false);
  queue::Spool* const spool = bench.get();
  if (spool == nullptr)
    return state.SkipWithError(bench.error().c_str());
  const std::string body = Body(2 << 10);
  const int batch = static_cast<int>(state.range(0));
  std::deque<queue::MessageId> queued;
  std::mutex mu;
  // One batch: the commit thread is held until every request is queued.
  auto one_batch = [&](const std::vector<queue::MessageId>& finish, int accepts) {
    std::promise<void> held;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    spool->PutState("bench/hold", "1", [&held, released] {
      held.set_value();
      released.wait();
    });
    held.get_future().wait();
    std::promise<void> done;
    std::atomic<int> left{accepts};
    for (int i = 0; i < accepts; ++i) {
      if (static_cast<size_t>(i) < finish.size())
        spool->Finish(finish[static_cast<size_t>(i)], 0);
      queue::NewMessage m;
      m.mail_from = "sender@campaign.test";
      m.rcpt_to = {"user@dest.test"};
      m.body = body;
      spool->Accept(std::move(m), [&](Result<queue::MessageId> id, queue::NewMessage&&) {
        {
          std::lock_guard lock(mu);
          if (id)
            queued.push_back(*id);
        }
        if (--left == 0)
          done.set_value();
      });
    }
    release.set_value();
    done.get_future().wait();
  };
  for (int64_t filled = 0; filled < state.range(1); filled += batch)
    one_batch({}, batch);
  for (auto _ : state) {
    std::vector<queue::MessageId> old;
    {
      std::lock_guard lock(mu);
      for (int i = 0; i < batch && !queued.empty(); ++i) {
        old.push_back(queued.front());
        queued.pop_front();
      }
    }
    one_batch(old, batch);
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["batches"] = static_cast<double>(spool->stats().batches);
}
BENCHMARK(BM_SpoolSteadyBatch)
    ->Args({64, 20000})
    ->Args({128, 384})  // the end-to-end run's: ~110 a batch, 300 connections in flight
    ->Iterations(3000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// A cross-shard message: post a task to another reactor thread, which posts the reply back.
void BM_CrossShardRoundTrip(benchmark::State& state) {
  auto a = Reactor::Create(256);
  std::promise<Reactor*> b_ready;
  std::atomic<bool> stop{false};
  std::thread b_thread([&] {
    auto b = Reactor::Create(256);
    b_ready.set_value(b->get());
    while (!stop.load())
      (*b)->RunOnce(Reactor::Clock::now() + std::chrono::milliseconds(10));
  });
  Reactor* b = b_ready.get_future().get();
  Reactor* home = a->get();
  for (auto _ : state) {
    bool back = false;
    b->Post([home, &back] { home->Post([&back] { back = true; }); });
    while (!back)
      home->RunOnce(Reactor::Clock::now() + std::chrono::milliseconds(10));
  }
  state.SetItemsProcessed(state.iterations());
  stop = true;
  b->Post([] {});
  b_thread.join();
}
BENCHMARK(BM_CrossShardRoundTrip)->UseRealTime();

// The scheduler: `range(0)` jobs deferred over the next minute, then every one released
// (the clock jumps past them). Per job: one Add and one release.
void BM_Scheduler(benchmark::State& state) {
  ManualClock clock;
  auto reactor = Reactor::Create(64, &clock);
  auto message = std::make_shared<delivery::Message>();
  message->AddRecipient("user@example.test", 0);
  const size_t n = static_cast<size_t>(state.range(0));
  size_t released = 0;
  delivery::Scheduler scheduler(**reactor, [&released](delivery::Job&&) { ++released; });
  for (auto _ : state) {
    const int64_t now = clock.WallMs();
    for (size_t i = 0; i < n; ++i) {
      delivery::Job job;
      job.message = message;
      job.recipients.push_back({0, 1});
      job.due_ms = now + 1 + static_cast<int64_t>(i * 60000 / n);
      scheduler.Add(std::move(job));
    }
    clock.Advance(std::chrono::minutes(2));
    while (scheduler.size() > 0)
      (*reactor)->RunOnce((*reactor)->now());
  }
  state.SetItemsProcessed(static_cast<int64_t>(released));
}
BENCHMARK(BM_Scheduler)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond);

// The dispatcher's work for one accepted message of `range(0)` recipients over as many
// domains, on two shards (the posted tasks are run and dropped: no engine behind them).
void BM_DispatchAccepted(benchmark::State& state) {
  auto a = Reactor::Create(64);
  auto b = Reactor::Create(64);
  delivery::Dispatcher dispatcher(2);
  dispatcher.Attach(0, a->get(), nullptr);
  dispatcher.Attach(1, b->get(), nullptr);
  const int rcpts = static_cast<int>(state.range(0));
  const std::string body = Body(2048);
  for (auto _ : state) {
    queue::NewMessage m;
    m.mail_from = "sender@campaign.test";
    for (int i = 0; i < rcpts; ++i)
      m.rcpt_to.push_back("user" + std::to_string(i) + "@d" + std::to_string(i) + ".test");
    m.body = body;
    dispatcher.DispatchAccepted(1, std::move(m));
    state.PauseTiming();
    // Drop the posted tasks without running them (no Delivery is attached).
    a = Reactor::Create(64);
    b = Reactor::Create(64);
    dispatcher.Attach(0, a->get(), nullptr);
    dispatcher.Attach(1, b->get(), nullptr);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rcpts);
}
BENCHMARK(BM_DispatchAccepted)->Arg(1)->Arg(10)->Arg(100);

}  // namespace
}  // namespace spate

// The daemon's allocator settings (core/allocator.h), so the numbers are the ones spate gets.
int main(int argc, char** argv) {
  spate::TuneAllocator();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
