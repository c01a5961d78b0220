#include "core/dns/message.h"

namespace spate::dns {
namespace {

constexpr uint16_t kClassIn = 1;
constexpr size_t kHeader = 12;  // RFC 1035 §4.1.1

void Put16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xff));
}

uint16_t Get16(std::string_view p, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[at]) << 8) |
                               static_cast<uint8_t>(p[at + 1]));
}

uint32_t Get32(std::string_view p, size_t at) {
  return (static_cast<uint32_t>(Get16(p, at)) << 16) | Get16(p, at + 2);
}

char Lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// `name` in wire form, lower case; "" when it is not a valid name.
std::string NameToWire(std::string_view name) {
  if (!name.empty() && name.back() == '.')
    name.remove_suffix(1);
  std::string out;
  while (!name.empty()) {
    const size_t dot = name.find('.');
    const std::string_view label = name.substr(0, dot);
    if (label.empty() || label.size() > 63)
      return "";
    out.push_back(static_cast<char>(label.size()));
    for (char c : label)
      out.push_back(Lower(c));
    name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  }
  out.push_back('\0');
  return out.size() > 255 ? "" : out;  // RFC 1035 §2.3.4
}

// The name at packet[*pos], uncompressed, in wire form and lower case (RFC 1035 §4.1.4);
// *pos moves past its in-line part. Every pointer points before the one it is in, so the walk
// ends; the name is at most 255 octets.
bool ReadName(std::string_view packet, size_t* pos, std::string* wire) {
  wire->clear();
  size_t at = *pos;
  bool jumped = false;
  for (;;) {
    if (at >= packet.size())
      return false;
    const auto len = static_cast<uint8_t>(packet[at]);
    if ((len & 0xc0) == 0xc0) {
      if (at + 1 >= packet.size())
        return false;
      const size_t target = Get16(packet, at) & 0x3fff;
      if (target >= at)
        return false;
      if (!jumped)
        *pos = at + 2;
      jumped = true;
      at = target;
      continue;
    }
    if (len > 63)  // 0x40, 0x80: reserved label types
      return false;
    if (at + 1 + len > packet.size() || wire->size() + 1 + len > 255)
      return false;
    wire->push_back(static_cast<char>(len));
    for (size_t i = 0; i < len; ++i)
      wire->push_back(Lower(packet[at + 1 + i]));
    at += 1 + len;
    if (len == 0)
      break;
  }
  if (!jumped)
    *pos = at;
  return true;
}

struct Rr {
  std::string owner;  // wire, lower case
  uint16_t type = 0;
  uint16_t rclass = 0;
  uint32_t ttl = 0;
  size_t rdata = 0;  // offset in the packet
  uint16_t rdlength = 0;
};

bool ReadRr(std::string_view packet, size_t* pos, Rr* rr) {
  if (!ReadName(packet, pos, &rr->owner) || *pos + 10 > packet.size())
    return false;
  rr->type = Get16(packet, *pos);
  rr->rclass = Get16(packet, *pos + 2);
  rr->ttl = Get32(packet, *pos + 4);
  rr->rdlength = Get16(packet, *pos + 8);
  rr->rdata = *pos + 10;
  if (rr->rdata + rr->rdlength > packet.size())
    return false;
  *pos = rr->rdata + rr->rdlength;
  return true;
}

// A name inside rdata that ends exactly at the rdata's end: the CNAME target, the MX exchange.
bool RdataName(std::string_view packet, const Rr& rr, size_t offset, std::string* wire) {
  size_t pos = rr.rdata + offset;
  return pos < rr.rdata + rr.rdlength && ReadName(packet, &pos, wire) &&
         pos == rr.rdata + rr.rdlength;
}

}  // namespace

std::string BuildQuery(uint16_t id, std::string_view name, uint16_t type) {
  const std::string qname = NameToWire(name);
  if (qname.empty())
    return "";
  std::string out;
  Put16(&out, id);
  Put16(&out, 0x0120);  // RD (0x0100) and AD (0x0020)
  Put16(&out, 1);       // QDCOUNT
  Put16(&out, 0);       // ANCOUNT
  Put16(&out, 0);       // NSCOUNT
  Put16(&out, 1);       // ARCOUNT: the OPT record
  out += qname;
  Put16(&out, type);
  Put16(&out, kClassIn);
  // OPT (RFC 6891 §6.1.2): root owner, the payload size as CLASS, extended RCODE 0, version
  // 0, the DO bit (RFC 3225 §3) in the flags, no options.
  out.push_back('\0');
  Put16(&out, kRrOpt);
  Put16(&out, kEdnsPayload);
  Put16(&out, 0);
  Put16(&out, 0x8000);
  Put16(&out, 0);
  return out;
}

std::optional<Reply> ParseReply(std::string_view packet, std::string_view name, uint16_t type) {
  const std::string qname = NameToWire(name);
  if (qname.empty() || packet.size() < kHeader)
    return std::nullopt;
  Reply reply;
  reply.id = Get16(packet, 0);
  const uint16_t flags = Get16(packet, 2);
  if ((flags & 0x8000) == 0 || ((flags >> 11) & 0xf) != 0)  // QR; OPCODE QUERY
    return std::nullopt;
  reply.truncated = (flags & 0x0200) != 0;
  reply.authentic = (flags & 0x0020) != 0;
  reply.rcode = static_cast<uint8_t>(flags & 0xf);
  const uint16_t qdcount = Get16(packet, 4);
  const uint16_t ancount = Get16(packet, 6);
  const uint16_t nscount = Get16(packet, 8);
  if (qdcount != 1)
    return std::nullopt;
  size_t pos = kHeader;
  std::string owner;
  if (!ReadName(packet, &pos, &owner) || pos + 4 > packet.size() || owner != qname ||
      Get16(packet, pos) != type || Get16(packet, pos + 2) != kClassIn)
    return std::nullopt;
  pos += 4;
  // A truncated reply may end anywhere after the question: the caller asks again over TCP.
  if (reply.truncated)
    return reply;

  std::vector<Rr> answers(ancount);
  for (Rr& rr : answers) {
    if (!ReadRr(packet, &pos, &rr))
      return std::nullopt;
  }
  // The CNAME chain from the question's name (RFC 1034 §4.3.2 step 3a), in whatever order
  // the records come; each link once, so a loop ends.
  std::string target = qname;
  std::optional<uint32_t> ttl;
  std::vector<bool> used(answers.size(), false);
  for (bool moved = true; moved;) {
    moved = false;
    for (size_t i = 0; i < answers.size(); ++i) {
      const Rr& rr = answers[i];
      if (used[i] || rr.type != kRrCname || rr.rclass != kClassIn || rr.owner != target ||
          type == kRrCname)
        continue;
      std::string next;
      if (!RdataName(packet, rr, 0, &next))
        return std::nullopt;
      used[i] = true;
      ttl = ttl ? std::min(*ttl, rr.ttl) : rr.ttl;
      target = std::move(next);
      moved = true;
    }
  }
  for (const Rr& rr : answers) {
    if (rr.type != type || rr.rclass != kClassIn || rr.owner != target)
      continue;
    std::string rdata;
    if (type == kRrMx) {
      // preference, then the exchange without compression (what ParseMx reads)
      std::string exchange;
      if (rr.rdlength < 3 || !RdataName(packet, rr, 2, &exchange))
        return std::nullopt;
      rdata.assign(packet.substr(rr.rdata, 2));
      rdata += exchange;
    } else {
      rdata.assign(packet.substr(rr.rdata, rr.rdlength));
    }
    reply.rdata.push_back(std::move(rdata));
    ttl = ttl ? std::min(*ttl, rr.ttl) : rr.ttl;
  }
  reply.ttl = ttl.value_or(0);
  // The negative answer's TTL (RFC 2308 §5): the SOA's own TTL, at most its MINIMUM field,
  // the last 4 octets of its rdata.
  for (uint16_t i = 0; i < nscount; ++i) {
    Rr rr;
    if (!ReadRr(packet, &pos, &rr))
      return std::nullopt;
    if (rr.type == kRrSoa && rr.rdlength >= 22 && !reply.negative_ttl)
      reply.negative_ttl = std::min(rr.ttl, Get32(packet, rr.rdata + rr.rdlength - 4));
  }
  return reply;
}

}  // namespace spate::dns
