// tests/unit/auth_test.cc
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <dlfcn.h>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/mem.h>

#include "core/auth/credentials.h"
#include "core/auth/verifier.h"
#include "core/daemon/config.h"

// The work behind a verdict, seen without a clock: this binary defines the two BoringSSL
// functions that CredentialStore::Verify() costs, so credentials.cc's calls land here. Each
// records what it was asked to do and forwards to BoringSSL's own (RTLD_NEXT). While `hold` is
// set, a PBKDF2 waits in here (counted in `held`), so a test can keep the workers busy for as
// long as it needs instead of hoping a slow hash lasts long enough.
namespace {

struct Pbkdf2Call {
  std::string password;
  size_t salt_len = 0;
  unsigned iterations = 0;
  const EVP_MD* digest = nullptr;
  size_t key_len = 0;
  std::thread::id thread;
};

struct CryptoCalls {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Pbkdf2Call> pbkdf2;      // guarded by mu
  std::vector<size_t> memcmp_lengths;  // guarded by mu
  bool hold = false;                   // guarded by mu
  int held = 0;                        // guarded by mu

  void Clear() {
    std::lock_guard<std::mutex> lock(mu);
    pbkdf2.clear();
    memcmp_lengths.clear();
  }
};

CryptoCalls& Calls() {
  static CryptoCalls calls;
  return calls;
}

template <typename Fn>
Fn Real(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr)
    std::abort();
  return reinterpret_cast<Fn>(f);
}

}  // namespace

extern "C" int PKCS5_PBKDF2_HMAC(const char* password, size_t password_len, const uint8_t* salt,
                                 size_t salt_len, unsigned iterations, const EVP_MD* digest,
                                 size_t key_len, uint8_t* out_key) {
  static const auto real = Real<decltype(&PKCS5_PBKDF2_HMAC)>("PKCS5_PBKDF2_HMAC");
  {
    CryptoCalls& c = Calls();
    std::unique_lock<std::mutex> lock(c.mu);
    c.pbkdf2.push_back({std::string(password, password_len), salt_len, iterations, digest, key_len,
                        std::this_thread::get_id()});
    if (c.hold) {
      ++c.held;
      c.cv.notify_all();
      c.cv.wait(lock, [&c] { return !c.hold; });
    }
  }
  return real(password, password_len, salt, salt_len, iterations, digest, key_len, out_key);
}

extern "C" int CRYPTO_memcmp(const void* a, const void* b, size_t len) {
  static const auto real = Real<decltype(&CRYPTO_memcmp)>("CRYPTO_memcmp");
  {
    std::lock_guard<std::mutex> lock(Calls().mu);
    Calls().memcmp_lengths.push_back(len);
  }
  return real(a, b, len);
}

namespace spate::auth {
namespace {

TEST(CredentialsTest, HashThenVerify) {
  std::string hash = HashPassword("s3cret pass", 1000);
  EXPECT_EQ(hash.rfind("$pbkdf2-sha256$1000$", 0), 0u) << hash;
  EXPECT_EQ(hash.find('='), std::string::npos) << "no base64 padding: " << hash;
  EXPECT_NE(HashPassword("s3cret pass", 1000), hash) << "a fresh salt every time";

  std::string error;
  auto store = CredentialStore::Parse("# users\n\nalice:" + hash + "\r\n", &error);
  ASSERT_TRUE(store) << error;
  EXPECT_EQ((*store)->size(), 1u);
  EXPECT_TRUE((*store)->Verify("alice", "s3cret pass"));
  EXPECT_FALSE((*store)->Verify("alice", "s3cret pas"));
  EXPECT_FALSE((*store)->Verify("alice", ""));
  EXPECT_FALSE((*store)->Verify("Alice", "s3cret pass")) << "names match exactly";
  EXPECT_FALSE((*store)->Verify("bob", "s3cret pass"));
  EXPECT_FALSE((*store)->Verify("", ""));
}

// A vector made independently: Python's hashlib.pbkdf2_hmac('sha256', b'password', b'saltsalt',
// 1000), in standard base64 with padding, and in passlib's adapted alphabet ('.' for '+').
TEST(CredentialsTest, KnownVectorAndEncodings) {
  const std::string salt = "c2FsdHNhbHQ=";  // "saltsalt"
  const std::string hash = "E196ZhRPzw+wA84EjzHwJO1cv/MFJdO6C/sxmUeTYqY=";
  std::string passlib_hash = hash.substr(0, hash.size() - 1);
  for (char& c : passlib_hash) {
    if (c == '+')
      c = '.';
  }
  std::string error;
  auto store = CredentialStore::Parse("padded:$pbkdf2-sha256$1000$" + salt + "$" + hash +
                                          "\n"
                                          "passlib:$pbkdf2-sha256$1000$c2FsdHNhbHQ$" +
                                          passlib_hash + "\n",
                                      &error);
  ASSERT_TRUE(store) << error;
  EXPECT_TRUE((*store)->Verify("padded", "password"));
  EXPECT_TRUE((*store)->Verify("passlib", "password"));
  EXPECT_FALSE((*store)->Verify("padded", "Password"));
}

TEST(CredentialsTest, BadLinesAreErrorsWithTheLineNumber) {
  std::string good = "u:" + HashPassword("x", 1000) + "\n";
  struct Case {
    std::string text;
    Errc code;
    std::string where;
  } cases[] = {
      {good + "no colon here\n", Errc::kBadLine, "line 2"},
      {good + ":" + HashPassword("x", 1000) + "\n", Errc::kBadLine, "line 2"},
      {"u:plaintextpassword\n", Errc::kBadLine, "line 1"},
      {"u:$pbkdf2-sha1$1000$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA\n", Errc::kBadLine, "line 1"},
      {"u:$pbkdf2-sha256$10$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA\n", Errc::kBadLine, "line 1"},
      {"u:$pbkdf2-sha256$99999999$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA\n", Errc::kBadLine, "line 1"},
      {"u:$pbkdf2-sha256$1000x$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA\n", Errc::kBadLine, "line 1"},
      {"u:$pbkdf2-sha256$1000$c2FsdHNhbHQ$AAAA\n", Errc::kBadLine, "line 1"},  // hash too short
      {"u:$pbkdf2-sha256$1000$!!$AAAAAAAAAAAAAAAAAAAAAA\n", Errc::kBadLine, "line 1"},
      {"u:$pbkdf2-sha256$1000$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA$x\n", Errc::kBadLine, "line 1"},
      {"# c\n" + good + good, Errc::kDuplicateUser, "line 3"},
  };
  for (const Case& c : cases) {
    std::string error;
    auto store = CredentialStore::Parse(c.text, &error);
    ASSERT_FALSE(store) << c.text;
    EXPECT_EQ(store.error(), c.code) << c.text;
    EXPECT_EQ(error.rfind(c.where + ":", 0), 0u) << error;
    EXPECT_EQ(error.find("plaintextpassword"), std::string::npos) << "lines are not echoed";
  }
}

TEST(CredentialsTest, EmptyFileHasNoUsers) {
  auto store = CredentialStore::Parse("# nobody\n");
  ASSERT_TRUE(store);
  EXPECT_EQ((*store)->size(), 0u);
  EXPECT_FALSE((*store)->Verify("root", ""));
}

TEST(CredentialsTest, LoadFile) {
  std::string path = ::testing::TempDir() + "/spate_users_test";
  {
    std::ofstream f(path);
    f << "carol@example.com:" << HashPassword("pw", 1000) << "\n";
  }
  std::string error;
  auto store = CredentialStore::Load(path, &error);
  ASSERT_TRUE(store) << error;
  EXPECT_TRUE((*store)->Verify("carol@example.com", "pw"));
  std::remove(path.c_str());

  store = CredentialStore::Load(path, &error);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error(), Errc::kUnreadable);
  EXPECT_NE(error.find(path), std::string::npos) << error;
}

// An unknown user costs what a known one does: one PBKDF2 with the same parameters (against the
// dummy entry) and one constant-time comparison of a digest of the same length.
TEST(CredentialsTest, UnknownUserDoesTheWorkOfAKnownOne) {
  auto store = CredentialStore::Parse("known:" + HashPassword("pw", 5000) + "\n");
  ASSERT_TRUE(store);
  CryptoCalls& calls = Calls();
  auto verify = [&](const char* user) {
    calls.Clear();
    EXPECT_FALSE((*store)->Verify(user, "wrong"));
    std::lock_guard<std::mutex> lock(calls.mu);
    EXPECT_EQ(calls.pbkdf2.size(), 1u) << user;
    EXPECT_EQ(calls.memcmp_lengths, std::vector<size_t>{32}) << user;
    return calls.pbkdf2.empty() ? Pbkdf2Call{} : calls.pbkdf2[0];
  };
  Pbkdf2Call known = verify("known");
  Pbkdf2Call unknown = verify("unknown");
  EXPECT_EQ(known.password, "wrong");
  EXPECT_EQ(unknown.password, "wrong");
  EXPECT_EQ(known.iterations, 5000u);
  EXPECT_EQ(unknown.iterations, known.iterations);
  EXPECT_EQ(unknown.salt_len, known.salt_len);
  EXPECT_EQ(unknown.key_len, known.key_len);
  EXPECT_EQ(unknown.digest, EVP_sha256());
  EXPECT_EQ(known.digest, EVP_sha256());
}

// The dummy costs what most entries cost, so an unknown user looks like a typical known one.
TEST(CredentialsTest, UnknownUserCostsTheMostCommonIterationCount) {
  auto store = CredentialStore::Parse("a:" + HashPassword("pw", 3000) + "\n" +
                                      "b:" + HashPassword("pw", 2000) + "\n" +
                                      "c:" + HashPassword("pw", 2000) + "\n");
  ASSERT_TRUE(store);
  Calls().Clear();
  EXPECT_FALSE((*store)->Verify("nobody", "pw"));
  std::lock_guard<std::mutex> lock(Calls().mu);
  ASSERT_EQ(Calls().pbkdf2.size(), 1u);
  EXPECT_EQ(Calls().pbkdf2[0].iterations, 2000u);
}

// The daemon's default for new hashes: costly enough now that no reactor waits on it.
TEST(CredentialsTest, DefaultIterationsForNewHashes) {
  EXPECT_EQ(HashPassword("pw").rfind("$pbkdf2-sha256$100000$", 0), 0u);
  // Lines hashed at the earlier default still verify: each line names its own count.
  auto store = CredentialStore::Parse("old:" + HashPassword("pw", 10000) +
                                      "\nnew:" + HashPassword("pw") + "\n");
  ASSERT_TRUE(store);
  EXPECT_TRUE((*store)->Verify("old", "pw"));
  EXPECT_TRUE((*store)->Verify("new", "pw"));
}

// Collects verdicts from the verifier's threads; the test thread waits for them.
struct Verdicts {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<int, bool>> got;  // (tag, ok)
  std::vector<std::thread::id> threads;

  Verifier::Done For(int tag) {
    return [this, tag](bool ok) {
      std::lock_guard<std::mutex> lock(mu);
      got.emplace_back(tag, ok);
      threads.push_back(std::this_thread::get_id());
      cv.notify_all();
    };
  }
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return got.size() >= n; });
  }
};

TEST(VerifierTest, VerdictsArriveOnAWorkerThread) {
  auto store = CredentialStore::Parse("alice:" + HashPassword("right", 1000) + "\n");
  ASSERT_TRUE(store);
  Verifier verifier(**store);
  Verdicts v;
  verifier.Verify("alice", "right", v.For(1));
  verifier.Verify("alice", "wrong", v.For(2));
  verifier.Verify("mallory", "right", v.For(3));  // unknown: checked against the dummy
  ASSERT_TRUE(v.WaitFor(3));
  std::lock_guard<std::mutex> lock(v.mu);
  // One worker takes requests in order.
  EXPECT_EQ(v.got, (std::vector<std::pair<int, bool>>{{1, true}, {2, false}, {3, false}}));
  for (std::thread::id id : v.threads)
    EXPECT_NE(id, std::this_thread::get_id());
}

TEST(VerifierTest, ManyConcurrentVerifies) {
  auto store = CredentialStore::Parse("alice:" + HashPassword("right", 1000) + "\n" +
                                      "bob:" + HashPassword("other", 1000) + "\n");
  ASSERT_TRUE(store);
  Verifier verifier(**store, 3);
  Verdicts v;
  constexpr int kThreads = 4;
  constexpr int kEach = 50;
  std::vector<std::thread> shards;
  for (int t = 0; t < kThreads; ++t) {
    shards.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        int tag = t * kEach + i;
        // Even tags are right, odd ones wrong (wrong password or unknown user).
        const char* user = tag % 4 == 3 ? "carol" : (tag % 2 == 0 ? "alice" : "bob");
        verifier.Verify(user, "right", v.For(tag));
      }
    });
  }
  for (std::thread& t : shards)
    t.join();
  ASSERT_TRUE(v.WaitFor(kThreads * kEach));
  std::lock_guard<std::mutex> lock(v.mu);
  ASSERT_EQ(v.got.size(), size_t{kThreads * kEach});
  std::vector<int> seen(kThreads * kEach, 0);
  for (auto [tag, ok] : v.got) {
    ++seen[tag];
    EXPECT_EQ(ok, tag % 2 == 0) << "tag " << tag;
  }
  for (int n : seen)
    EXPECT_EQ(n, 1) << "each verdict exactly once";
}

// At shutdown the workers finish what they run and drop the rest: queued callbacks are destroyed
// without running, none of them costs a PBKDF2, and a Verify() after Stop() runs nothing. The
// workers are held inside their PBKDF2 until Stop() has taken the queue, so "what they run" is
// exactly one request each, however fast or slow the machine is.
TEST(VerifierTest, StopWithQueuedWorkDropsIt) {
  auto store = CredentialStore::Parse("alice:" + HashPassword("right", 1000) + "\n");
  ASSERT_TRUE(store);
  CryptoCalls& calls = Calls();
  calls.Clear();
  auto release = [&calls] {
    {
      std::lock_guard<std::mutex> lock(calls.mu);
      calls.hold = false;
    }
    calls.cv.notify_all();
  };
  {
    std::lock_guard<std::mutex> lock(calls.mu);
    calls.hold = true;
    calls.held = 0;
  }
  auto verifier = std::make_unique<Verifier>(**store, 2);
  // Whatever fails below, the workers are let go before the verifier is destroyed.
  struct LetGo {
    std::function<void()> release;
    ~LetGo() { release(); }
  } let_go{release};
  std::atomic<int> ran{0};
  auto alive = std::make_shared<int>(0);  // each queued callback holds a copy
  for (int i = 0; i < 200; ++i)
    verifier->Verify("alice", "right", [&ran, alive](bool) { ran.fetch_add(1); });
  {
    std::unique_lock<std::mutex> lock(calls.mu);
    ASSERT_TRUE(calls.cv.wait_for(lock, std::chrono::seconds(30), [&] { return calls.held == 2; }))
        << "both workers busy";
  }
  std::thread stopper([&] { verifier->Stop(); });
  // Stop() has taken the queue once a new request is refused: its callback is gone at once.
  bool refused = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    auto probe = std::make_shared<int>(0);
    verifier->Verify("alice", "right", [&ran, probe](bool) { ran.fetch_add(1); });
    refused = probe.use_count() == 1;
    std::this_thread::yield();
  }
  release();
  stopper.join();
  ASSERT_TRUE(refused) << "Stop() never took the queue";
  EXPECT_EQ(ran.load(), 2) << "the two that were running, never the queue";
  EXPECT_EQ(alive.use_count(), 1) << "the dropped callbacks are destroyed";
  {
    std::lock_guard<std::mutex> lock(calls.mu);
    EXPECT_EQ(calls.pbkdf2.size(), 2u) << "no dropped request was verified";
  }
  bool late = false;
  verifier->Verify("alice", "right", [&late](bool) { late = true; });
  verifier->Stop();  // idempotent
  verifier.reset();
  EXPECT_FALSE(late);
}

// The verifier adds no difference of its own: an unknown user's verdict comes from the same one
// PBKDF2 as a known user's wrong password, with the same parameters, on a worker.
TEST(VerifierTest, UnknownUserGoesTheSameWay) {
  auto store = CredentialStore::Parse("known:" + HashPassword("pw", 5000) + "\n");
  ASSERT_TRUE(store);
  Verifier verifier(**store);
  Verdicts v;
  CryptoCalls& calls = Calls();
  std::vector<Pbkdf2Call> work;
  for (const char* user : {"known", "unknown"}) {
    calls.Clear();
    verifier.Verify(user, "wrong", v.For(0));
    ASSERT_TRUE(v.WaitFor(work.size() + 1));
    std::lock_guard<std::mutex> lock(calls.mu);
    ASSERT_EQ(calls.pbkdf2.size(), 1u) << user;
    EXPECT_EQ(calls.memcmp_lengths, std::vector<size_t>{32}) << user;
    work.push_back(calls.pbkdf2[0]);
  }
  std::lock_guard<std::mutex> lock(v.mu);
  ASSERT_EQ(v.got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_FALSE(v.got[i].second);
    EXPECT_EQ(work[i].thread, v.threads[i]) << "computed on the worker that answered";
    EXPECT_NE(work[i].thread, std::this_thread::get_id());
    EXPECT_EQ(work[i].password, "wrong");
  }
  EXPECT_EQ(work[1].iterations, work[0].iterations);
  EXPECT_EQ(work[1].salt_len, work[0].salt_len);
  EXPECT_EQ(work[1].key_len, work[0].key_len);
  EXPECT_EQ(work[1].digest, work[0].digest);
}

// Relay control: [server] relay_networks entries and the peer addresses they match.
sockaddr_storage Addr(const char* text) {
  sockaddr_storage ss{};
  if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr) == 1) {
    ss.ss_family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr), 1);
    ss.ss_family = AF_INET6;
  }
  return ss;
}

TEST(RelayNetworksTest, Contains) {
  struct Case {
    const char* network;
    const char* addr;
    bool in;
  } cases[] = {
      {"127.0.0.0/8", "127.0.0.1", true},
      {"127.0.0.0/8", "127.255.1.2", true},
      {"127.0.0.0/8", "128.0.0.1", false},
      {"127.0.0.0/8", "::ffff:127.0.0.1", true},  // dual-stack listener
      {"127.0.0.0/8", "::1", false},
      {"10.255.255.0/24", "127.0.0.1", false},
      {"10.255.255.0/24", "10.255.255.77", true},
      {"10.255.255.0/24", "10.255.254.77", false},
      {"192.0.2.1", "192.0.2.1", true},  // a bare address is a /32
      {"192.0.2.1", "192.0.2.2", false},
      {"10.1.2.3/8", "10.200.0.1", true},  // host bits are ignored
      {"0.0.0.0/0", "203.0.113.9", true},
      {"0.0.0.0/0", "2001:db8::1", false},
      {"192.0.2.0/25", "192.0.2.127", true},
      {"192.0.2.0/25", "192.0.2.128", false},
      {"::1/128", "::1", true},
      {"::1/128", "::2", false},
      {"::1/128", "127.0.0.1", false},
      {"2001:db8::/32", "2001:db8:ffff::1", true},
      {"2001:db8::/32", "2001:db9::1", false},
      {"2001:db8::/33", "2001:db8:7fff::1", true},
      {"2001:db8::/33", "2001:db8:8000::1", false},
      {"::/0", "2001:db8::1", true},
  };
  for (const Case& c : cases) {
    auto n = ParseNetwork(c.network);
    ASSERT_TRUE(n) << c.network;
    EXPECT_EQ(n->Contains(Addr(c.addr)), c.in) << c.network << " " << c.addr;
  }
}

TEST(RelayNetworksTest, BadEntries) {
  for (const char* bad : {"", "/8", "127.0.0.0/", "127.0.0.0/33", "::1/129", "127.0.0.0/8x",
                          "127.0.0.0/-1", "localhost", "127.0.0/8", "1.2.3.4/ 8", "::1/1280"}) {
    EXPECT_FALSE(ParseNetwork(bad)) << bad;
  }
}

TEST(RelayNetworksTest, Config) {
  std::string error;
  auto c = ParseConfig(
      "[server]\nrelay_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n"
      "local_domains = [\"Example.COM\"]\n",
      &error);
  ASSERT_TRUE(c) << error;
  ASSERT_EQ(c->relay_networks.size(), 2u);
  EXPECT_EQ(c->relay_networks[1].text, "2001:db8::/32");
  EXPECT_EQ(c->local_domains, std::vector<std::string>{"example.com"});

  c = ParseConfig("", &error);  // the defaults: loopback only
  ASSERT_TRUE(c) << error;
  ASSERT_EQ(c->relay_networks.size(), 2u);
  EXPECT_EQ(c->relay_networks[0].text, "127.0.0.0/8");
  EXPECT_EQ(c->relay_networks[1].text, "::1/128");

  c = ParseConfig("[server]\nrelay_networks = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n", &error);
  ASSERT_FALSE(c);
  EXPECT_NE(error.find("[server] relay_networks: \"10.0.0.0/40\""), std::string::npos) << error;
  c = ParseConfig("[server]\nrelay_networks = \"10.0.0.0/8\"\n", &error);
  ASSERT_FALSE(c);
  EXPECT_NE(error.find("array"), std::string::npos) << error;
}

TEST(RelayNetworksTest, TlsAndAuthSettingsGoTogether) {
  std::string error;
  EXPECT_FALSE(ParseConfig("[tls]\ncertificate = \"a.crt\"\n", &error));
  EXPECT_NE(error.find("[tls]"), std::string::npos) << error;
  EXPECT_FALSE(ParseConfig("[server]\nimplicit_tls_listen = \"127.0.0.1:0\"\n", &error));
  EXPECT_NE(error.find("implicit_tls_listen"), std::string::npos) << error;
  EXPECT_FALSE(ParseConfig("[auth]\nusers_file = \"users\"\n", &error));
  EXPECT_NE(error.find("[auth] users_file"), std::string::npos) << error;
  auto c = ParseConfig("[auth]\nusers_file = \"users\"\nplaintext = true\n", &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(c->auth_max_failures, 5u);
  EXPECT_EQ(c->auth_failure_window.count(), 600);
  EXPECT_EQ(c->auth_verify_threads, 1u);
  c = ParseConfig(
      "[server]\nimplicit_tls_listen = \"127.0.0.1:4650\"\n"
      "[tls]\ncertificate = \"a.crt\"\nkey = \"a.key\"\nhandshake_timeout = \"10s\"\n"
      "[auth]\nusers_file = \"users\"\nmax_failures = 3\nfailure_window = \"1m\"\n"
      "verify_threads = 4\n",
      &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(c->implicit_tls_listen.text, "127.0.0.1:4650");
  EXPECT_EQ(c->tls_handshake_timeout.count(), 10);
  EXPECT_EQ(c->auth_max_failures, 3u);
  EXPECT_EQ(c->auth_verify_threads, 4u);
  EXPECT_FALSE(
      ParseConfig("[auth]\nusers_file = \"users\"\nplaintext = true\nverify_threads = 0\n", &error))
      << "at least one worker";
  EXPECT_FALSE(ParseConfig("[auth]\nusers = \"users\"\n", &error)) << "unknown key";
}

}  // namespace
}  // namespace spate::auth
