// core/smtp/errc.cc
#include "core/smtp/errc.h"

#include <string>

namespace spate::smtp {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spate.smtp"; }

  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kMalformedReply:
        return "malformed SMTP reply";
      case Errc::kReplyTooLong:
        return "SMTP reply too long";
      case Errc::kUnexpectedReply:
        return "unexpected SMTP reply";
      case Errc::kBadAddress:
        return "bad address syntax";
      case Errc::kAddressTooLong:
        return "address too long";
      case Errc::kAddressNotAscii:
        return "non-ASCII address";
    }
    return "unknown smtp error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& ErrorCategory() {
  // A function-local static: constructed once, thread-safe, never destroyed out of order.
  static const Category category;
  return category;
}

}  // namespace spate::smtp
