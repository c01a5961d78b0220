// core/tls/tls.cc
//
// The one place where BoringSSL's error queue becomes spate errors (TakeErrors, Fail). The queue
// is thread-local: it is cleared before every call whose failure we report, so an error left by
// another connection on this shard is never blamed on this one.
#include "core/tls/tls.h"

#include <algorithm>
#include <climits>

#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace spate::tls {
namespace {

// Ciphertext is handed to the read BIO in slices: a memory BIO moves its remaining contents on
// every read, so a slice bounds both that work and the BIO's memory.
constexpr size_t kFeedSlice = 32 * 1024;
// One TLS record's worth of plaintext per SSL_read (RFC 8446 §5.1).
constexpr size_t kReadChunk = 16 * 1024;
// SSL_write takes an int length.
constexpr size_t kWriteChunk = 1 << 20;

// Empties BoringSSL's error queue; returns its first entry as text ("PEM routines:
// NO_START_LINE"). The first is the cause; the rest are callers saying they failed too.
std::string TakeErrors() {
  uint32_t first = ERR_get_error();
  while (ERR_get_error() != 0) {
  }
  if (first == 0)
    return {};
  const char* lib = ERR_lib_error_string(first);
  const char* reason = ERR_reason_error_string(first);
  return std::string(lib != nullptr ? lib : "?") + ": " +
         (reason != nullptr ? reason : std::to_string(ERR_GET_REASON(first)));
}

Unexpected ContextError(Errc code, const std::string& path, std::string* error) {
  std::string detail = TakeErrors();
  if (error != nullptr) {
    *error = path + ": " + make_error_code(code).message();
    if (!detail.empty())
      *error += " (" + detail + ")";
  }
  return Unexpected{make_error_code(code)};
}

}  // namespace

Result<std::unique_ptr<TlsContext>> TlsContext::CreateServer(const std::string& cert_chain_pem_path,
                                                             const std::string& key_pem_path,
                                                             std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr)
    return ContextError(Errc::kContext, "SSL_CTX_new", error);
  std::unique_ptr<TlsContext> context(new TlsContext(ctx, /*server=*/true));
  // RFC 8996: nothing older than TLS 1.2. 3DES (Sweet32) is the one legacy cipher left in
  // BoringSSL's default list; an MTA otherwise takes what the peer offers.
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
      !SSL_CTX_set_strict_cipher_list(ctx, "ALL:!3DES")) {
    return ContextError(Errc::kContext, "SSL_CTX", error);
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (!SSL_CTX_use_certificate_chain_file(ctx, cert_chain_pem_path.c_str()))
    return ContextError(Errc::kCertificateFile, cert_chain_pem_path, error);
  if (!SSL_CTX_use_PrivateKey_file(ctx, key_pem_path.c_str(), SSL_FILETYPE_PEM)) {
    // BoringSSL checks the key against the certificate as it loads it.
    uint32_t e = ERR_peek_error();
    bool mismatch =
        ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
    return ContextError(mismatch ? Errc::kKeyMismatch : Errc::kKeyFile, key_pem_path, error);
  }
  if (!SSL_CTX_check_private_key(ctx))
    return ContextError(Errc::kKeyMismatch, key_pem_path, error);
  return context;
}

Result<std::unique_ptr<TlsContext>> TlsContext::CreateClient(const std::string& ca_file,
                                                             std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr)
    return ContextError(Errc::kContext, "SSL_CTX_new", error);
  std::unique_ptr<TlsContext> context(new TlsContext(ctx, /*server=*/false));
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION) ||
      !SSL_CTX_set_strict_cipher_list(ctx, "ALL:!3DES")) {
    return ContextError(Errc::kContext, "SSL_CTX", error);
  }
  if (!ca_file.empty() && !SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr))
    return ContextError(Errc::kCertificateFile, ca_file, error);
  return context;
}

std::unique_ptr<TlsContext> TlsContext::Adopt(ssl_ctx_st* ctx, bool server) {
  return std::unique_ptr<TlsContext>(new TlsContext(ctx, server));
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

TlsSession::TlsSession(const TlsContext& context) {
  Init(context, {}, false);
}

TlsSession::TlsSession(const TlsContext& context, std::string_view server_name, bool verify) {
  Init(context, server_name, verify);
}

void TlsSession::Init(const TlsContext& context, std::string_view server_name, bool verify) {
  ERR_clear_error();
  ssl_ = SSL_new(context.native());
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    (void)Fail(Errc::kContext, 0);
    return;
  }
  // An empty read BIO means "more to come", not end of file.
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(ssl_, rbio, wbio);  // the SSL owns both from here
  if (context.server()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    const std::string name(server_name);
    in6_addr ip{};
    const bool literal =
        inet_pton(AF_INET, name.c_str(), &ip) == 1 || inet_pton(AF_INET6, name.c_str(), &ip) == 1;
    if (!name.empty() && !literal)
      SSL_set_tlsext_host_name(ssl_, name.c_str());
    if (verify) {
      verify_ = true;
      SSL_set_verify(ssl_, SSL_VERIFY_PEER, nullptr);
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      const bool named = literal
                             ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) == 1
                             : X509_VERIFY_PARAM_set1_host(param, name.data(), name.size()) == 1;
      if (name.empty() || !named) {
        (void)Fail(Errc::kContext, 0);
        return;
      }
    }
    (void)Handshake();  // queues the ClientHello
  }
}

TlsSession::~TlsSession() {
  SSL_free(ssl_);  // null-safe
}

Result<void> TlsSession::Fail(Errc code, int ret) {
  std::string detail = TakeErrors();
  if (ssl_ != nullptr && verify_) {
    // A certificate that did not verify: say why ("certificate has expired", "Hostname
    // mismatch"), not only that the handshake failed.
    if (long v = SSL_get_verify_result(ssl_); v != X509_V_OK) {
      detail = std::string("certificate verify failed: ") + X509_verify_cert_error_string(v);
    }
  }
  if (detail.empty() && ssl_ != nullptr && ret <= 0) {
    switch (SSL_get_error(ssl_, ret)) {
      case SSL_ERROR_SYSCALL:
        detail = "unexpected end of stream";
        break;
      default:
        detail = "SSL error " + std::to_string(SSL_get_error(ssl_, ret));
    }
  }
  error_ = make_error_code(code);
  failure_ = detail.empty() ? error_.message() : detail;
  return Unexpected{error_};
}

Result<void> TlsSession::Handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_done_ = true;
    if (!pending_.empty()) {
      std::string pending = std::move(pending_);
      pending_.clear();
      return WriteNow(pending);
    }
    return {};
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return {};
  return Fail(Errc::kHandshake, r);
}

Result<void> TlsSession::FeedCiphertext(std::string_view in, std::string* plaintext) {
  if (error_)
    return Unexpected{error_};
  BIO* rbio = SSL_get_rbio(ssl_);
  do {
    size_t n = std::min(in.size(), kFeedSlice);
    if (n > 0 && BIO_write(rbio, in.data(), static_cast<int>(n)) != static_cast<int>(n))
      return Fail(Errc::kContext, 0);  // out of memory
    in.remove_prefix(n);
    if (!handshake_done_)
      SPATE_RETURN_IF_ERROR(Handshake());
    // After close_notify the stream is over: what follows is ignored (RFC 8446 §6.1).
    while (handshake_done_ && !peer_closed_) {
      size_t old = plaintext->size();
      plaintext->resize(old + kReadChunk);
      ERR_clear_error();
      int r = SSL_read(ssl_, plaintext->data() + old, static_cast<int>(kReadChunk));
      plaintext->resize(old + static_cast<size_t>(std::max(r, 0)));
      if (r > 0)
        continue;
      int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ)
        break;
      if (e == SSL_ERROR_ZERO_RETURN) {
        peer_closed_ = true;
        break;
      }
      return Fail(Errc::kProtocol, r);
    }
  } while (!in.empty());
  return {};
}

Result<void> TlsSession::Write(std::string_view plaintext) {
  if (error_)
    return Unexpected{error_};
  if (shut_down_)
    return Unexpected{make_error_code(Errc::kProtocol)};
  if (!handshake_done_) {
    pending_.append(plaintext);
    return {};
  }
  return WriteNow(plaintext);
}

Result<void> TlsSession::WriteNow(std::string_view plaintext) {
  while (!plaintext.empty()) {
    size_t n = std::min(plaintext.size(), kWriteChunk);
    ERR_clear_error();
    // A memory BIO never pushes back, so without SSL_MODE_ENABLE_PARTIAL_WRITE this writes all.
    int r = SSL_write(ssl_, plaintext.data(), static_cast<int>(n));
    if (r <= 0)
      return Fail(Errc::kProtocol, r);
    plaintext.remove_prefix(static_cast<size_t>(r));
  }
  return {};
}

void TlsSession::Shutdown() {
  if (shut_down_ || error_ || !handshake_done_)
    return;
  shut_down_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_);  // 0: close_notify queued, the peer's not yet seen; that is all we want
  ERR_clear_error();
}

std::string TlsSession::TakeCiphertext() {
  if (ssl_ == nullptr)
    return {};
  BIO* wbio = SSL_get_wbio(ssl_);
  size_t n = BIO_ctrl_pending(wbio);
  std::string out;
  while (n > 0) {
    size_t old = out.size();
    size_t take = std::min<size_t>(n, INT_MAX);
    out.resize(old + take);
    int r = BIO_read(wbio, out.data() + old, static_cast<int>(take));
    out.resize(old + static_cast<size_t>(std::max(r, 0)));
    if (r <= 0)
      break;
    n -= static_cast<size_t>(r);
  }
  return out;
}

std::string TlsSession::version() const {
  if (!handshake_done_)
    return {};
  return SSL_get_version(ssl_);
}

void TlsSession::CheckWithoutFailing(std::string_view name) {
  if (ssl_ == nullptr || verify_)
    return;
  // SSL_VERIFY_NONE still verifies and keeps the result (SSL_get_verify_result).
  SSL_set_verify(ssl_, SSL_VERIFY_NONE, nullptr);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  (void)X509_VERIFY_PARAM_set1_host(param, name.data(), name.size());
}

std::string TlsSession::VerifyFailure() const {
  if (ssl_ == nullptr || !handshake_done_)
    return "no handshake";
  const long result = SSL_get_verify_result(ssl_);
  return result == X509_V_OK ? std::string() : X509_verify_cert_error_string(result);
}

TlsSession::CertProblem TlsSession::cert_problem() const {
  if (ssl_ == nullptr)
    return CertProblem::kNone;
  switch (SSL_get_verify_result(ssl_)) {
    case X509_V_OK:
      return CertProblem::kNone;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return CertProblem::kHostMismatch;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return CertProblem::kExpired;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REVOKED:
      return CertProblem::kNotTrusted;
    default:
      return CertProblem::kOther;
  }
}

std::vector<std::string> TlsSession::PeerChain() const {
  std::vector<std::string> out;
  const STACK_OF(CRYPTO_BUFFER)* chain =
      handshake_done_ ? SSL_get0_peer_certificates(ssl_) : nullptr;
  if (chain == nullptr)
    return out;
  for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(chain); ++i) {
    const CRYPTO_BUFFER* b = sk_CRYPTO_BUFFER_value(chain, i);
    out.emplace_back(reinterpret_cast<const char*>(CRYPTO_BUFFER_data(b)), CRYPTO_BUFFER_len(b));
  }
  return out;
}

std::string TlsSession::cipher() const {
  const SSL_CIPHER* c = handshake_done_ ? SSL_get_current_cipher(ssl_) : nullptr;
  if (c == nullptr)
    return {};
  return SSL_CIPHER_standard_name(c);
}

}  // namespace spate::tls
