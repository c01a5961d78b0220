#include "core/dns/stub.h"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>

namespace spate::dns {
namespace {

// glibc keeps what it read of /etc/resolv.conf in shared state, under a lock of its own that a
// thread sanitizer cannot see: res_ninit and res_nclose one thread at a time (once per thread).
std::mutex& ResolvConfMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

struct Stub::State {
  struct Job {
    std::string query;
    Done done;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  bool stopped = false;
  std::vector<sockaddr_in> servers;  // empty: resolv.conf's
  int retrans = 3;                   // seconds, res_state::retrans
};

void Stub::Work(std::shared_ptr<State> state) {
  struct __res_state res {};
  bool ready = false;
  {
    std::lock_guard lock(ResolvConfMutex());
    ready = res_ninit(&res) == 0;
  }
  if (ready) {
    // Keep the resolver's AD bit (glibc 2.31+ clears it without RES_TRUSTAD), and answers
    // larger than 512 octets over UDP.
    res.options |= RES_TRUSTAD | RES_USE_EDNS0;
    res.retrans = state->retrans;
    res.retry = 2;
    // A SERVFAIL or REFUSED reply is handed back as it is (how a validating resolver says
    // bogus, RFC 4035 §5.5) rather than tried again and reported as a timeout: glibc's
    // res_send.c does that when pfcode is set, as for dig.
    res.pfcode = RES_PRF_REPLY;
    if (!state->servers.empty()) {
      // Patching the servers in is the documented way (resolv.h): res_nsend then uses these.
      res.nscount = static_cast<int>(state->servers.size());
      for (size_t i = 0; i < state->servers.size(); ++i)
        res.nsaddr_list[i] = state->servers[i];
    }
  }
  std::string answer(65535, '\0');
  for (;;) {
    State::Job job;
    {
      std::unique_lock lock(state->mu);
      state->cv.wait(lock, [&] { return state->stopped || !state->jobs.empty(); });
      if (state->stopped)
        break;
      job = std::move(state->jobs.front());
      state->jobs.pop_front();
    }
    std::string reply;
    std::string error;
    bool timed_out = false;
    if (!ready) {
      error = "cannot read the resolver configuration";
    } else {
      errno = 0;
      const int n = res_nsend(&res, reinterpret_cast<const unsigned char*>(job.query.data()),
                              static_cast<int>(job.query.size()),
                              reinterpret_cast<unsigned char*>(answer.data()),
                              static_cast<int>(answer.size()));
      if (n > 0) {
        reply.assign(answer.data(), static_cast<size_t>(n));
      } else {
        timed_out = errno == ETIMEDOUT || errno == 0;  // res_nsend: no answer from any server
        error = timed_out ? "no answer from the resolver" : std::strerror(errno);
      }
    }
    std::lock_guard lock(state->mu);
    if (state->stopped)
      break;  // the Stub is gone: `done` is dropped
    job.done(std::move(reply), std::move(error), timed_out);
  }
  if (ready) {
    std::lock_guard lock(ResolvConfMutex());
    res_nclose(&res);
  }
}

Result<std::unique_ptr<Stub>> Stub::Create(const Options& options, std::string* error) {
  auto state = std::make_shared<State>();
  if (options.nameservers.size() > MAXNS) {
    *error = "dns: at most " + std::to_string(MAXNS) + " nameservers with trust_ad";
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  for (const std::string& ns : options.nameservers) {
    const size_t colon = ns.rfind(':');
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    const std::string host = colon == std::string::npos ? "" : ns.substr(0, colon);
    const std::string port = colon == std::string::npos ? "" : ns.substr(colon + 1);
    if (inet_pton(AF_INET, host.c_str(), &sin.sin_addr) != 1 || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) == 0 ||
        std::stoi(port) > 65535) {
      *error = "dns: nameserver \"" + ns +
               "\" is not a.b.c.d:port (with trust_ad; IPv6 resolvers come from "
               "/etc/resolv.conf)";
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
    sin.sin_port = htons(static_cast<uint16_t>(std::stoi(port)));
    state->servers.push_back(sin);
  }
  // res_nsend waits retrans << try seconds per try (divided among the servers after the
  // first), over 2 tries: about 3 * retrans in all.
  state->retrans = std::max<int>(1, static_cast<int>(options.timeout.count() / 3));
  for (unsigned i = 0; i < std::max(1u, options.threads); ++i)
    std::thread(Work, state).detach();
  return std::unique_ptr<Stub>(new Stub(std::move(state)));
}

Stub::~Stub() {
  std::lock_guard lock(state_->mu);
  state_->stopped = true;
  state_->jobs.clear();
  state_->cv.notify_all();
}

void Stub::Send(std::string query, Done done) {
  std::lock_guard lock(state_->mu);
  state_->jobs.push_back({std::move(query), std::move(done)});
  state_->cv.notify_one();
}

}  // namespace spate::dns
