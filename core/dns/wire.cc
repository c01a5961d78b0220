#include "core/dns/wire.h"

#include <cstring>

namespace spate::dns {

std::optional<std::string> ParseName(std::string_view rdata, size_t* pos) {
  std::string name;
  size_t wire = 0;  // octets of the name in wire form, the final zero included
  size_t i = *pos;
  for (;;) {
    if (i >= rdata.size())
      return std::nullopt;
    const auto len = static_cast<uint8_t>(rdata[i]);
    ++i;
    ++wire;
    if (wire > 255)  // RFC 1035 §2.3.4: the whole name, its final zero included
      return std::nullopt;
    if (len == 0)
      break;
    if (len > 63)  // 0xC0: a compression pointer; 0x40, 0x80: reserved (RFC 1035 §4.1.4)
      return std::nullopt;
    if (i + len > rdata.size())
      return std::nullopt;
    wire += len;
    if (wire > 255)  // RFC 1035 §2.3.4
      return std::nullopt;
    if (!name.empty())
      name.push_back('.');
    for (size_t k = 0; k < len; ++k) {
      char c = rdata[i + k];
      if (c >= 'A' && c <= 'Z')
        c = static_cast<char>(c - 'A' + 'a');
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok)
        return std::nullopt;
      name.push_back(c);
    }
    i += len;
  }
  *pos = i;
  return name;
}

std::optional<MxRecord> ParseMx(std::string_view rdata) {
  if (rdata.size() < 3)
    return std::nullopt;
  MxRecord mx;
  mx.preference =
      static_cast<uint16_t>((static_cast<uint8_t>(rdata[0]) << 8) | static_cast<uint8_t>(rdata[1]));
  size_t pos = 2;
  std::optional<std::string> host = ParseName(rdata, &pos);
  if (!host || pos != rdata.size())
    return std::nullopt;
  mx.host = std::move(*host);
  return mx;
}

std::optional<in_addr> ParseA(std::string_view rdata) {
  if (rdata.size() != 4)
    return std::nullopt;
  in_addr a{};
  std::memcpy(&a, rdata.data(), 4);
  return a;
}

std::optional<in6_addr> ParseAaaa(std::string_view rdata) {
  if (rdata.size() != 16)
    return std::nullopt;
  in6_addr a{};
  std::memcpy(&a, rdata.data(), 16);
  return a;
}

std::optional<std::string> ParseTxt(std::string_view rdata) {
  std::string out;
  for (size_t i = 0; i < rdata.size();) {
    const size_t n = static_cast<unsigned char>(rdata[i]);
    if (i + 1 + n > rdata.size())
      return std::nullopt;
    out.append(rdata.substr(i + 1, n));
    i += 1 + n;
  }
  return out;
}

}  // namespace spate::dns
