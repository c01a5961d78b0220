// core/tls/errc.cc
#include "core/tls/errc.h"

#include <string>

namespace spate::tls {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spate.tls"; }

  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kCertificateFile:
        return "cannot load the TLS certificate chain";
      case Errc::kKeyFile:
        return "cannot load the TLS private key";
      case Errc::kKeyMismatch:
        return "the TLS private key does not match the certificate";
      case Errc::kContext:
        return "cannot set up a TLS context";
      case Errc::kHandshake:
        return "TLS handshake failed";
      case Errc::kProtocol:
        return "TLS protocol error";
    }
    return "unknown tls error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& ErrorCategory() {
  static const Category category;
  return category;
}

}  // namespace spate::tls
