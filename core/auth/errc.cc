// core/auth/errc.cc
#include "core/auth/errc.h"

#include <string>

namespace spate::auth {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spate.auth"; }

  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kUnreadable:
        return "cannot read the users file";
      case Errc::kBadLine:
        return "bad line in the users file";
      case Errc::kDuplicateUser:
        return "user listed twice in the users file";
    }
    return "unknown auth error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& ErrorCategory() {
  static const Category category;
  return category;
}

}  // namespace spate::auth
