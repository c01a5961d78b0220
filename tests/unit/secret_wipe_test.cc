// AUTH credentials leave no copy behind (issue: passwords were wiped only in the Verifier).
// This binary replaces the global operator delete: while a test is "armed", every block freed is
// scanned for the password before it goes back to the allocator, and at the end the session
// object itself (where short strings keep their bytes inline) is scanned too. A copy that is
// freed or left in place unwiped fails the test.
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include <malloc.h>

#include <gtest/gtest.h>

#include "core/smtp/server_session.h"
#include "core/wipe.h"

namespace {

std::string_view g_secret;  // armed while not empty
size_t g_leaks = 0;

void Check(const void* p, size_t n) {
  if (p == nullptr || g_secret.empty() || n < g_secret.size())
    return;
  if (memmem(p, n, g_secret.data(), g_secret.size()) != nullptr)
    ++g_leaks;
}

}  // namespace

// Both replaced, so that they pair (malloc and free) under a sanitizer's allocator too.
void* operator new(size_t n) {
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc();
}
namespace {
void Release(void* p) noexcept {
  Check(p, p != nullptr ? malloc_usable_size(p) : 0);
  std::free(p);
}
}  // namespace

void operator delete(void* p) noexcept {
  Release(p);
}
void operator delete(void* p, size_t) noexcept {
  Release(p);
}

namespace spate::smtp {
namespace {

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size())
      n |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size())
      n |= static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

ServerSession::Options AuthOptions() {
  ServerSession::Options o;
  o.hostname = "mx.test";
  o.auth = true;
  o.auth_plaintext = true;
  o.client_may_relay = true;
  o.add_received = false;
  o.add_missing_headers = false;
  return o;
}

struct Case {
  const char* name;
  const char* password;
  bool login;        // AUTH LOGIN, else PLAIN with an initial response
  bool split;        // fed an octet at a time: the line is built in the session's buffer
  bool behind_mail;  // pipelined behind a message: buffered while its commit is outstanding
};

class SecretWipeTest : public ::testing::TestWithParam<Case> {};

// The session yields the credentials once; afterwards neither a freed block nor the session
// holds the password. (The glue wipes the request it took, as SubmissionServer does.)
TEST_P(SecretWipeTest, NoCopyOfThePasswordSurvives) {
  const Case& c = GetParam();
  std::string input = "EHLO client.test\r\n";
  if (c.behind_mail)
    input += "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nhi\r\n.\r\n";
  std::string user_b64 = Base64("alice");
  std::string password_b64 = Base64(c.password);
  std::string plain = std::string("\0alice\0", 7) + c.password;
  std::string plain_b64 = Base64(plain);
  Wipe(plain);
  if (c.login) {
    input += "AUTH LOGIN\r\n" + user_b64 + "\r\n" + password_b64 + "\r\n";
  } else {
    input += "AUTH PLAIN " + plain_b64 + "\r\n";
  }
  input += "NOOP\r\n";

  // Searched without its first octet: a string cleared without being wiped has only that one
  // zeroed.
  const std::string_view needle = std::string_view(c.password).substr(1);
  g_leaks = 0;
  g_secret = needle;
  {
    // In zeroed storage: what the stack held before (this test's own strings) is not taken for
    // a copy the session made.
    alignas(ServerSession) unsigned char storage[sizeof(ServerSession)];
    std::memset(storage, 0, sizeof storage);
    ServerSession& session = *new (storage) ServerSession(AuthOptions());
    struct Destroy {
      ServerSession* s;
      ~Destroy() {
        if (s != nullptr)
          s->~ServerSession();
      }
    } destroy{&session};
    session.Start();
    if (c.split) {
      for (char ch : input)
        session.Feed(std::string_view(&ch, 1));
    } else {
      session.Feed(input);
    }
    if (c.behind_mail) {
      ASSERT_TRUE(session.awaiting_commit());
      std::optional<ReceivedMessage> m = session.TakeMessage();
      ASSERT_TRUE(m.has_value());
      session.OnCommitted(std::string("Q1"));
    }
    std::optional<AuthRequest> request = session.TakeAuthRequest();
    ASSERT_TRUE(request.has_value());
    EXPECT_EQ(request->user, "alice");
    EXPECT_EQ(request->password, c.password);
    EXPECT_TRUE(session.TakeSecretSeen());
    Wipe(request->password);  // the glue's copy: the verifier wipes it
    session.OnAuthResult(true);
    const std::string out = session.TakeOutput();
    EXPECT_NE(out.find("235 2.7.0"), std::string::npos) << out;
    EXPECT_EQ(memmem(&session, sizeof session, needle.data(), needle.size()), nullptr)
        << "the session object holds the password";
    EXPECT_EQ(memmem(&*request, sizeof *request, needle.data(), needle.size()), nullptr);
  }
  g_secret = {};
  EXPECT_EQ(g_leaks, 0u) << "blocks freed with the password in them";
  // Our own base64 copies are not the password.
  Wipe(user_b64);
  Wipe(password_b64);
  Wipe(plain_b64);
}

INSTANTIATE_TEST_SUITE_P(
    All, SecretWipeTest,
    ::testing::Values(
        Case{"plain_short", "Pw-7qZ", false, false, false},
        Case{"plain_long", "a-password-long-enough-to-be-on-the-heap", false, false, false},
        Case{"plain_split", "a-password-long-enough-to-be-on-the-heap", false, true, false},
        Case{"plain_behind_mail", "Pw-7qZ", false, false, true},
        Case{"plain_long_behind_mail", "a-password-long-enough-to-be-on-the-heap", false, false,
             true},
        Case{"login_short", "Pw-7qZ", true, false, false},
        Case{"login_long_split", "a-password-long-enough-to-be-on-the-heap", true, true, false}),
    [](const ::testing::TestParamInfo<Case>& p) { return std::string(p.param.name); });

// The helpers themselves: the whole buffer, not only the size, is zero afterwards.
TEST(WipeTest, WipeClearsTheWholeBufferAndWipeSpareTheTail) {
  std::string s(100, 'x');
  s.resize(10);  // 90 old bytes past the end
  const char* data = s.data();
  const size_t capacity = s.capacity();
  WipeSpare(s);
  EXPECT_EQ(s, std::string(10, 'x'));
  EXPECT_EQ(s.data(), data);
  for (size_t i = 10; i < capacity; ++i)
    EXPECT_EQ(data[i], '\0') << i;
  Wipe(s);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.data(), data);  // the buffer is kept, zeroed
  for (size_t i = 0; i < capacity; ++i)
    EXPECT_EQ(data[i], '\0') << i;
}

}  // namespace
}  // namespace spate::smtp
