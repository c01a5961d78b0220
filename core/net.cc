#include "core/net.h"

#include <algorithm>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace spate {

Result<Network> ParseNetwork(std::string_view text) {
  Network n;
  n.text = std::string(text);
  size_t slash = text.find('/');
  std::string address(text.substr(0, slash));
  if (inet_pton(AF_INET, address.c_str(), n.bytes.data()) == 1) {
    n.family = AF_INET;
    n.prefix_len = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), n.bytes.data()) == 1) {
    n.family = AF_INET6;
    n.prefix_len = 128;
  } else {
    return Unexpected{std::make_error_code(std::errc::invalid_argument)};
  }
  if (slash != std::string_view::npos) {
    std::string_view len = text.substr(slash + 1);
    unsigned prefix = 0;
    if (len.empty() || len.size() > 3 ||
        len.find_first_not_of("0123456789") != std::string_view::npos ||
        (prefix = static_cast<unsigned>(std::stoul(std::string(len)))) > n.prefix_len) {
      return Unexpected{std::make_error_code(std::errc::invalid_argument)};
    }
    n.prefix_len = prefix;
  }
  // Host bits are cleared, so "10.1.2.3/8" means 10.0.0.0/8.
  for (unsigned bit = n.prefix_len; bit < 128; ++bit)
    n.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return n;
}

bool Network::Contains(const sockaddr_storage& addr) const {
  const uint8_t* a = nullptr;
  if (addr.ss_family == AF_INET && family == AF_INET) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr);
  } else if (addr.ss_family == AF_INET6) {
    const in6_addr& a6 = reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr;
    if (family == AF_INET6) {
      a = a6.s6_addr;
    } else if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      a = a6.s6_addr + 12;
    }
  }
  if (a == nullptr)
    return false;
  for (unsigned bit = 0; bit < prefix_len; bit += 8) {
    unsigned bits = std::min(8u, prefix_len - bit);
    uint8_t mask = static_cast<uint8_t>(0xff00u >> bits);
    if ((a[bit / 8] & mask) != bytes[bit / 8])
      return false;
  }
  return true;
}

}  // namespace spate
