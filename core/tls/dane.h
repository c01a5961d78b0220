// core/tls/dane.h
//
// DANE for SMTP (RFC 7672): matching the TLSA records of a destination against the certificate
// chain its server sent, the part of DANE that BoringSSL lacks. Sans-I/O: pure functions over
// TLSA rdata and DER certificates. Finding the records (DNSSEC-validated, RFC 7672 §2.2) and
// running the handshake are the caller's; the chain given here must come from a completed
// handshake, which is what proves that the server holds the leaf's private key.
//
// SMTP uses only DANE-TA(2) and DANE-EE(3) (RFC 7672 §3.1): PKIX-TA(0) and PKIX-EE(1) records,
// unknown selectors and matching types, and malformed digests are unusable. Every usable record
// is tried; one match authenticates the server (RFC 6698 §4.1, RFC 7671 §5).
// - DANE-EE(3): the leaf alone is matched; no name, validity or chain checks (RFC 7672 §3.1.1,
//   RFC 7671 §5.1).
// - DANE-TA(2): a certificate the server sent (RFC 7672 §3.1.2), or for 2 1 0 a bare public key,
//   is the trust anchor; the leaf must chain up to it through the certificates the server sent
//   (signatures, names, validity at `now_unix`, CA constraints) and name one of the reference
//   identifiers (RFC 7672 §3.2.3).
// Threading: any thread; no shared state. Never blocks. Garbage input is a verdict, not a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spate::tls {

// TLSA certificate usages, selectors and matching types (RFC 6698 §2.1.1-§2.1.3, RFC 7218).
inline constexpr uint8_t kUsagePkixTa = 0;
inline constexpr uint8_t kUsagePkixEe = 1;
inline constexpr uint8_t kUsageDaneTa = 2;
inline constexpr uint8_t kUsageDaneEe = 3;
inline constexpr uint8_t kSelectorCert = 0;
inline constexpr uint8_t kSelectorSpki = 1;
inline constexpr uint8_t kMatchFull = 0;
inline constexpr uint8_t kMatchSha256 = 1;
inline constexpr uint8_t kMatchSha512 = 2;

// One TLSA RR's rdata (RFC 6698 §2.1).
struct Tlsa {
  uint8_t usage = 0;
  uint8_t selector = 0;
  uint8_t matching_type = 0;
  std::string data;  // the certificate association data, raw octets
};

// Parses TLSA rdata in wire format (RFC 6698 §2.1: usage, selector, matching type, then the
// data). nullopt when shorter than 3 octets or when a digest has the wrong length
// (SHA2-256: 32 octets, SHA2-512: 64): such a record is unusable. Unknown usages, selectors and
// matching types parse; Usable() says no to them.
std::optional<Tlsa> ParseTlsaRdata(std::string_view rdata);

// True when an SMTP client may use the record (RFC 7672 §3.1): usage DANE-TA(2) or DANE-EE(3),
// a known selector and matching type, and data of the right length (non-empty for Full(0)).
bool Usable(const Tlsa& record);

enum class DaneResult {
  kMatch,            // a usable record authenticates the chain
  kNoMatch,          // usable records exist and none does: the delivery must not proceed
  kNoUsableRecords,  // nothing usable: mandatory unauthenticated TLS (RFC 7672 §2.2)
};

struct DaneVerdict {
  DaneResult result = DaneResult::kNoMatch;
  // For the log: the record that matched and on what ("2 0 1 matched chain[1]"), or why each
  // usable record did not (bounded in length).
  std::string detail;
};

// `records`: the destination's TLSA RRset, parsed. `chain_der`: the peer's certificates as DER,
// leaf first, as the server sent them (any order after the leaf). `names`: the reference
// identifiers for DANE-TA name checks (RFC 7672 §3.2.3): the MX host name and, when it differs,
// the TLSA base domain (the name after CNAME expansion); a trailing dot is ignored. They are
// compared, without case, with the leaf's DNS subjectAltNames ("*." only as the whole left-most
// label, RFC 6125 §6.4.3), or with its subject CN when it has no DNS subjectAltName (RFC 6125
// §6.4.4). `now_unix`: the time for the validity periods of a DANE-TA chain.
DaneVerdict MatchTlsa(const std::vector<Tlsa>& records, const std::vector<std::string>& chain_der,
                      const std::vector<std::string>& names, int64_t now_unix);

}  // namespace spate::tls
