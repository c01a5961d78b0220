// core/tls/tls.h
//
// TLS as a byte filter (BoringSSL over memory BIOs): ciphertext from the network goes in and
// plaintext comes out; plaintext to send goes in and ciphertext comes out. No sockets, timers or
// threads inside; the reactor moves the bytes and the glue decides when a handshake has taken
// too long. TLS 1.2 is the minimum version (RFC 8996 deprecates 1.0 and 1.1).
//
// TlsContext holds the certificate chain and key (loaded once, at start-up: may block on the
// files). It is immutable afterwards and may be shared by every shard: BoringSSL locks what an
// SSL_CTX changes internally (session tickets). Its server-side session cache is off (tickets
// still resume sessions), so shards never contend on a cache.
// TlsSession is one connection's TLS state. Threading: not thread-safe; lives on the shard of its
// connection. Its context must outlive it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/tls/errc.h"

// BoringSSL's types, so that this header does not pull in <openssl/ssl.h>.
struct ssl_ctx_st;
struct ssl_st;

namespace spate::tls {

class TlsContext {
 public:
  // A server context with the PEM certificate chain (leaf first) and the PEM private key at
  // these paths. On failure `error` (when given) names the file and says what BoringSSL found.
  static Result<std::unique_ptr<TlsContext>> CreateServer(const std::string& cert_chain_pem_path,
                                                          const std::string& key_pem_path,
                                                          std::string* error = nullptr);
  // A client context for outbound STARTTLS, trusting the PEM roots in `ca_file` (empty: none;
  // then no certificate verifies). TLS 1.0 is the floor here, not 1.2: opportunistic TLS to a
  // server stuck on an old version is still better than the clear text it would fall back to
  // (RFC 7435 §3). Whether a session verifies is its own choice (TlsSession's `verify`).
  static Result<std::unique_ptr<TlsContext>> CreateClient(const std::string& ca_file,
                                                          std::string* error = nullptr);
  // Adopts a configured SSL_CTX (takes over one reference), e.g. a client context in a test or,
  // later, outbound STARTTLS. `server` says which side its sessions play.
  static std::unique_ptr<TlsContext> Adopt(ssl_ctx_st* ctx, bool server);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  bool server() const { return server_; }
  ssl_ctx_st* native() const { return ctx_; }

 private:
  TlsContext(ssl_ctx_st* ctx, bool server) : ctx_(ctx), server_(server) {}

  ssl_ctx_st* ctx_;
  bool server_;
};

class TlsSession {
 public:
  // A session on `context` (borrowed; it must outlive the session). A client session queues its
  // ClientHello at once: send TakeCiphertext(). A server session waits for the peer's.
  explicit TlsSession(const TlsContext& context);
  // A client session for `server_name` (sent as SNI unless it is an IP literal, RFC 6066 §3).
  // With `verify` the peer's chain must verify to the context's roots and name server_name
  // (RFC 6125), else the handshake fails saying why.
  TlsSession(const TlsContext& context, std::string_view server_name, bool verify);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Network bytes in, any split. Application data is appended to `plaintext`; what the session
  // must send back (handshake, alerts, key updates) waits in TakeCiphertext(). On an error the
  // session is failed() for good and every later call returns the error; an alert for the peer
  // may still be in TakeCiphertext() (send it, then close).
  Result<void> FeedCiphertext(std::string_view in, std::string* plaintext);

  // Plaintext to send. Before the handshake is done it is kept and encrypted once it is.
  Result<void> Write(std::string_view plaintext);

  // Queues close_notify (RFC 8446 §6.1). Nothing is written after it.
  void Shutdown();

  // Ciphertext to send. Empty when there is nothing.
  std::string TakeCiphertext();

  bool handshake_done() const { return handshake_done_; }
  bool failed() const { return static_cast<bool>(error_); }
  // The peer sent close_notify: no more plaintext comes.
  bool peer_closed() const { return peer_closed_; }
  // What BoringSSL reported, for the log. Empty unless failed().
  const std::string& failure() const { return failure_; }
  // "TLSv1.3" and "TLS_AES_128_GCM_SHA256" (RFC names) once the handshake is done.
  std::string version() const;
  std::string cipher() const;
  // A client session that does not verify but wants to know (MTA-STS "testing", RFC 8461 §5):
  // the chain and `name` are checked as with `verify`, and a failure does not fail the
  // handshake; VerifyFailure() says. Before any ciphertext is fed.
  void CheckWithoutFailing(std::string_view name);
  // After the handshake of such a session: "" when the chain verified and named it, else why.
  std::string VerifyFailure() const;
  // What the certificate check found (a verifying session's failed handshake, or one under
  // CheckWithoutFailing() after it), in the classes RFC 8460 §4.3.1 reports: TLSRPT's result
  // types. kNone: no certificate problem (it verified, or nothing was checked).
  enum class CertProblem : uint8_t { kNone, kHostMismatch, kExpired, kNotTrusted, kOther };
  CertProblem cert_problem() const;
  // The certificates the peer sent, DER, leaf first (for DANE, dane.h); empty before the
  // handshake is done.
  std::vector<std::string> PeerChain() const;

 private:
  Result<void> Fail(Errc code, int ret);
  Result<void> Handshake();
  Result<void> WriteNow(std::string_view plaintext);
  void Init(const TlsContext& context, std::string_view server_name, bool verify);

  ssl_st* ssl_ = nullptr;
  std::string pending_;  // plaintext written before the handshake was done
  std::string failure_;
  std::error_code error_;
  bool handshake_done_ = false;
  bool verify_ = false;
  bool peer_closed_ = false;
  bool shut_down_ = false;
};

}  // namespace spate::tls
