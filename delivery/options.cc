#include "delivery/options.h"

namespace spate::delivery {

std::string_view TlsModeName(TlsMode mode) {
  switch (mode) {
    case TlsMode::kOff:
      return "off";
    case TlsMode::kOpportunistic:
      return "opportunistic";
    case TlsMode::kRequired:
      return "required";
    case TlsMode::kVerify:
      return "verify";
  }
  return "?";
}

}  // namespace spate::delivery
