// core/daemon/main.cc
//
// The spate daemon: reads the configuration (mapped onto each module's Options by options.h),
// opens the spool, starts one shard per core with its submission listener and its delivery
// engine, recovers the spool into the running engines, serves /metrics, and on SIGTERM or SIGINT
// stops in order (shards, then the spool) so that nothing accepted is lost.
// The daemon is the only code that includes every module and wires them together.

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "core/allocator.h"
#include "core/auth/credentials.h"
#include "core/auth/verifier.h"
#include "core/connection.h"
#include "core/daemon/admin.h"
#include "core/daemon/admin_api.h"
#include "core/daemon/config.h"
#include "core/daemon/ctl_command.h"
#include "core/daemon/inject_api.h"
#include "core/daemon/options.h"
#include "core/daemon/suppression_command.h"
#include "core/daemon/track_command.h"
#include "core/journal.h"
#include "core/log.h"
#include "core/server/signing.h"
#include "core/server/submission.h"
#include "core/shard.h"
#include "core/tls/tls.h"
#include "delivery/accounting.h"
#include "delivery/bounce_class.h"
#include "delivery/cluster.h"
#include "delivery/cluster_sync.h"
#include "delivery/delivery.h"
#include "delivery/dispatcher.h"
#include "delivery/mta_sts_policies.h"
#include "delivery/spool_port.h"
#include "delivery/stats.h"
#include "delivery/tlsrpt.h"
#include "metrics/exporter.h"
#include "queue/spool.h"
#include "queue/suppression.h"

#include <nlohmann/json.hpp>

namespace spate {
namespace {

constexpr const char* kUsage =
    "usage: spate [--config FILE] [--spool DIR] [--shards N] [--listen HOST:PORT]\n"
    "             [--metrics HOST:PORT] [--check-config] [--print-default-config]\n"
    "       spate --hash-password [USER] < password\n"
    "       spate suppression export|import FILE|remove ADDRESS [--config FILE] [--spool DIR]\n"
    "       spate track ID [--config FILE] [--spool DIR] [--records FILE]\n"
    "       spate ctl [--admin HOST:PORT] [--token-file FILE] [--json] COMMAND  (spate ctl "
    "--help)\n"
    "  Without --config, spate runs on its embedded default configuration\n"
    "  (deploy/spate.toml): submission on 127.0.0.1:2525, metrics on 127.0.0.1:9464.\n"
    "  --hash-password reads a password (its first line) from stdin and prints the\n"
    "  line for the [auth] users_file.\n";

// The accounting records go to the journal (core/journal.h): formatted on the caller's thread
// (a shard, the commit thread), written by the journal's.
class JournalAccounting final : public delivery::Accounting {
 public:
  explicit JournalAccounting(Journal& journal) : journal_(journal) {}
  void Write(const delivery::Record& record) override {
    journal_.Append(delivery::FormatRecord(record));
  }

 private:
  Journal& journal_;
};

// One shard's histogram into the scrape's sum.
void AddHistogram(metrics::HistogramSample* to, const Histogram& h) {
  std::vector<double> bounds(h.bounds().begin(), h.bounds().end());
  std::vector<uint64_t> counts;
  uint64_t count = 0;  // the buckets' sum, so that +Inf is the count even mid-write
  for (size_t i = 0; i <= bounds.size(); ++i) {
    counts.push_back(h.bucket(i));
    count += counts.back();
  }
  to->Add(bounds, counts, count, h.sum());
}

bool ReadFile(const std::string& path, std::string* out, std::string* error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    *error = std::strerror(errno);
    return false;
  }
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
    out->append(buf, n);
  const bool ok = std::ferror(f) == 0;
  std::fclose(f);
  if (!ok)
    *error = "read error";
  return ok;
}

// `spate --hash-password [USER]`: prints "USER:$pbkdf2-sha256$..." (or only the hash).
int HashPasswordCommand(const std::string& user) {
  if (user.find_first_of(": \t\r\n") != std::string::npos) {
    std::fputs("spate: --hash-password: a user name has no ':' or blanks\n", stderr);
    return 2;
  }
  // One line, so that typing it at a terminal ends with Enter (it is echoed: pipe it instead).
  std::string password;
  for (int c; (c = std::getchar()) != EOF && c != '\n' && password.size() < 4096;)
    password += static_cast<char>(c);
  if (!password.empty() && password.back() == '\r')
    password.pop_back();
  if (password.empty()) {
    std::fputs("spate: --hash-password: no password on stdin\n", stderr);
    return 2;
  }
  std::string hash = auth::HashPassword(password);
  std::printf("%s%s%s\n", user.c_str(), user.empty() ? "" : ":", hash.c_str());
  return 0;
}

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
    } else if (a == "--hash-password") {
      std::string user;
      if (i + 1 < argc && argv[i + 1][0] != '-')
        user = argv[++i];
      std::exit(HashPasswordCommand(user));
    } else if (a == "--print-default-config") {
      std::fwrite(DefaultConfigText().data(), 1, DefaultConfigText().size(), stdout);
      std::exit(0);
    } else {
      return false;
    }
  }
  return true;
}

// Opens `count` SO_REUSEPORT sockets on `endpoint` into `fds`; `bound` gets the address with
// the port picked for port 0.
bool ListenOnShards(const Endpoint& endpoint, unsigned count, std::vector<int>* fds,
                    sockaddr_storage* bound) {
  fds->clear();
  *bound = endpoint.addr;
  for (unsigned i = 0; i < count; ++i) {
    auto fd = Listen(*bound, endpoint.len, /*reuse_port=*/true);
    if (!fd) {
      std::fprintf(stderr, "spate: cannot listen on %s: %s\n", endpoint.text.c_str(),
                   fd.error().message().c_str());
      return false;
    }
    if (i == 0) {
      int port = LocalPort(*fd);
      if (bound->ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(bound)->sin_port = htons(port);
      } else {
        reinterpret_cast<sockaddr_in6*>(bound)->sin6_port = htons(port);
      }
    }
    fds->push_back(*fd);
  }
  return true;
}

int Run(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "suppression") == 0)
    return daemon::SuppressionCommand(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "track") == 0)
    return daemon::TrackCommand(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "ctl") == 0)
    return daemon::CtlCommand(argc - 1, argv + 1);
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string error;
  auto config_or = LoadConfig(flags.config_path, &error);
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
  // The certificate, key and users file are read now: a bad one stops the start (and fails
  // --check-config) with the file's name.
  std::unique_ptr<tls::TlsContext> tls_context;
  if (!config.tls_certificate.empty()) {
    auto ctx = tls::TlsContext::CreateServer(config.tls_certificate, config.tls_key, &error);
    if (!ctx) {
      std::fprintf(stderr, "spate: [tls] %s\n", error.c_str());
      return 2;
    }
    tls_context = std::move(ctx).value();
  }
  // Outbound STARTTLS: one client context for every shard, with the roots "verify" trusts. A
  // missing roots file stops the start only when some domain is to be verified.
  std::unique_ptr<tls::TlsContext> client_tls;
  {
    bool verify = config.delivery_tls == "verify";
    for (const auto& [domain, mode] : config.tls_policy)
      verify = verify || mode == "verify";
    auto ctx = tls::TlsContext::CreateClient(config.tls_ca_file, &error);
    if (!ctx && verify) {
      std::fprintf(stderr, "spate: [delivery] tls_ca_file: %s\n", error.c_str());
      return 2;
    }
    if (!ctx)
      ctx = tls::TlsContext::CreateClient("", &error);
    if (ctx)
      client_tls = std::move(ctx).value();
  }
  std::unique_ptr<auth::CredentialStore> users;
  if (!config.auth_users_file.empty()) {
    auto store = auth::CredentialStore::Load(config.auth_users_file, &error);
    if (!store) {
      std::fprintf(stderr, "spate: [auth] users_file %s\n", error.c_str());
      return 2;
    }
    users = std::move(store).value();
  }
  // [delivery] bounce_rules: an operator's classification rules, checked now like the rest.
  std::optional<delivery::Classifier> bounce_rules;
  if (!config.bounce_rules.empty()) {
    std::string text;
    if (!ReadFile(config.bounce_rules, &text, &error) ||
        !(bounce_rules = delivery::Classifier::FromToml(text, &error))) {
      std::fprintf(stderr, "spate: [delivery] bounce_rules %s: %s\n", config.bounce_rules.c_str(),
                   error.c_str());
      return 2;
    }
  }
  // [delivery] shaping: refused (and --check-config fails) on an error; what it ignores is
  // said once, here.
  std::shared_ptr<const delivery::Shaping> shaping;
  {
    std::vector<std::string> warnings;
    if (!daemon::LoadShaping(config, &shaping, &error, &warnings)) {
      std::fprintf(stderr, "spate: [delivery] shaping %s\n", error.c_str());
      return 2;
    }
    for (const std::string& w : warnings)
      std::fprintf(stderr, "spate: [delivery] shaping warning: %s\n", w.c_str());
  }
  // [[dkim]]: every key read now; a missing or bad one stops the start, naming its file.
  std::shared_ptr<const dkim::Signer> signer;
  if (!config.dkim.empty()) {
    std::optional<dkim::Signer> made = dkim::Signer::Create(config.dkim, &error);
    if (!made) {
      std::fprintf(stderr, "spate: [[dkim]] %s\n", error.c_str());
      return 2;
    }
    signer = std::make_shared<const dkim::Signer>(std::move(*made));
  }
  // [dns] trust_anchor_file: read by every shard's resolver; a missing one stops the start here
  // rather than leave MX routing off (and DANE with it) on every shard.
  if (!config.dns_trust_anchor_file.empty() &&
      access(config.dns_trust_anchor_file.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "spate: [dns] trust_anchor_file %s: %s\n",
                 config.dns_trust_anchor_file.c_str(), std::strerror(errno));
    return 2;
  }
  // [dns] trust_ad: an AD bit is worth only what the path to the resolver is (RFC 4035 §4.9.3).
  if (config.dns_trust_ad) {
    for (const std::string& ns : config.dns_nameservers) {
      if (ns.rfind("127.", 0) != 0)
        SPATE_LOG(kWarn,
                  "[dns] trust_ad: nameserver %s is not on loopback; its AD bit is "
                  "trusted over the network",
                  ns.c_str());
    }
  }
  // [cluster] redis_password_file: read once, here; a missing or empty one stops the start.
  std::string redis_password;
  if (!config.cluster_redis.empty() && !config.cluster_redis_password_file.empty()) {
    std::string why;
    if (!ReadFile(config.cluster_redis_password_file, &redis_password, &why)) {
      std::fprintf(stderr, "spate: [cluster] redis_password_file %s: %s\n",
                   config.cluster_redis_password_file.c_str(), why.c_str());
      return 2;
    }
    while (!redis_password.empty() &&
           std::isspace(static_cast<unsigned char>(redis_password.back())))
      redis_password.pop_back();
    if (redis_password.empty()) {
      std::fprintf(stderr, "spate: [cluster] redis_password_file %s is empty\n",
                   config.cluster_redis_password_file.c_str());
      return 2;
    }
  }
  // [server] max_connections_per_client and [auth] max_failures, counted across all shards
  // (core/server/submission.h).
  server::ClientConnections client_connections(config.max_connections_per_client);
  server::AuthFailures auth_failures(
      config.auth_max_failures, std::chrono::duration_cast<server::AuthFailures::Clock::duration>(
                                    config.auth_failure_window));
  if (flags.check) {
    std::printf("configuration ok\n");
    return 0;
  }
  log::SetLevel(config.log_level == "debug"   ? log::Level::kDebug
                : config.log_level == "warn"  ? log::Level::kWarn
                : config.log_level == "error" ? log::Level::kError
                                              : log::Level::kInfo);

  // Every connection is a descriptor: take all the kernel allows this process (systemd and
  // shells often start it at a soft limit of 1,024).
  if (rlimit nofile{};
      getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  // Signals are taken by sigwait() on this thread only; every thread started below inherits
  // the mask. SIGPIPE is ignored: a peer that goes away is an error code, not a death.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Log lines from here on go through the writer thread (core/log.h): no reactor waits on
  // stderr. It goes last, after every other thread, and writes what is still queued.
  log::StartWriter();
  struct LogWriterStop {
    ~LogWriterStop() { log::StopWriter(); }
  } log_writer_stop;
  signal(SIGPIPE, SIG_IGN);

  // Passwords are checked on these threads, never on a shard's (started after the signal mask
  // is set, so they inherit it). Stopped after the shards, before the users go.
  std::unique_ptr<auth::Verifier> verifier;
  if (users)
    verifier = std::make_unique<auth::Verifier>(*users, config.auth_verify_threads);
  server::Security security{tls_context.get(), verifier.get(), &client_connections, &auth_failures};

  // BoringSSL (never OpenSSL: their libssl must not share a process). TLS sessions arrive with
  // STARTTLS; the library is set up at start so a broken install fails here, not mid-session.
  CRYPTO_library_init();
  SSL_library_init();

  // The accounting records: written by the journal's thread; it outlives the shards and the
  // spool (whose threads write records too), so it is made before them.
  std::unique_ptr<Journal> journal;
  std::unique_ptr<JournalAccounting> accounting;
  if (!config.records.empty()) {
    auto j = Journal::Open(daemon::RecordsOptions(config), &error);
    if (!j) {
      std::fprintf(stderr, "spate: [log] records: %s\n", error.c_str());
      return 1;
    }
    journal = std::move(j).value();
    accounting = std::make_unique<JournalAccounting>(*journal);
  }

  std::error_code fs_error;
  std::filesystem::create_directories(config.spool_path, fs_error);
  auto spool_or = queue::Spool::Open(daemon::SpoolOptions(config), &error);
  if (!spool_or) {
    std::fprintf(stderr, "spate: %s\n", error.c_str());
    return 1;
  }
  std::unique_ptr<queue::Spool> spool = std::move(spool_or).value();
  SPATE_LOG(kInfo, "spool open: %s", config.spool_path.c_str());
  // "jemalloc 5.3.0-0-g..." or "glibc": which malloc the daemon runs on (core/allocator.h).
  SPATE_LOG(kInfo, "spate: allocator: %s%s",
            std::string_view(AllocatorName()) == "glibc" ? "" : "jemalloc ", AllocatorName());

  // One listening socket per shard on the same address (SO_REUSEPORT: the kernel spreads the
  // clients). Port 0 picks a port once; the other shards bind that same port.
  std::vector<int> listen_fds;
  sockaddr_storage listen_addr = config.listen.addr;
  if (!ListenOnShards(config.listen, config.shards, &listen_fds, &listen_addr))
    return 1;
  // [admin] listen: one socket, served by shard 0. Off the loopback only with a token.
  int admin_fd = -1;
  std::string admin_address = "off";
  std::string admin_token;
  if (!config.admin_listen.empty()) {
    socklen_t len = 0;
    auto addr = ParseEndpoint(config.admin_listen, &len);
    if (!addr) {
      std::fprintf(stderr, "spate: [admin] listen %s: want host:port\n",
                   config.admin_listen.c_str());
      return 2;
    }
    if (!config.admin_token_file.empty()) {
      if (!ReadFile(config.admin_token_file, &admin_token, &error)) {
        std::fprintf(stderr, "spate: [admin] token_file %s\n", error.c_str());
        return 2;
      }
      while (!admin_token.empty() && std::isspace(static_cast<unsigned char>(admin_token.back())))
        admin_token.pop_back();
      if (admin_token.empty()) {
        std::fprintf(stderr, "spate: [admin] token_file %s is empty\n",
                     config.admin_token_file.c_str());
        return 2;
      }
    }
    const bool loopback =
        addr->ss_family == AF_INET
            ? (ntohl(reinterpret_cast<const sockaddr_in*>(&*addr)->sin_addr.s_addr) >> 24) == 127
            : IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&*addr)->sin6_addr);
    if (!loopback && admin_token.empty()) {
      std::fprintf(stderr, "spate: [admin] listen %s is not on loopback: set [admin] token_file\n",
                   config.admin_listen.c_str());
      return 2;
    }
    auto fd = Listen(*addr, len, /*reuse_port=*/false);
    if (!fd) {
      std::fprintf(stderr, "spate: cannot listen on %s (admin): %s\n", config.admin_listen.c_str(),
                   fd.error().message().c_str());
      return 1;
    }
    admin_fd = *fd;
    sockaddr_storage bound = *addr;
    socklen_t blen = sizeof bound;
    getsockname(admin_fd, reinterpret_cast<sockaddr*>(&bound), &blen);
    admin_address = FormatAddress(bound);
  }
  // The implicit TLS port, the same way (none when not configured).
  std::vector<int> implicit_tls_fds(config.shards, -1);
  sockaddr_storage implicit_tls_addr = config.implicit_tls_listen.addr;
  if (!config.implicit_tls_listen.text.empty() &&
      !ListenOnShards(config.implicit_tls_listen, config.shards, &implicit_tls_fds,
                      &implicit_tls_addr)) {
    return 1;
  }

  // Each module's own options; the modules never see Config.
  server::Options server_options = daemon::ServerOptions(config);
  server_options.suppression = &spool->suppression();
  if (accounting) {
    delivery::Accounting* records = accounting.get();
    server_options.suppressed = [records](std::string_view sender, std::string_view recipient,
                                          const queue::SuppressionEntry& entry) {
      const std::string domain = delivery::DomainOf(recipient);
      delivery::Record rec;
      rec.type = delivery::RecordType::kSuppressed;
      rec.sender = sender;
      rec.recipient = recipient;
      rec.domain = domain;
      rec.bounce_class = entry.klass;
      rec.queued_ms = entry.since_ms;  // when it went on the list
      rec.event_ms = Clock::Real().WallMs();
      records->Write(rec);
    };
  }
  delivery::Options delivery_options = daemon::DeliveryOptions(config);
  if (bounce_rules)
    delivery_options.classifier = &*bounce_rules;
  // The static routes of each shard: replaced on its shard by a reload.
  std::vector<std::unique_ptr<delivery::StaticRouting>> routings;
  for (unsigned i = 0; i < config.shards; ++i)
    routings.push_back(daemon::MakeRouting(config));
  // Provider-wide limits, over every shard's sites of a provider.
  delivery::ProviderLimits provider_limits;
  // The queued recipients' acceptance times by domain, for the oldest-age metric.
  delivery::QueueAges queue_ages(config.metrics_max_domains);
  std::vector<delivery::Delivery*> deliveries(config.shards, nullptr);
  // Operators' suspensions and bounces, kept in the spool across restarts: in force before the
  // first recovered message is routed.
  delivery::Controls controls;
  if (size_t n = daemon::AdminApi::LoadControls(*spool, controls, Clock::Real().WallMs()); n > 0)
    SPATE_LOG(kInfo, "spate: %zu operators' suspensions and bounces in force again", n);
  std::unique_ptr<daemon::AdminApi> admin_api;
  std::unique_ptr<daemon::InjectApi> inject_api;
  server::SpoolStore spool_store(*spool);
  // Messages are signed (DKIM) on workers of their own on their way to the spool, and the 250
  // still waits for the commit.
  server::SigningStore store(spool_store, config.dkim_threads > 0
                                              ? config.dkim_threads
                                              : std::max(1u, std::thread::hardware_concurrency()));
  store.SetSigner(signer);
  // Delivery's port to the spool; the DSNs it stores go to the dispatcher like accepted mail.
  delivery::Dispatcher* dispatch_to = nullptr;
  delivery::QueueSpool delivery_spool(*spool,
                                      [&dispatch_to](queue::MessageId id, queue::NewMessage&& m) {
                                        dispatch_to->DispatchAccepted(id, std::move(m));
                                      });

  // [cluster]: what the shards' Cluster objects tell the metrics.
  delivery::ClusterShared cluster_shared;
  // [cluster]: the suppression list and the controls, shared with the other nodes through Redis
  // (delivery/cluster_sync.h); made before the shards run, started on shard 0.
  std::unique_ptr<delivery::ClusterSync> cluster_sync;
  std::vector<delivery::Delivery*> sync_deliveries(config.shards, nullptr);
  std::vector<Reactor*> sync_reactors(config.shards, nullptr);
  if (!config.cluster_redis.empty()) {
    delivery::ClusterOptions so;
    so.node = config.cluster_node;
    so.redis = config.cluster_redis_endpoint;
    so.timeout = config.cluster_timeout;
    so.redis_username = config.cluster_redis_username;
    so.redis_password = redis_password;
    std::vector<delivery::ClusterSync::Channel> channels;
    channels.push_back({"suppression", [sp = spool.get()](const std::string& key,
                                                          const std::optional<std::string>& value) {
                          sp->suppression().Apply(key, value, Clock::Real().WallMs());
                        }});
    channels.push_back(
        {"controls", [sp = spool.get(), &controls, &sync_deliveries, &sync_reactors](
                         const std::string& key, const std::optional<std::string>& value) {
           // Another node's suspension or bounce, set or lifted: here as if said here (kept in
           // the spool, in force on every shard), without being shared again.
           std::optional<delivery::Control> c =
               daemon::AdminApi::DecodeControl(key, value.value_or("{}"));
           if (!value) {
             // A lift: the key alone names it.
             c = daemon::AdminApi::DecodeControl(key, R"({"reason":"","since_ms":0,"until_ms":0})");
             if (!c || !controls.Lift(c->action, c->scope, c->name))
               return;
           } else if (!c) {
             return;
           } else {
             controls.Set(*c);
           }
           sp->PutState(key, value);
           SPATE_LOG(kInfo, "cluster: %s %s %s %s by another node",
                     std::string(delivery::ActionName(c->action)).c_str(),
                     std::string(delivery::ScopeName(c->scope)).c_str(), c->name.c_str(),
                     value ? "set" : "lifted");
           for (size_t k = 0; k < sync_reactors.size(); ++k) {
             if (sync_reactors[k] == nullptr)
               continue;
             sync_reactors[k]->Post([d = sync_deliveries[k], lifted = !value.has_value()] {
               if (lifted)
                 d->ReleaseHeld();
               else
                 d->ApplyControls();
             });
           }
         }});
    cluster_sync = std::make_unique<delivery::ClusterSync>(so, std::move(channels));
    spool->suppression().SetObserver(
        [sync = cluster_sync.get()](const std::string& key, const std::optional<std::string>& v) {
          sync->Publish(0, key, v);
        });
  }
  // spate ctl drain: set once, read by the inject API and the metrics.
  std::atomic<bool> draining{false};
  std::vector<std::unique_ptr<server::Stats>> server_stats;
  std::vector<std::unique_ptr<delivery::Stats>> delivery_stats;
  for (unsigned i = 0; i < config.shards; ++i) {
    server_stats.push_back(std::make_unique<server::Stats>());
    delivery_stats.push_back(std::make_unique<delivery::Stats>(config.metrics_max_domains));
  }

  queue::Spool* spool_ptr = spool.get();
  // DNS and MX routing figures of each shard (written by it, read by scrapes).
  std::vector<std::unique_ptr<dns::ResolverStats>> dns_stats;
  std::vector<std::unique_ptr<delivery::MxRoutingStats>> mx_stats;
  for (unsigned i = 0; i < config.shards; ++i) {
    dns_stats.push_back(std::make_unique<dns::ResolverStats>());
    mx_stats.push_back(std::make_unique<delivery::MxRoutingStats>());
  }
  auto exporter_or = metrics::Exporter::Start(
      config.metrics_listen.text,
      [&server_stats, &delivery_stats, &draining, &cluster_shared, &config, spool_ptr, &dns_stats,
       &mx_stats, &journal, &store, &queue_ages, &controls] {
        metrics::Sample sample;
        sample.shards = static_cast<unsigned>(server_stats.size());
        sample.draining = draining.load();
        if (!config.cluster_redis.empty()) {
          sample.cluster = true;
          sample.cluster_fallback = config.cluster_fallback == "hold" ? "held" : "divided";
          sample.cluster_shards_shared = cluster_shared.shards_shared.load();
          sample.cluster_shards_fallback = cluster_shared.shards_fallback.load();
          sample.cluster_nodes = cluster_shared.live_nodes.load();
          sample.cluster_redis_errors = cluster_shared.redis_errors.load();
        }
        for (const auto& s : server_stats) {
          sample.messages_received += s->messages_received.Get();
          sample.recipients_received += s->recipients_received.Get();
          sample.connections_accepted += s->connections_accepted.Get();
          sample.connections_refused += s->connections_refused.Get();
          sample.proxy_header_errors += s->proxy_header_errors.Get();
          sample.inbound_connections += s->connections_inbound.Get();
          sample.output_paused += s->output_paused.Get();
          sample.commits_failed += s->commits_failed.Get();
          sample.suppressed += s->suppressed.Get();
          AddHistogram(&sample.accept_latency, s->accept_latency);
        }
        sample.now_ms = Clock::Real().WallMs();
        queue_ages.ForEachOldest([&](const std::string& domain, int64_t ms) {
          auto [it, fresh] = sample.queue_oldest_ms.emplace(domain, ms);
          if (!fresh)
            it->second = std::min(it->second, ms);  // "other" comes once per stripe
        });
        sample.suppression_entries = spool_ptr->suppression().size();
        for (const delivery::Control& c : controls.List(sample.now_ms)) {
          sample.admin_controls[{std::string(delivery::ActionName(c.action)),
                                 std::string(delivery::ScopeName(c.scope))}] += 1;
        }
        sample.dkim_signed = store.signed_counts();
        sample.dkim_failures = store.failures();
        if (journal) {
          const Journal::Stats js = journal->stats();
          sample.records_written = js.lines;
          sample.records_dropped = js.dropped;
          sample.records_write_errors = js.write_errors;
        }
        for (const auto& d : delivery_stats) {
          d->ForEachDomain([&](const delivery::DomainStats& ds) {
            sample.domains.push_back({ds.domain, ds.delivered.Get(), ds.deferred.Get(),
                                      ds.failed.Get(), ds.queued.Get(), ds.connections.Get()});
          });
          d->ForEachDomain([&](const delivery::DomainStats& ds) {
            for (size_t k = 0; k < delivery::kBounceClassCount; ++k) {
              const std::string klass(
                  delivery::BounceClassName(static_cast<delivery::BounceClass>(k)));
              if (const uint64_t n = ds.bounces[k].Get(); n > 0)
                sample.bounces[{ds.domain, klass}] += n;
              if (const uint64_t n = ds.deferrals[k].Get(); n > 0)
                sample.deferrals[{ds.domain, klass}] += n;
            }
            if (ds.delivery_latency.count() > 0)
              AddHistogram(&sample.delivery_latency[ds.domain], ds.delivery_latency);
            for (size_t p = 0; p < 4; ++p) {
              for (size_t r = 0; r < 3; ++r) {
                if (const uint64_t n = ds.tls_policy[p][r].Get(); n > 0) {
                  sample.tls_policy[{ds.domain, delivery::kTlsPolicyNames[p],
                                     delivery::kTlsResultNames[r]}] += n;
                }
              }
            }
          });
          d->ForEachCampaign([&](const delivery::DomainStats& ds) {
            sample.campaigns.push_back({ds.domain, ds.delivered.Get(), ds.deferred.Get(),
                                        ds.failed.Get(), ds.queued.Get(), 0});
          });
          d->ForEachSite([&](const delivery::DomainStats& ds) {
            sample.sites.push_back({ds.domain, ds.delivered.Get(), ds.deferred.Get(),
                                    ds.failed.Get(), ds.queued.Get(), ds.connections.Get()});
            metrics::SiteShapingSample sh;
            sh.site = ds.domain;
            sh.connection_limit = ds.connection_limit.Get();
            sh.max_deliveries_per_connection = ds.deliveries_per_connection.Get();
            sh.max_recipients_per_batch = ds.recipients_per_batch.Get();
            sh.max_message_rate = static_cast<double>(ds.message_rate_milli.Get()) / 1000;
            sh.max_connection_rate = static_cast<double>(ds.connection_rate_milli.Get()) / 1000;
            sh.suspended = ds.suspended.Get();
            sh.suspensions = ds.suspensions.Get();
            sh.pipeline_next_refused = ds.pipeline_next_refused.Get();
            for (int p = 0; p < 19; ++p)
              sh.queued_by_priority[p] = ds.queued_by_priority[p].Get();
            sample.site_shaping.push_back(std::move(sh));
          });
          d->ForEachRule([&](const delivery::RuleStats& r) {
            sample.rules.push_back({r.site, r.rule, r.active.Get(), r.fired.Get()});
          });
          d->ForEachTls([&](const std::string& version, const std::string& cipher, uint64_t n) {
            sample.tls.sessions[{version, cipher}] += n;
          });
          sample.tls.failures += d->tls_failures.Get();
          sample.expired += d->expired.Get();
          sample.dsns += d->dsns.Get();
          sample.dsns_failed += d->dsns_failed.Get();
          sample.tls.fallbacks += d->tls_fallbacks.Get();
          sample.tls.unavailable += d->tls_unavailable.Get();
        }
        queue::SpoolStats sp = spool_ptr->stats();
        sample.spool = {sp.batches,
                        sp.accepted,
                        sp.commit_seconds,
                        sp.pending_messages,
                        sp.memtable_bytes,
                        sp.block_cache_bytes,
                        queue::HealthName(sp.health),
                        sp.free_bytes,
                        sp.refused,
                        sp.write_errors,
                        sp.outcomes_retried,
                        sp.body_log_segments,
                        sp.body_log_bytes,
                        sp.lost_bodies};
        sample.log_dropped = log::Dropped();
        for (unsigned i = 0; i < dns_stats.size(); ++i) {
          for (int t = 0; t < dns::kTypeCount; ++t) {
            for (int r = 0; r < 7; ++r)
              sample.dns.lookups[t][r] += dns_stats[i]->lookups[t][r].Get();
          }
          sample.dns.route_cache_hits += mx_stats[i]->cache_hits.Get();
          sample.dns.routes_resolved += mx_stats[i]->resolved.Get();
          sample.dns.routes_failed += mx_stats[i]->failed.Get();
        }
        return sample;
      },
      &error);
  if (!exporter_or) {
    std::fprintf(stderr, "spate: %s\n", error.c_str());
    return 1;
  }
  std::unique_ptr<metrics::Exporter> exporter = std::move(exporter_or).value();

  // Every accepted or recovered message goes through the dispatcher straight to the shards
  // that own its domains.
  // [tlsrpt]: one aggregator for every shard, written on a thread of its own.
  std::unique_ptr<delivery::tlsrpt::Reports> tls_reports;
  if (config.tlsrpt_enabled) {
    delivery::tlsrpt::Reports::Options ro;
    ro.directory = config.tlsrpt_directory;
    ro.meta = {config.tlsrpt_organization, config.tlsrpt_contact, config.hostname};
    ro.keep_days = config.tlsrpt_keep_days;
    tls_reports = std::make_unique<delivery::tlsrpt::Reports>(std::move(ro));
    tls_reports->Start();
  }
  std::vector<server::SubmissionServer*> submission_servers(config.shards, nullptr);
  std::vector<std::unique_ptr<Shard>> shards;
  delivery::Dispatcher dispatcher(static_cast<ShardId>(config.shards), config.postmaster);
  dispatch_to = &dispatcher;
  dispatcher.SetAccounting(accounting.get());
  // Without a smarthost, a domain without a route goes by its MX records (RFC 5321 §5): each
  // shard has its own resolver and routing, made on its thread and gone after its loop.
  const bool by_mx = config.smarthost_text.empty();
  std::vector<std::unique_ptr<delivery::MxRouting>> mx_routings(config.shards);
  // [cluster]: each shard's share of the fleet's limits in Redis (delivery/cluster.h).
  std::vector<std::unique_ptr<delivery::Cluster>> clusters(config.shards);
  delivery::ClusterOptions cluster_options;
  cluster_options.node = config.cluster_node;
  cluster_options.redis = config.cluster_redis_endpoint;
  cluster_options.fallback = config.cluster_fallback == "hold"
                                 ? delivery::ClusterOptions::Fallback::kHold
                                 : delivery::ClusterOptions::Fallback::kDivide;
  cluster_options.nodes = config.cluster_nodes;
  cluster_options.lease_ttl = config.cluster_lease_ttl;
  cluster_options.timeout = config.cluster_timeout;
  cluster_options.redis_username = config.cluster_redis_username;
  cluster_options.redis_password = redis_password;
  // MTA-STS: the policies in force, shared by the shards and kept in the spool's state.
  delivery::StsCache sts_cache([spool_ptr](const std::string& domain, const std::string& encoded) {
    spool_ptr->PutState("mta-sts/" + domain, encoded);
  });
  std::unique_ptr<tls::TlsContext> sts_https;
  std::vector<std::unique_ptr<delivery::StsStats>> sts_stats;
  if (by_mx && config.mta_sts_enabled) {
    auto ctx = tls::TlsContext::CreateClient(config.mta_sts_ca_file, &error);
    if (!ctx) {
      std::fprintf(stderr, "spate: [mta_sts] ca_file: %s\n", error.c_str());
      return 1;
    }
    sts_https = std::move(ctx).value();
    if (auto kept = spool->ReadState("mta-sts/")) {
      size_t n = 0;
      for (const auto& [key, value] : *kept) {
        if (sts_cache.Load(key.substr(8), value))
          ++n;
        else
          spool->PutState(key, std::nullopt);
      }
      if (n > 0)
        SPATE_LOG(kInfo, "spate: %zu MTA-STS policies kept from before", n);
    }
    for (unsigned i = 0; i < config.shards; ++i)
      sts_stats.push_back(std::make_unique<delivery::StsStats>());
  }
  const delivery::MxRouting::Options mx_options = daemon::MxRoutingOptions(config);
  const dns::Resolver::Options resolver_options = daemon::ResolverOptions(config);
  std::vector<std::string> shard_errors(config.shards);
  for (unsigned i = 0; i < config.shards; ++i) {
    shards.push_back(std::make_unique<Shard>(static_cast<ShardId>(i), config.shards));
  }
  for (unsigned i = 0; i < config.shards; ++i) {
    int fd = listen_fds[i];
    int implicit_tls_fd = implicit_tls_fds[i];
    auto started = shards[i]->Start([&, fd, implicit_tls_fd, i](Shard& shard) {
      delivery::Routing* shard_routing = routings[i].get();
      if (by_mx) {
        auto resolver = dns::Resolver::Create(shard.reactor(), resolver_options, dns_stats[i].get(),
                                              &shard_errors[i]);
        if (resolver) {
          mx_routings[i] = std::make_unique<delivery::MxRouting>(
              shard.reactor(), *routings[i], std::move(resolver).value(), mx_options,
              std::random_device{}(), mx_stats[i].get());
          if (sts_https) {
            delivery::StsPolicies::Options so;
            so.https = sts_https.get();
            so.port = static_cast<uint16_t>(config.mta_sts_port);
            so.fetch_timeout = config.mta_sts_fetch_timeout;
            so.reports = tls_reports.get();
            mx_routings[i]->SetTlsPolicySource(std::make_unique<delivery::StsPolicies>(
                shard.reactor(), mx_routings[i]->resolver(), sts_cache, so, sts_stats[i].get()));
          }
          mx_routings[i]->SetTlsReports(tls_reports.get());
          shard_routing = mx_routings[i].get();
        }
      }
      auto d = std::make_unique<delivery::Delivery>(
          shard.reactor(), delivery_options, delivery_spool, *shard_routing, *delivery_stats[i]);
      d->SetSiteOwners(&dispatcher, static_cast<ShardId>(i));
      d->SetTlsContext(client_tls.get());
      d->SetAccounting(accounting.get());
      d->SetTlsReports(tls_reports.get());
      if (!config.cluster_redis.empty()) {
        clusters[i] = std::make_unique<delivery::Cluster>(shard.reactor(), cluster_options,
                                                          cluster_shared, i);
        clusters[i]->Start();
        d->SetCluster(clusters[i].get());
        sync_deliveries[i] = d.get();
        sync_reactors[i] = &shard.reactor();
      }
      d->SetProviderLimits(&provider_limits);
      d->SetQueueAges(&queue_ages);
      d->SetControls(&controls);
      d->SetShaping(shaping);
      deliveries[i] = d.get();
      dispatcher.Attach(static_cast<ShardId>(i), &shard.reactor(), d.get());
      shard.AddService(std::move(d));
      auto s = std::make_unique<server::SubmissionServer>(
          shard.reactor(), shard.id(), shard.count(), server_options, store, *server_stats[i], fd,
          [&dispatcher](queue::MessageId id, queue::NewMessage&& m) {
            dispatcher.DispatchAccepted(id, std::move(m));
          },
          implicit_tls_fd, security);
      s->Start();
      submission_servers[i] = s.get();
      shard.AddService(std::move(s));
      if (i == 0 && admin_fd >= 0) {
        daemon::AdminApi::Context ctx;
        ctx.reactor = &shard.reactor();
        ctx.stats = &delivery_stats;
        ctx.ages = &queue_ages;
        ctx.controls = &controls;
        ctx.spool = spool_ptr;
        ctx.spool_path = config.spool_path;
        ctx.records_path = config.records;
        ctx.each_shard = [&shards, &deliveries, admin_reactor = &shard.reactor()](
                             std::function<size_t(delivery::Delivery&)> work,
                             UniqueFunction<void(size_t)> done) {
          struct Gather {
            std::atomic<size_t> sum{0};
            std::atomic<size_t> left{0};
            UniqueFunction<void(size_t)> done;
          };
          auto g = std::make_shared<Gather>();
          g->left = shards.size();
          g->done = std::move(done);
          for (size_t k = 0; k < shards.size(); ++k) {
            shards[k]->reactor().Post([g, d = deliveries[k], work, admin_reactor] {
              g->sum += work(*d);
              if (--g->left == 0)
                admin_reactor->Post([g] { g->done(g->sum.load()); });
            });
          }
        };
        if (cluster_sync) {
          ctx.share_control = [sync = cluster_sync.get()](const std::string& key,
                                                          const std::optional<std::string>& v) {
            sync->Publish(1, key, v);
          };
        }
        ctx.draining = &draining;
        ctx.server_stats = &server_stats;
        ctx.drain = [&shards, &submission_servers, &draining] {
          draining = true;
          for (size_t k = 0; k < shards.size(); ++k)
            shards[k]->reactor().Post([s = submission_servers[k]] { s->StopAccepting(); });
        };
        if (config.inject_enabled) {
          daemon::InjectApi::Options io;
          io.draining = &draining;
          io.hostname = server_options.hostname;
          io.postmaster = server_options.postmaster;
          io.campaign_header = server_options.campaign_header;
          io.campaign_priority = server_options.campaign_priority;
          io.limits.max_recipients = config.inject_max_recipients;
          io.limits.max_message_bytes = server_options.max_message_size;
          inject_api = std::make_unique<daemon::InjectApi>(
              shard.reactor(), std::move(io), store, *spool_ptr,
              [&dispatcher](queue::MessageId id, queue::NewMessage&& m) {
                dispatcher.DispatchAccepted(id, std::move(m));
              },
              [&admin_api](std::function<http::Response()> work,
                           daemon::AdminServer::Respond respond) {
                admin_api->Offload(std::move(work), std::move(respond));
              });
          if (size_t n = inject_api->LoadKeys(Clock::Real().WallMs()); n > 0)
            SPATE_LOG(kInfo, "spate: %zu idempotency keys of HTTP injection kept", n);
          ctx.inject = [api = inject_api.get()](const http::Request& r,
                                                daemon::AdminServer::Respond respond) {
            api->Handle(r, std::move(respond));
          };
        }
        admin_api = std::make_unique<daemon::AdminApi>(std::move(ctx));
        http::Limits limits;
        limits.max_body_bytes = config.inject_max_request_size;
        auto admin = std::make_unique<daemon::AdminServer>(
            shard.reactor(), admin_fd, admin_token,
            [api = admin_api.get()](const http::Request& r, daemon::AdminServer::Respond respond) {
              api->Handle(r, std::move(respond));
            },
            limits);
        admin->Start();
        shard.AddService(std::move(admin));
      }
    });
    if (!started) {
      std::fprintf(stderr, "spate: shard %u: %s\n", i, started.error().message().c_str());
      return 1;
    }
    if (!shard_errors[i].empty()) {
      // The shard runs, with static routes only: say so loudly rather than stop the MTA.
      SPATE_LOG(kError, "spate: shard %u: %s; MX routing is off on it", i, shard_errors[i].c_str());
    }
  }

  // [cluster]: the sync starts on shard 0 once every shard is set up (it applies controls on all
  // of them); the post orders those set-ups before it.
  if (cluster_sync) {
    Reactor* r = &shards[0]->reactor();
    r->Post([sync = cluster_sync.get(), r] { sync->Start(*r); });
  }
  // Recovery streams into the running engines: the first recovered message may be on its way
  // while the scan goes on. Outcomes meanwhile wait in the commit queue until Start().
  size_t recovered_msgs = 0;
  size_t recovered_rcpts = 0;
  int64_t first_due_ms = INT64_MAX;  // the earliest retry time among them
  if (auto r = spool->Recover([&](queue::RecoveredMessage&& m) {
        ++recovered_msgs;
        recovered_rcpts += m.recipients.size();
        for (const queue::PendingRecipient& p : m.recipients)
          first_due_ms = std::min(first_due_ms, p.next_attempt_ms);
        dispatcher.DispatchRecovered(std::move(m));
      });
      !r) {
    std::fprintf(stderr, "spate: spool recovery failed: %s\n", r.error().message().c_str());
    for (auto& s : shards)
      s->RequestStop();
    for (auto& s : shards)
      s->Join();
    return 1;
  }
  spool->Start();
  ReleaseFreeMemory();  // what the scan needed on the way

  const char* auth_mode = !users                                  ? "off"
                          : tls_context && !config.auth_plaintext ? "tls-only"
                                                                  : "on";
  std::string smtps;  // "smtps=ADDR " when the implicit TLS port is on
  if (!config.implicit_tls_listen.text.empty())
    smtps = "smtps=" + FormatAddress(implicit_tls_addr) + " ";
  SPATE_LOG(
      kInfo,
      "spate ready: smtp=%s %smetrics=%s:%d spool=%s shards=%u recovered_messages=%zu "
      "recovered_recipients=%zu recovered_first_due_in=%.1fs starttls=%s auth=%s records=%s "
      "dkim=%zu admin=%s",
      FormatAddress(listen_addr).c_str(), smtps.c_str(),
      config.metrics_listen.text.substr(0, config.metrics_listen.text.rfind(':')).c_str(),
      exporter->port(), config.spool_path.c_str(), config.shards, recovered_msgs, recovered_rcpts,
      recovered_rcpts == 0
          ? 0.0
          : std::max<double>(0, static_cast<double>(first_due_ms - Clock::Real().WallMs()) / 1000),
      tls_context ? "on" : "off", auth_mode,
      config.records.empty() ? "off" : config.records.c_str(), config.dkim.size(),
      admin_address.c_str());

  int sig = 0;
  // SIGHUP: the records file is opened again (after an outside rotation, logrotate's), and
  // the shaping file and the routes are read again; a file that is refused changes nothing.
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    SPATE_LOG(kInfo, "spate: SIGHUP received: reopening the records file, reloading");
    if (journal)
      journal->Reopen();
    auto next_or = LoadConfig(flags.config_path, &error);
    if (!next_or) {
      SPATE_LOG(kError, "spate: reload refused: configuration: %s; nothing changed", error.c_str());
      continue;
    }
    Config next = std::move(next_or).value();
    std::shared_ptr<const delivery::Shaping> next_shaping;
    std::vector<std::string> warnings;
    if (!daemon::LoadShaping(next, &next_shaping, &error, &warnings)) {
      SPATE_LOG(kError, "spate: reload refused: [delivery] shaping %s; the running one stays",
                error.c_str());
      continue;
    }
    std::shared_ptr<const dkim::Signer> next_signer;
    if (!next.dkim.empty()) {
      std::optional<dkim::Signer> made = dkim::Signer::Create(next.dkim, &error);
      if (!made) {
        SPATE_LOG(kError, "spate: reload refused: [[dkim]] %s; the running keys stay",
                  error.c_str());
        continue;
      }
      next_signer = std::make_shared<const dkim::Signer>(std::move(*made));
    }
    for (const std::string& w : warnings)
      SPATE_LOG(kWarn, "spate: [delivery] shaping warning: %s", w.c_str());
    store.SetSigner(next_signer);
    if (next.smarthost_text.empty() != config.smarthost_text.empty()) {
      SPATE_LOG(kWarn,
                "spate: reload: turning [delivery] smarthost on or off takes a restart (MX "
                "routing is %s); the routes are reloaded",
                by_mx ? "on" : "off");
    }
    for (unsigned i = 0; i < config.shards; ++i) {
      shards[i]->reactor().Post(
          [d = deliveries[i], r = routings[i].get(), next_shaping, routes = next.routes,
           smarthost = next.smarthost_text.empty() ? std::optional<Endpoint>()
                                                   : std::optional<Endpoint>(next.smarthost)] {
            r->Replace(routes, smarthost);
            d->SetShaping(next_shaping);
          });
    }
    SPATE_LOG(kInfo, "spate: reloaded: shaping %s (%zu providers), %zu routes%s, %zu dkim keys",
              next.shaping.empty() ? "shipped" : next.shaping.c_str(),
              next_shaping ? next_shaping->providers().size() : size_t{0}, next.routes.size(),
              next.smarthost_text.empty() ? "" : ", a smarthost", next.dkim.size());
  }
  SPATE_LOG(kInfo, "spate: %s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  for (auto& s : shards)
    s->RequestStop();
  for (auto& s : shards)
    s->Join();
  // Scrapes read the spool and every shard's counters: they stop before any of those goes.
  exporter.reset();
  // Its worker may be reading the spool, or waiting for an injection's commits (the spool
  // still runs).
  admin_api.reset();
  inject_api.reset();
  // No shard asks any more; a verdict still being computed is posted to a stopped shard and
  // dropped with it.
  verifier.reset();
  // [cluster]: nothing changes the list any more; what was not sent yet is not.
  if (cluster_sync) {
    spool_ptr->suppression().SetObserver(nullptr);
    cluster_sync.reset();
  }
  clusters.clear();
  // What is being signed goes to the spool; what waits to be signed was never answered.
  store.Stop();
  // The spool finishes every queued commit before it closes; then the shards (and the tasks the
  // spool may still have posted to them) go.
  spool.reset();
  // The shards' loops have ended (their reactors stay until shards.clear()): the routings and
  // their resolvers go now, their lookups never answered.
  mx_routings.clear();
  shards.clear();
  SPATE_LOG(kInfo, "spate: stopped");
  return 0;
}

}  // namespace
}  // namespace spate

int main(int argc, char** argv) {
  spate::TuneAllocator();
  return spate::Run(argc, argv);
}
