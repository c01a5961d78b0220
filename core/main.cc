// core/main.cc
//
// The spate daemon: reads the configuration, opens and recovers the spool, starts one shard per
// core with its submission listener and its delivery service, serves /metrics, and on SIGTERM
// or SIGINT stops in order (shards, then the spool) so that nothing accepted is lost.
// This is the only place that wires metrics/ to the rest.

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "core/config.h"
#include "core/connection.h"
#include "core/log.h"
#include "core/server/submission.h"
#include "core/shard.h"
#include "core/stats.h"
#include "delivery/delivery.h"
#include "metrics/exporter.h"
#include "queue/spool.h"

namespace spate {
namespace {

constexpr const char* kUsage =
    "usage: spate [--config FILE] [--spool DIR] [--shards N] [--listen HOST:PORT]\n"
    "             [--metrics HOST:PORT] [--check-config] [--print-default-config]\n"
    "  Without --config, spate runs on its embedded default configuration\n"
    "  (deploy/spate.toml): submission on 127.0.0.1:2525, metrics on 127.0.0.1:9464.\n";

struct Flags {
  std::string config_path;
  std::string spool;
  std::string listen;
  std::string metrics;
  int shards = -1;
  bool check = false;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc)
        return false;
      *out = argv[++i];
      return true;
    };
    std::string n;
    if (a == "--config") {
      if (!value(&f->config_path))
        return false;
    } else if (a == "--spool") {
      if (!value(&f->spool))
        return false;
    } else if (a == "--listen") {
      if (!value(&f->listen))
        return false;
    } else if (a == "--metrics") {
      if (!value(&f->metrics))
        return false;
    } else if (a == "--shards") {
      if (!value(&n))
        return false;
      f->shards = std::atoi(n.c_str());
      if (f->shards < 1)
        return false;
    } else if (a == "--check-config") {
      f->check = true;
    } else if (a == "--print-default-config") {
      std::fwrite(DefaultConfigText().data(), 1, DefaultConfigText().size(), stdout);
      std::exit(0);
    } else {
      return false;
    }
  }
  return true;
}

// Which shard delivers each job: the owner of its domain.
struct Router {
  std::vector<std::unique_ptr<Shard>>* shards = nullptr;
  std::vector<delivery::Delivery*> deliveries;  // written before any shard runs a job

  void Dispatch(std::vector<delivery::Job>&& jobs) {
    ShardId n = static_cast<ShardId>(shards->size());
    for (delivery::Job& job : jobs) {
      ShardId owner = OwnerOf(job.domain, n);
      delivery::Delivery* d = deliveries[owner];
      Shard* current = Shard::Current();
      if (current != nullptr && current->id() == owner) {
        d->Enqueue(std::move(job));
      } else {
        (*shards)[owner]->Post([d, job = std::move(job)]() mutable { d->Enqueue(std::move(job)); });
      }
    }
  }
};

int Run(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string error;
  auto config_or = flags.config_path.empty() ? ParseConfig(DefaultConfigText(), &error)
                                             : LoadConfigFile(flags.config_path, &error);
  if (!config_or) {
    std::fprintf(stderr, "spate: configuration: %s\n", error.c_str());
    return 2;
  }
  Config config = std::move(config_or).value();
  if (!flags.spool.empty())
    config.spool_path = flags.spool;
  if (flags.shards > 0)
    config.shards = static_cast<unsigned>(flags.shards);
  if (!flags.listen.empty()) {
    config.listen.text = flags.listen;
    auto a = ParseEndpoint(flags.listen, &config.listen.len);
    if (!a) {
      std::fprintf(stderr, "spate: --listen %s: want host:port\n", flags.listen.c_str());
      return 2;
    }
    config.listen.addr = *a;
  }
  if (!flags.metrics.empty())
    config.metrics_listen.text = flags.metrics;
  if (flags.check) {
    std::printf("configuration ok\n");
    return 0;
  }
  log::SetLevel(config.log_level == "debug"   ? log::Level::kDebug
                : config.log_level == "warn"  ? log::Level::kWarn
                : config.log_level == "error" ? log::Level::kError
                                              : log::Level::kInfo);

  // Signals are taken by sigwait() on this thread only; every thread started below inherits
  // the mask. SIGPIPE is ignored: a peer that goes away is an error code, not a death.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // BoringSSL (never OpenSSL: their libssl must not share a process). TLS sessions arrive with
  // STARTTLS; the library is set up at start so a broken install fails here, not mid-session.
  CRYPTO_library_init();
  SSL_library_init();

  std::error_code fs_error;
  std::filesystem::create_directories(config.spool_path, fs_error);
  auto spool_or = queue::Spool::Open({config.spool_path, config.spool_sync}, &error);
  if (!spool_or) {
    std::fprintf(stderr, "spate: %s\n", error.c_str());
    return 1;
  }
  std::unique_ptr<queue::Spool> spool = std::move(spool_or).value();
  std::vector<queue::RecoveredMessage> recovered;
  if (auto r =
          spool->Recover([&](queue::RecoveredMessage&& m) { recovered.push_back(std::move(m)); });
      !r) {
    std::fprintf(stderr, "spate: spool recovery failed: %s\n", r.error().message().c_str());
    return 1;
  }

  // One listening socket per shard on the same address (SO_REUSEPORT: the kernel spreads the
  // clients). Port 0 picks a port once; the other shards bind that same port.
  std::vector<int> listen_fds;
  sockaddr_storage listen_addr = config.listen.addr;
  for (unsigned i = 0; i < config.shards; ++i) {
    auto fd = Listen(listen_addr, config.listen.len, /*reuse_port=*/true);
    if (!fd) {
      std::fprintf(stderr, "spate: cannot listen on %s: %s\n", config.listen.text.c_str(),
                   fd.error().message().c_str());
      return 1;
    }
    if (i == 0) {
      int port = LocalPort(*fd);
      if (listen_addr.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&listen_addr)->sin_port = htons(port);
      } else {
        reinterpret_cast<sockaddr_in6*>(&listen_addr)->sin6_port = htons(port);
      }
    }
    listen_fds.push_back(*fd);
  }

  std::vector<std::unique_ptr<ShardStats>> stats;
  std::vector<const ShardStats*> stats_view;
  for (unsigned i = 0; i < config.shards; ++i) {
    stats.push_back(std::make_unique<ShardStats>(config.metrics_max_domains));
    stats_view.push_back(stats.back().get());
  }

  auto exporter_or = metrics::Exporter::Start(
      config.metrics_listen.text, stats_view,
      [&spool] {
        queue::SpoolStats s = spool->stats();
        return metrics::SpoolSample{s.batches, s.accepted, s.commit_seconds, s.pending_messages};
      },
      &error);
  if (!exporter_or) {
    std::fprintf(stderr, "spate: %s\n", error.c_str());
    return 1;
  }
  std::unique_ptr<metrics::Exporter> exporter = std::move(exporter_or).value();

  std::vector<std::unique_ptr<Shard>> shards;
  Router router;
  router.shards = &shards;
  router.deliveries.resize(config.shards);
  for (unsigned i = 0; i < config.shards; ++i) {
    shards.push_back(std::make_unique<Shard>(static_cast<ShardId>(i), config.shards));
  }
  queue::Spool* spool_ptr = spool.get();
  for (unsigned i = 0; i < config.shards; ++i) {
    int fd = listen_fds[i];
    auto started = shards[i]->Start([&, fd, i](Shard& shard) {
      auto d = std::make_unique<delivery::Delivery>(shard, config, *spool_ptr, *stats[i]);
      router.deliveries[i] = d.get();
      shard.AddService(std::move(d));
      auto s = std::make_unique<server::SubmissionServer>(
          shard, config, *spool_ptr, *stats[i], fd,
          [&router](queue::MessageId id, queue::NewMessage&& m) {
            std::vector<delivery::Recipient> rcpts;
            rcpts.reserve(m.rcpt_to.size());
            for (uint32_t k = 0; k < m.rcpt_to.size(); ++k) {
              rcpts.push_back({k, std::move(m.rcpt_to[k]), 0});
            }
            uint64_t size = m.body.size();
            router.Dispatch(delivery::SplitByDomain(id, m.mail_from, rcpts, m.body_8bit, size,
                                                    std::move(m.body)));
          });
      s->Start();
      shard.AddService(std::move(s));
    });
    if (!started) {
      std::fprintf(stderr, "spate: shard %u: %s\n", i, started.error().message().c_str());
      return 1;
    }
  }
  spool->Start();

  size_t recovered_rcpts = 0;
  size_t recovered_msgs = recovered.size();
  for (queue::RecoveredMessage& m : recovered) {
    std::vector<delivery::Recipient> rcpts;
    for (auto& r : m.recipients)
      rcpts.push_back({r.index, std::move(r.address), r.attempts});
    recovered_rcpts += rcpts.size();
    auto jobs =
        delivery::SplitByDomain(m.id, m.mail_from, rcpts, m.body_8bit, m.body_size, std::nullopt);
    // Recipients keep their retry time across the restart.
    for (delivery::Job& job : jobs) {
      for (const delivery::Recipient& r : job.recipients) {
        for (const queue::PendingRecipient& p : m.recipients) {
          if (p.index == r.index)
            job.due_ms = std::max(job.due_ms, p.next_attempt_ms);
        }
      }
    }
    router.Dispatch(std::move(jobs));
  }
  recovered.clear();

  SPATE_LOG(kInfo,
            "spate ready: smtp=%s metrics=%s:%d spool=%s shards=%u recovered_messages=%zu "
            "recovered_recipients=%zu",
            FormatAddress(listen_addr).c_str(),
            config.metrics_listen.text.substr(0, config.metrics_listen.text.rfind(':')).c_str(),
            exporter->port(), config.spool_path.c_str(), config.shards, recovered_msgs,
            recovered_rcpts);

  int sig = 0;
  sigwait(&signals, &sig);
  SPATE_LOG(kInfo, "spate: %s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  for (auto& s : shards)
    s->RequestStop();
  for (auto& s : shards)
    s->Join();
  // The spool finishes every queued commit before it closes; then the shards (and the tasks the
  // spool may still have posted to them) go.
  spool.reset();
  shards.clear();
  exporter.reset();
  SPATE_LOG(kInfo, "spate: stopped");
  return 0;
}

}  // namespace
}  // namespace spate

int main(int argc, char** argv) {
  return spate::Run(argc, argv);
}
