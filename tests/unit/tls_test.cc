// tests/unit/tls_test.cc
//
// TlsSession pumped against TlsSession in memory: a server on tests/data/spate.test.{crt,key},
// a client context (made here) that trusts that certificate, and outbound clients from
// TlsContext::CreateClient with their name checks and SNI.
#include "core/tls/tls.h"

#include <random>
#include <string>

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace spate::tls {
namespace {

const std::string kData = SPATE_TEST_DATA_DIR;
const std::string kCert = kData + "/spate.test.crt";
const std::string kKey = kData + "/spate.test.key";

std::unique_ptr<TlsContext> Server() {
  std::string error;
  auto ctx = TlsContext::CreateServer(kCert, kKey, &error);
  EXPECT_TRUE(ctx) << error;
  return std::move(ctx).value();
}

// A client that verifies the server against the test certificate. `max_version` 0: default.
std::unique_ptr<TlsContext> Client(uint16_t max_version = 0) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  EXPECT_EQ(SSL_CTX_load_verify_locations(ctx, kCert.c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (max_version != 0) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, max_version);
  }
  return TlsContext::Adopt(ctx, /*server=*/false);
}

// Moves ciphertext both ways until neither side has anything to send. `split` > 0 feeds in
// pieces of at most that many bytes. Returns false when a side failed.
bool Pump(TlsSession& client, TlsSession& server, std::string* client_plain,
          std::string* server_plain, size_t split = 0) {
  for (int round = 0; round < 10000; ++round) {
    std::string to_server = client.TakeCiphertext();
    std::string to_client = server.TakeCiphertext();
    if (to_server.empty() && to_client.empty())
      return !client.failed() && !server.failed();
    auto feed = [split](TlsSession& s, std::string_view bytes, std::string* plain) {
      size_t step = split == 0 ? bytes.size() : split;
      for (size_t i = 0; i < bytes.size(); i += step) {
        if (!s.FeedCiphertext(bytes.substr(i, step), plain))
          return false;
      }
      return true;
    };
    if (!feed(server, to_server, server_plain) || !feed(client, to_client, client_plain)) {
      // Let the failing side's alert reach the other, as the glue would before closing.
      std::string alert = server.TakeCiphertext();
      if (!alert.empty())
        (void)client.FeedCiphertext(alert, client_plain);
      alert = client.TakeCiphertext();
      if (!alert.empty())
        (void)server.FeedCiphertext(alert, server_plain);
      return false;
    }
  }
  ADD_FAILURE() << "no quiescence";
  return false;
}

TEST(TlsTest, HandshakeTls13) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  EXPECT_FALSE(server.handshake_done());
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp)) << server.failure() << client.failure();
  EXPECT_TRUE(server.handshake_done());
  EXPECT_TRUE(client.handshake_done());
  EXPECT_EQ(server.version(), "TLSv1.3");
  EXPECT_EQ(server.cipher().rfind("TLS_", 0), 0u) << server.cipher();
  EXPECT_EQ(server.cipher(), client.cipher());
  EXPECT_TRUE(cp.empty());
  EXPECT_TRUE(sp.empty());
  EXPECT_FALSE(server.failed());
  EXPECT_TRUE(server.failure().empty());
}

// DANE (dane.h) matches what the server sent: its chain, DER, leaf first; nothing before.
TEST(TlsTest, TheClientSeesThePeersChainOnceTheHandshakeIsDone) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  EXPECT_TRUE(client.PeerChain().empty());
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp)) << server.failure() << client.failure();
  std::vector<std::string> chain = client.PeerChain();
  ASSERT_FALSE(chain.empty());
  const unsigned char* p = reinterpret_cast<const unsigned char*>(chain[0].data());
  X509* leaf = d2i_X509(nullptr, &p, static_cast<long>(chain[0].size()));
  ASSERT_NE(leaf, nullptr) << "DER of a certificate";
  EXPECT_EQ(p, reinterpret_cast<const unsigned char*>(chain[0].data()) + chain[0].size());
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "spate.test");
  X509_free(leaf);
}

// MTA-STS "testing": the handshake goes on whatever the chain is; VerifyFailure() says what
// enforcing would have found.
TEST(TlsTest, CheckWithoutFailingCompletesTheHandshakeAndSaysWhetherItVerified) {
  auto server_ctx = Server();
  auto client_ctx = Client();  // trusts the test certificate, which names spate.test
  for (const char* name : {"spate.test", "mx.other.test"}) {
    TlsSession server(*server_ctx);
    TlsSession client(*client_ctx, name, /*verify=*/false);
    client.CheckWithoutFailing(name);
    std::string cp, sp;
    ASSERT_TRUE(Pump(client, server, &cp, &sp)) << name << ": " << client.failure();
    ASSERT_TRUE(client.handshake_done());
    if (std::string_view(name) == "spate.test")
      EXPECT_EQ(client.VerifyFailure(), "") << "verified and named";
    else
      EXPECT_NE(client.VerifyFailure(), "") << "the certificate does not name " << name;
  }
}

TEST(TlsTest, HandshakeByteByByte) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp, /*split=*/1)) << server.failure();
  ASSERT_TRUE(client.Write("EHLO client.test\r\n"));
  ASSERT_TRUE(Pump(client, server, &cp, &sp, /*split=*/1));
  EXPECT_EQ(sp, "EHLO client.test\r\n");
}

TEST(TlsTest, Tls12IsAccepted) {
  auto server_ctx = Server();
  auto client_ctx = Client(TLS1_2_VERSION);
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp)) << server.failure();
  EXPECT_EQ(server.version(), "TLSv1.2");
  EXPECT_NE(server.cipher().find("ECDHE_ECDSA"), std::string::npos) << server.cipher();
}

TEST(TlsTest, Tls11IsRefused) {
  auto server_ctx = Server();
  auto client_ctx = Client(TLS1_1_VERSION);
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  std::string cp, sp;
  EXPECT_FALSE(Pump(client, server, &cp, &sp));
  EXPECT_TRUE(server.failed());
  EXPECT_FALSE(server.handshake_done());
  EXPECT_NE(server.failure().find("UNSUPPORTED_PROTOCOL"), std::string::npos) << server.failure();
  EXPECT_TRUE(client.failed()) << "the server's alert reached the client";
}

TEST(TlsTest, MegabyteEachWayInRandomSplits) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp));

  std::mt19937 rng(42);
  std::string up(1 << 20, '\0'), down(1 << 20, '\0');
  for (char& c : up)
    c = static_cast<char>(rng());
  for (char& c : down)
    c = static_cast<char>(rng());
  // Written in uneven pieces, delivered in uneven pieces.
  for (size_t i = 0; i < up.size();) {
    size_t n = std::min<size_t>(up.size() - i, 1 + rng() % 70000);
    ASSERT_TRUE(client.Write(std::string_view(up).substr(i, n)));
    ASSERT_TRUE(server.Write(std::string_view(down).substr(i, n)));
    i += n;
  }
  std::string to_server = client.TakeCiphertext();
  std::string to_client = server.TakeCiphertext();
  EXPECT_GT(to_server.size(), up.size());
  for (size_t i = 0; i < to_server.size();) {
    size_t n = std::min<size_t>(to_server.size() - i, 1 + rng() % 40000);
    ASSERT_TRUE(server.FeedCiphertext(std::string_view(to_server).substr(i, n), &sp));
    i += n;
  }
  for (size_t i = 0; i < to_client.size();) {
    size_t n = std::min<size_t>(to_client.size() - i, 1 + rng() % 40000);
    ASSERT_TRUE(client.FeedCiphertext(std::string_view(to_client).substr(i, n), &cp));
    i += n;
  }
  ASSERT_TRUE(Pump(client, server, &cp, &sp));
  EXPECT_TRUE(sp == up) << sp.size();
  EXPECT_TRUE(cp == down) << cp.size();
}

TEST(TlsTest, WriteBeforeHandshakeIsSentAfterIt) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  // Implicit TLS: the greeting is written before the handshake is done.
  ASSERT_TRUE(server.Write("220 spate.test ESMTP\r\n"));
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp));
  EXPECT_EQ(cp, "220 spate.test ESMTP\r\n");
}

TEST(TlsTest, GarbageFailsTheHandshake) {
  auto server_ctx = Server();
  TlsSession server(*server_ctx);
  std::string plain;
  auto r = server.FeedCiphertext("EHLO client.test\r\n", &plain);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kHandshake);
  EXPECT_TRUE(server.failed());
  EXPECT_FALSE(server.handshake_done());
  EXPECT_FALSE(server.failure().empty());
  EXPECT_TRUE(plain.empty());
  // Failed for good: later input is refused the same way, and nothing can be written.
  EXPECT_EQ(server.FeedCiphertext("\x16\x03\x01", &plain).error(), Errc::kHandshake);
  EXPECT_FALSE(server.Write("250 ok\r\n"));
  EXPECT_EQ(server.version(), "");
}

TEST(TlsTest, GarbageAfterTheHandshakeIsAProtocolError) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp));
  // A plaintext command injected after the handshake (as if by a man in the middle).
  auto r = server.FeedCiphertext("RSET\r\n", &sp);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kProtocol);
  EXPECT_TRUE(sp.empty());
}

TEST(TlsTest, CloseNotify) {
  auto server_ctx = Server();
  auto client_ctx = Client();
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp));
  ASSERT_TRUE(client.Write("QUIT\r\n"));
  client.Shutdown();
  EXPECT_FALSE(client.Write("more"));
  ASSERT_TRUE(Pump(client, server, &cp, &sp));
  EXPECT_EQ(sp, "QUIT\r\n");
  EXPECT_TRUE(server.peer_closed());
}

TEST(TlsTest, ContextErrorsNameTheFile) {
  std::string error;
  auto r = TlsContext::CreateServer(kData + "/missing.crt", kKey, &error);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kCertificateFile);
  EXPECT_NE(error.find("missing.crt"), std::string::npos) << error;

  r = TlsContext::CreateServer(kKey, kKey, &error);  // a key is not a certificate
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kCertificateFile);

  r = TlsContext::CreateServer(kCert, kData + "/missing.key", &error);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kKeyFile);
  EXPECT_NE(error.find("missing.key"), std::string::npos) << error;

  r = TlsContext::CreateServer(kCert, kData + "/other.key", &error);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kKeyMismatch);
  EXPECT_NE(error.find("other.key"), std::string::npos) << error;
  EXPECT_EQ(r.error().message(), "the TLS private key does not match the certificate");
}

// Outbound STARTTLS: a client from CreateClient, as the delivery engine makes it.
std::unique_ptr<TlsContext> OutboundClient(const std::string& ca_file) {
  std::string error;
  auto ctx = TlsContext::CreateClient(ca_file, &error);
  EXPECT_TRUE(ctx) << error;
  return std::move(ctx).value();
}

// The name the client asked for in its ClientHello (SNI), as the server saw it; "(none)" when
// it sent none.
int RecordServerName(SSL* ssl, int* /*alert*/, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  *static_cast<std::string*>(arg) = name != nullptr ? name : "(none)";
  return SSL_TLSEXT_ERR_OK;
}

void RecordServerNameInto(TlsContext& server_ctx, std::string* seen) {
  SSL_CTX_set_tlsext_servername_callback(server_ctx.native(), RecordServerName);
  SSL_CTX_set_tlsext_servername_arg(server_ctx.native(), seen);
}

TEST(TlsClientTest, VerifiesAServerWhoseCertificateNamesIt) {
  auto server_ctx = Server();
  auto client_ctx = OutboundClient(kCert);
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx, "spate.test", /*verify=*/true);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp)) << client.failure() << server.failure();
  EXPECT_TRUE(client.handshake_done());
  EXPECT_EQ(client.version(), "TLSv1.3");
  ASSERT_TRUE(client.Write("EHLO client.test\r\n"));
  ASSERT_TRUE(Pump(client, server, &cp, &sp));
  EXPECT_EQ(sp, "EHLO client.test\r\n");
}

TEST(TlsClientTest, AServerWhoseCertificateNamesAnotherHostFailsVerification) {
  auto server_ctx = Server();
  auto client_ctx = OutboundClient(kCert);
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx, "other.test", /*verify=*/true);
  std::string cp, sp;
  EXPECT_FALSE(Pump(client, server, &cp, &sp));
  EXPECT_TRUE(client.failed());
  EXPECT_FALSE(client.handshake_done());
  EXPECT_EQ(client.failure(), "certificate verify failed: Hostname mismatch");
  EXPECT_TRUE(server.failed()) << "the client's alert reached the server";
}

TEST(TlsClientTest, WithoutTrustRootsNoCertificateVerifies) {
  auto server_ctx = Server();
  auto client_ctx = OutboundClient("");
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx, "spate.test", /*verify=*/true);
  std::string cp, sp;
  EXPECT_FALSE(Pump(client, server, &cp, &sp));
  EXPECT_TRUE(client.failed());
  EXPECT_EQ(client.failure().rfind("certificate verify failed: ", 0), 0u) << client.failure();
}

// Opportunistic TLS (RFC 7435): encryption without authentication, whatever the certificate.
TEST(TlsClientTest, WithoutVerifyAnyCertificateIsTaken) {
  auto server_ctx = Server();
  auto client_ctx = OutboundClient("");
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx, "other.test", /*verify=*/false);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp)) << client.failure() << server.failure();
  EXPECT_TRUE(client.handshake_done());
  EXPECT_FALSE(client.failed());
}

TEST(TlsClientTest, VerifyingWithoutANameFailsAtOnce) {
  auto client_ctx = OutboundClient(kCert);
  TlsSession client(*client_ctx, "", /*verify=*/true);
  EXPECT_TRUE(client.failed());
  EXPECT_FALSE(client.failure().empty());
  EXPECT_TRUE(client.TakeCiphertext().empty()) << "no ClientHello for a session that failed";
}

TEST(TlsClientTest, TheServerSeesTheNameAskedForAsSni) {
  auto server_ctx = Server();
  std::string seen;
  RecordServerNameInto(*server_ctx, &seen);
  auto client_ctx = OutboundClient(kCert);
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx, "spate.test", /*verify=*/true);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp)) << client.failure();
  EXPECT_EQ(seen, "spate.test");
}

// RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
TEST(TlsClientTest, AnIpLiteralIsNotSentAsSni) {
  for (const char* ip : {"192.0.2.1", "2001:db8::1"}) {
    SCOPED_TRACE(ip);
    auto server_ctx = Server();
    std::string seen;
    RecordServerNameInto(*server_ctx, &seen);
    auto client_ctx = OutboundClient("");
    TlsSession server(*server_ctx);
    TlsSession client(*client_ctx, ip, /*verify=*/false);
    std::string cp, sp;
    ASSERT_TRUE(Pump(client, server, &cp, &sp)) << client.failure();
    EXPECT_EQ(seen, "(none)");
  }
}

// An IP literal is checked against the certificate's IP addresses, which the test certificate
// (DNS:spate.test only) has none of.
TEST(TlsClientTest, AnIpLiteralIsVerifiedAsAnAddressNotAName) {
  auto server_ctx = Server();
  auto client_ctx = OutboundClient(kCert);
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx, "192.0.2.1", /*verify=*/true);
  std::string cp, sp;
  EXPECT_FALSE(Pump(client, server, &cp, &sp));
  EXPECT_EQ(client.failure(), "certificate verify failed: IP address mismatch");
}

// RFC 7435 §3: TLS 1.0 is still better than the clear text an opportunistic client would
// otherwise fall back to.
TEST(TlsClientTest, AServerStuckOnTls10IsStillSpokenTo) {
  SSL_CTX* old = SSL_CTX_new(TLS_method());
  ASSERT_EQ(SSL_CTX_use_certificate_chain_file(old, kCert.c_str()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(old, kKey.c_str(), SSL_FILETYPE_PEM), 1);
  SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(old, TLS1_VERSION);
  auto server_ctx = TlsContext::Adopt(old, /*server=*/true);
  auto client_ctx = OutboundClient(kCert);
  TlsSession server(*server_ctx);
  TlsSession client(*client_ctx, "spate.test", /*verify=*/true);
  std::string cp, sp;
  ASSERT_TRUE(Pump(client, server, &cp, &sp)) << client.failure() << server.failure();
  EXPECT_EQ(client.version(), "TLSv1");
}

TEST(TlsClientTest, AMissingTrustRootFileIsNamed) {
  std::string error;
  auto r = TlsContext::CreateClient(kData + "/missing-roots.pem", &error);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kCertificateFile);
  EXPECT_NE(error.find("missing-roots.pem"), std::string::npos) << error;
}

TEST(TlsClientTest, ATrustRootFileWithoutCertificatesIsRefused) {
  std::string error;
  auto r = TlsContext::CreateClient(kKey, &error);  // a key, not a certificate
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), Errc::kCertificateFile);
  EXPECT_NE(error.find("spate.test.key"), std::string::npos) << error;
}

}  // namespace
}  // namespace spate::tls
