// core/dns/message.h
//
// Whole DNS messages (RFC 1035 §4), for the lookups spate sends itself rather than through
// libunbound: with `[dns] trust_ad`, where the AD bit of a local validating resolver is what
// says an answer is secure (RFC 6840 §5.7; libunbound composes its own answers and drops the
// upstream bit). BuildQuery() writes one question with EDNS0 (RFC 6891 §6) and the AD and DO
// bits; ParseReply() reads the answer to it: its RCODE, the AD and TC bits, the records of the
// asked type at the end of the answer's CNAME chain (RFC 1034 §3.6.2), with the names in MX
// rdata uncompressed (what ParseMx() reads), and the negative-caching TTL of an SOA in the
// authority section (RFC 2308 §5).
// Sans-I/O; the reply is hostile: a parse succeeds whole or says no, compression pointers
// point strictly backwards (no loops), and nothing is read past the input.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spate::dns {

inline constexpr uint16_t kRrA = 1;      // RFC 1035 §3.2.2
inline constexpr uint16_t kRrCname = 5;  // RFC 1035 §3.2.2
inline constexpr uint16_t kRrSoa = 6;    // RFC 1035 §3.2.2
inline constexpr uint16_t kRrMx = 15;    // RFC 1035 §3.2.2
inline constexpr uint16_t kRrTxt = 16;   // RFC 1035 §3.3.14
inline constexpr uint16_t kRrAaaa = 28;  // RFC 3596 §2.1
inline constexpr uint16_t kRrOpt = 41;   // RFC 6891 §6.1.1
inline constexpr uint16_t kRrTlsa = 52;  // RFC 6698 §7.1

// The size of UDP answer spate asks for: the DNS flag day 2020 value, no fragmentation.
inline constexpr uint16_t kEdnsPayload = 1232;

// A query for `name` (text, with or without the final dot) of `type`, class IN, with RD, AD
// (RFC 6840 §5.7: ask for the bit) and an OPT record with DO (RFC 3225 §3: the resolver keeps
// DNSSEC records in). "" when the name is not a valid one (an empty label, a label over 63
// octets, over 255 in all).
std::string BuildQuery(uint16_t id, std::string_view name, uint16_t type);

struct Reply {
  uint16_t id = 0;
  uint8_t rcode = 0;               // RFC 1035 §4.1.1 (the low 4 bits; EDNS's extension ignored)
  bool authentic = false;          // AD: the resolver validated it (RFC 4035 §3.2.3)
  bool truncated = false;          // TC
  std::vector<std::string> rdata;  // the records of the asked type, in order
  uint32_t ttl = 0;                // the least TTL of those records and the CNAMEs to them
  std::optional<uint32_t> negative_ttl;  // min(SOA TTL, SOA MINIMUM) when the authority has one
};

// Reads `packet` as the reply to a query for `name` of `type`: a response (QR) to a standard
// query, with that one question. nullopt for anything malformed or another question.
std::optional<Reply> ParseReply(std::string_view packet, std::string_view name, uint16_t type);

}  // namespace spate::dns
