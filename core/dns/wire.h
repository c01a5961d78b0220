// core/dns/wire.h
//
// The rdata of the records MX routing needs (RFC 1035 §3.3.9 MX, §3.4.1 A; RFC 3596 AAAA), as
// libunbound hands them over: one record's rdata, without its length, its names uncompressed.
// Sans-I/O; every input is hostile (a DNS answer comes from the network): a parse either
// succeeds whole or says no, and never reads past its input.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <netinet/in.h>

namespace spate::dns {

struct MxRecord {
  uint16_t preference = 0;
  std::string host;  // lower case, without the final dot; "" for the root (null MX, RFC 7505)

  friend bool operator==(const MxRecord&, const MxRecord&) = default;
};

// A domain name in wire form (RFC 1035 §3.1) from rdata[*pos], as text: lower case, labels
// joined by '.', no final dot; the root is "". Advances *pos past it. Refused: a compression
// pointer (names in libunbound's rdata are uncompressed), a label over 63 octets, a name over
// 255 octets, a label with an octet that is not a letter, digit, '-' or '_' (host names, RFC
// 1123 §2.1; '_' for service labels), or input that ends inside the name.
std::optional<std::string> ParseName(std::string_view rdata, size_t* pos);

// MX rdata: preference(2) exchange(name); nothing may follow the name.
std::optional<MxRecord> ParseMx(std::string_view rdata);
// A: 4 octets; AAAA: 16.
std::optional<in_addr> ParseA(std::string_view rdata);
std::optional<in6_addr> ParseAaaa(std::string_view rdata);
// TXT rdata (RFC 1035 §3.3.14): its character-strings, concatenated (RFC 7208 §3.3's reading,
// and RFC 8461 §3.1's); nullopt when a length runs past the end.
std::optional<std::string> ParseTxt(std::string_view rdata);

}  // namespace spate::dns
