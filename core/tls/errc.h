// core/tls/errc.h
//
// Errors of the TLS layer: a certificate or key that cannot be used (start-up), and a peer whose
// handshake or records fail (the connection is dropped). BoringSSL's own error queue is turned
// into these in one place, tls.cc; its text goes with the error where a person reads it.
// Threading: values; the category is immutable.
#pragma once

#include <system_error>

namespace spate::tls {

enum class Errc {
  kCertificateFile = 1,  // the certificate chain file is missing, unreadable or not PEM
  kKeyFile,              // the private key file is missing, unreadable or not PEM
  kKeyMismatch,          // the key does not belong to the certificate
  kContext,              // BoringSSL could not set up a context (out of memory, bad build)
  kHandshake,            // the handshake failed (garbage, no common version or cipher, alert)
  kProtocol,             // a record after the handshake failed (bad MAC, unexpected message)
};

const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), ErrorCategory()};
}

}  // namespace spate::tls

template <>
struct std::is_error_code_enum<spate::tls::Errc> : std::true_type {};
