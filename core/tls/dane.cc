// core/tls/dane.cc
//
// TLSA matching (RFC 6698, RFC 7671, RFC 7672 §3). The chain is parsed once into Certs (DER, SPKI,
// their digests, the public key); each usable record is then tried against it. DANE-TA path
// building is a depth-first search over the certificates the server sent, from the leaf up to the
// matched trust anchor, so that a chain sent out of order still verifies (RFC 8446 §4.4.2 lets a
// TLS 1.3 server send its intermediates in any order). The search is bounded: at most kMaxChain
// certificates are looked at and at most kMaxSignatureChecks signatures are checked per call,
// however many records and however hostile the chain.
//
// BoringSSL's thread-local error queue collects the failures of X509_verify and friends; it is
// emptied before returning so that no later TLS call on this thread is blamed for them.
#include "core/tls/dane.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace spate::tls {
namespace {

// More certificates than this in one Certificate message are ignored (the leaf is always the
// first); real chains have two to four.
constexpr size_t kMaxChain = 16;
// Signature checks per MatchTlsa call, over all records.
constexpr int kMaxSignatureChecks = 256;
// The verdict's detail is for a log line.
constexpr size_t kMaxDetail = 600;

std::string RecordName(const Tlsa& r) {
  return std::to_string(r.usage) + " " + std::to_string(r.selector) + " " +
         std::to_string(r.matching_type);
}

std::string Index(size_t i) {
  return "chain[" + std::to_string(i) + "]";
}

// RFC 6698 §2.1.3: SHA2-256 and SHA2-512 of the selected octets; Full(0) is the octets.
std::string Digest(uint8_t matching_type, std::string_view bytes) {
  const auto* in = reinterpret_cast<const uint8_t*>(bytes.data());
  if (matching_type == kMatchSha256) {
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(in, bytes.size(), md);
    return std::string(reinterpret_cast<const char*>(md), sizeof(md));
  }
  uint8_t md[SHA512_DIGEST_LENGTH];
  SHA512(in, bytes.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}

// One certificate the server sent.
struct Cert {
  std::string_view der;           // as sent
  bssl::UniquePtr<X509> x509;     // null when `der` is not one whole certificate
  bssl::UniquePtr<EVP_PKEY> key;  // its public key; null when BoringSSL cannot use it
  std::string spki;               // DER SubjectPublicKeyInfo (selector 1)
  std::string digest[2][2];       // [selector][matching type - 1]

  bool Matches(const Tlsa& r) const {
    if (x509 == nullptr || r.selector > kSelectorSpki || r.matching_type > kMatchSha512)
      return false;
    std::string_view selected = r.selector == kSelectorCert ? der : std::string_view(spki);
    if (selected.empty())
      return false;
    if (r.matching_type == kMatchFull)
      return selected == r.data;
    return digest[r.selector][r.matching_type - 1] == r.data;
  }
};

Cert ParseCert(std::string_view der) {
  Cert c;
  c.der = der;
  const auto* p = reinterpret_cast<const uint8_t*>(der.data());
  const uint8_t* end = p + der.size();
  if (der.empty() || der.size() > static_cast<size_t>(LONG_MAX))
    return c;
  c.x509.reset(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (c.x509 != nullptr && p != end)
    c.x509.reset();  // trailing octets: not a certificate
  if (c.x509 == nullptr)
    return c;
  c.key.reset(X509_get_pubkey(c.x509.get()));
  uint8_t* out = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c.x509.get()), &out);
  if (len > 0)
    c.spki.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  for (uint8_t s : {kSelectorCert, kSelectorSpki}) {
    std::string_view selected = s == kSelectorCert ? der : std::string_view(c.spki);
    if (selected.empty())
      continue;
    c.digest[s][0] = Digest(kMatchSha256, selected);
    c.digest[s][1] = Digest(kMatchSha512, selected);
  }
  return c;
}

char Lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return Lower(x) == Lower(y); });
}

// A name from a certificate against a reference identifier (no trailing dot, no '*').
// RFC 6125 §6.4.3 as RFC 7672 §3.2.3 narrows it: "*" only as the whole left-most label, standing
// for exactly one non-empty label, and only above at least two labels ("*.test" names nothing).
bool HostMatches(std::string_view pattern, std::string_view ref) {
  if (!pattern.empty() && pattern.back() == '.')
    pattern.remove_suffix(1);
  if (pattern.empty())
    return false;
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    std::string_view rest = pattern.substr(2);
    if (rest.find('*') != std::string_view::npos || rest.find('.') == std::string_view::npos)
      return false;
    size_t dot = ref.find('.');
    return dot != std::string_view::npos && dot > 0 && EqualsIgnoreCase(ref.substr(dot + 1), rest);
  }
  if (pattern.find('*') != std::string_view::npos)
    return false;  // partial wildcards ("m*.dest.test") are not honoured
  return EqualsIgnoreCase(pattern, ref);
}

std::string_view AsView(const ASN1_STRING* s) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<size_t>(ASN1_STRING_length(s))};
}

// RFC 7672 §3.2.3: the leaf's DNS subjectAltNames against `refs`; its subject CNs only when it
// has no DNS subjectAltName (RFC 6125 §6.4.4). A malformed subjectAltName names nothing.
bool LeafNames(X509* leaf, const std::vector<std::string>& refs) {
  int critical = -1;
  bssl::UniquePtr<GENERAL_NAMES> sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf, NID_subject_alt_name, &critical, nullptr)));
  if (sans == nullptr && critical != -1)
    return false;
  bool has_dns = false;
  for (size_t i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* gen = sk_GENERAL_NAME_value(sans.get(), i);
    if (gen->type != GEN_DNS)
      continue;
    has_dns = true;
    std::string_view name = AsView(gen->d.dNSName);
    for (const std::string& ref : refs) {
      if (HostMatches(name, ref))
        return true;
    }
  }
  if (has_dns)
    return false;
  const X509_NAME* subject = X509_get_subject_name(leaf);
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, cn);
    if (len < 0)
      continue;
    std::string name(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
    OPENSSL_free(utf8);
    for (const std::string& ref : refs) {
      if (HostMatches(name, ref))
        return true;
    }
  }
  return false;
}

// RFC 5280 §4.1.2.5: notBefore <= now < notAfter (X509_cmp_time returns 0 on a bad time).
bool WithinValidity(const X509* x, int64_t now_unix) {
  time_t now = static_cast<time_t>(now_unix);
  const ASN1_TIME* not_before = X509_get0_notBefore(x);
  const ASN1_TIME* not_after = X509_get0_notAfter(x);
  return not_before != nullptr && not_after != nullptr && X509_cmp_time(not_before, &now) < 0 &&
         X509_cmp_time(not_after, &now) > 0;
}

// The trust anchor of a DANE-TA record: a certificate the server sent, or a bare public key
// (2 1 0 whose key the server did not send as a certificate).
struct Anchor {
  size_t index = SIZE_MAX;  // into the chain; SIZE_MAX for a bare key
  EVP_PKEY* key = nullptr;  // the anchor's public key; borrowed
};

class Matcher {
 public:
  Matcher(const std::vector<std::string>& chain_der, const std::vector<std::string>& names,
          int64_t now_unix)
      : now_(now_unix) {
    size_t n = std::min(chain_der.size(), kMaxChain);
    for (size_t i = 0; i < n; ++i)
      certs_.push_back(ParseCert(chain_der[i]));
    for (const std::string& name : names) {
      std::string_view ref = name;
      if (!ref.empty() && ref.back() == '.')
        ref.remove_suffix(1);
      if (!ref.empty() && ref.find('*') == std::string_view::npos)
        refs_.emplace_back(ref);
    }
  }

  // Whether `r` (usable) authenticates the chain; `why` says on what it matched, or why not.
  bool Try(const Tlsa& r, std::string* why) {
    if (certs_.empty()) {
      *why = "no certificate";
      return false;
    }
    if (certs_[0].x509 == nullptr) {
      *why = "the leaf certificate does not parse";
      return false;
    }
    return r.usage == kUsageDaneEe ? TryEe(r, why) : TryTa(r, why);
  }

 private:
  // RFC 7672 §3.1.1, RFC 7671 §5.1: the leaf alone; its names and validity period are ignored.
  bool TryEe(const Tlsa& r, std::string* why) {
    if (!certs_[0].Matches(r)) {
      *why = "the leaf does not match";
      return false;
    }
    *why = "matched the leaf";
    return true;
  }

  // RFC 7672 §3.1.2, RFC 7671 §5.2: a trust anchor the server sent (or, for 2 1 0, its key),
  // a verified path from the leaf up to it, and the leaf's name (RFC 7672 §3.2.3).
  bool TryTa(const Tlsa& r, std::string* why) {
    std::string failure;
    bool anchor_found = false;
    // The leaf is its own anchor only when it is all the server sent and it is self-signed.
    size_t first = certs_.size() == 1 ? 0 : 1;
    for (size_t i = first; i < certs_.size(); ++i) {
      if (!certs_[i].Matches(r))
        continue;
      if (i == 0 && !SelfSigned(0))
        continue;
      anchor_found = true;
      if (Verified(Anchor{i, certs_[i].key.get()}, &failure))
        return NameChecked(Index(i), why);
    }
    // RFC 7671 §5.2: a DANE-TA SPKI(1) Full(0) record is itself a public key, so the anchor may
    // be a key that only signed the top certificate sent. A digest cannot stand for a key. The
    // key is the anchor here: a certificate sent with it is not checked itself.
    bool bare_key = false;
    if (r.selector == kSelectorSpki && r.matching_type == kMatchFull) {
      const auto* p = reinterpret_cast<const uint8_t*>(r.data.data());
      const uint8_t* end = p + r.data.size();
      bssl::UniquePtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(r.data.size())));
      bare_key = key != nullptr && p == end;
      if (bare_key && Verified(Anchor{SIZE_MAX, key.get()}, &failure))
        return NameChecked("a public key that signed the chain", why);
    }
    if (signature_checks_ >= kMaxSignatureChecks)
      *why = "too many signatures to check";
    else if (!failure.empty())
      *why = failure;
    else if (anchor_found)
      *why = "the leaf does not chain to the matching certificate";
    else if (bare_key)
      *why = "no certificate sent matches or is signed by the key";
    else
      *why = "no certificate sent matches";
    return false;
  }

  bool NameChecked(const std::string& anchor, std::string* why) {
    if (!LeafNames(certs_[0].x509.get(), refs_)) {
      *why = anchor + " matched, but the leaf does not name " +
             (refs_.empty() ? std::string("the destination") : refs_.front());
      return false;
    }
    *why = "matched " + anchor;
    return true;
  }

  bool CheckSignature(size_t subject, EVP_PKEY* key) {
    if (key == nullptr || signature_checks_ >= kMaxSignatureChecks)
      return false;
    ++signature_checks_;
    return X509_verify(certs_[subject].x509.get(), key) == 1;
  }

  bool SelfSigned(size_t i) {
    X509* x = certs_[i].x509.get();
    return X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(x)) == 0 &&
           CheckSignature(i, certs_[i].key.get());
  }

  // Checks every certificate on a path needs: in its validity period, and no extension that
  // BoringSSL could not parse or does not know and that is critical (RFC 5280 §4.2).
  bool Acceptable(size_t i, std::string* failure) {
    X509* x = certs_[i].x509.get();
    if (!WithinValidity(x, now_)) {
      SetOnce(failure, Index(i) + " is outside its validity period");
      return false;
    }
    if ((X509_get_extension_flags(x) & (EXFLAG_INVALID | EXFLAG_CRITICAL)) != 0) {
      SetOnce(failure, Index(i) + " has a malformed or unknown critical extension");
      return false;
    }
    return true;
  }

  // An issuer's certificate: a CA (basicConstraints cA, keyCertSign if it has a keyUsage,
  // RFC 5280 §4.2.1.9, §4.2.1.3) whose pathLenConstraint allows the `below` intermediate CAs
  // between it and the leaf.
  bool CanIssue(size_t i, int below, std::string* failure) {
    if (!Acceptable(i, failure))
      return false;
    X509* x = certs_[i].x509.get();
    if (X509_check_ca(x) != 1) {
      SetOnce(failure, Index(i) + " is not a CA certificate");
      return false;
    }
    long path_len = X509_get_pathlen(x);
    if (path_len >= 0 && below > path_len) {
      SetOnce(failure, Index(i) + "'s path length constraint is exceeded");
      return false;
    }
    return true;
  }

  bool Verified(const Anchor& anchor, std::string* failure) {
    if (anchor.index == 0) {  // a lone self-signed leaf
      return Acceptable(0, failure);
    }
    return Reaches(0, anchor, 0, 1u, failure);
  }

  // Whether certificate `c` (acceptable so far) chains up to `anchor`, through certificates not in
  // `used`. `below`: intermediate CAs between `c` and the leaf, `c` excluded.
  bool Reaches(size_t c, const Anchor& anchor, int below, uint32_t used, std::string* failure) {
    if (!Acceptable(c, failure))
      return false;
    int issuer_below = c == 0 ? 0 : below + 1;
    if (anchor.index == SIZE_MAX) {
      if (CheckSignature(c, anchor.key))
        return true;
    } else if (IssuedBy(c, anchor.index) && CanIssue(anchor.index, issuer_below, failure) &&
               CheckSignature(c, anchor.key)) {
      return true;
    }
    for (size_t j = 1; j < certs_.size(); ++j) {
      if ((used & (1u << j)) != 0 || j == anchor.index || certs_[j].x509 == nullptr ||
          !IssuedBy(c, j)) {
        continue;
      }
      if (!CanIssue(j, issuer_below, failure) || !CheckSignature(c, certs_[j].key.get()))
        continue;
      if (Reaches(j, anchor, issuer_below, used | (1u << j), failure))
        return true;
    }
    return false;
  }

  // RFC 5280 §6.1.3 (a)(4): the subject's issuer is the issuer's subject.
  bool IssuedBy(size_t subject, size_t issuer) const {
    return X509_NAME_cmp(X509_get_issuer_name(certs_[subject].x509.get()),
                         X509_get_subject_name(certs_[issuer].x509.get())) == 0;
  }

  static void SetOnce(std::string* failure, std::string text) {
    if (failure->empty())
      *failure = std::move(text);
  }

  std::vector<Cert> certs_;
  std::vector<std::string> refs_;
  int64_t now_;
  int signature_checks_ = 0;
};

}  // namespace

std::optional<Tlsa> ParseTlsaRdata(std::string_view rdata) {
  // RFC 6698 §2.1: usage, selector and matching type, one octet each, then the data.
  if (rdata.size() < 3)
    return std::nullopt;
  Tlsa r;
  r.usage = static_cast<uint8_t>(rdata[0]);
  r.selector = static_cast<uint8_t>(rdata[1]);
  r.matching_type = static_cast<uint8_t>(rdata[2]);
  r.data.assign(rdata.substr(3));
  if ((r.matching_type == kMatchSha256 && r.data.size() != SHA256_DIGEST_LENGTH) ||
      (r.matching_type == kMatchSha512 && r.data.size() != SHA512_DIGEST_LENGTH)) {
    return std::nullopt;
  }
  return r;
}

bool Usable(const Tlsa& r) {
  // RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP; RFC 7671 §4 (and
  // RFC 6698 §4.1): so are unknown parameters and malformed data.
  if (r.usage != kUsageDaneTa && r.usage != kUsageDaneEe)
    return false;
  if (r.selector != kSelectorCert && r.selector != kSelectorSpki)
    return false;
  switch (r.matching_type) {
    case kMatchFull:
      return !r.data.empty();
    case kMatchSha256:
      return r.data.size() == SHA256_DIGEST_LENGTH;
    case kMatchSha512:
      return r.data.size() == SHA512_DIGEST_LENGTH;
    default:
      return false;
  }
}

DaneVerdict MatchTlsa(const std::vector<Tlsa>& records, const std::vector<std::string>& chain_der,
                      const std::vector<std::string>& names, int64_t now_unix) {
  DaneVerdict verdict;
  size_t usable = 0;
  Matcher matcher(chain_der, names, now_unix);
  for (const Tlsa& r : records) {
    if (!Usable(r))
      continue;
    ++usable;
    std::string why;
    // RFC 6698 §4.1, RFC 7671 §5: any one usable record that matches authenticates the server.
    if (matcher.Try(r, &why)) {
      verdict.result = DaneResult::kMatch;
      verdict.detail = RecordName(r) + " " + why;
      ERR_clear_error();
      return verdict;
    }
    if (verdict.detail.size() < kMaxDetail) {
      if (!verdict.detail.empty())
        verdict.detail += "; ";
      verdict.detail += RecordName(r) + ": " + why;
      if (verdict.detail.size() >= kMaxDetail)
        verdict.detail += "; ...";
    }
  }
  ERR_clear_error();
  if (usable == 0) {
    verdict.result = DaneResult::kNoUsableRecords;
    verdict.detail = "none of the " + std::to_string(records.size()) + " TLSA records is usable";
    return verdict;
  }
  verdict.result = DaneResult::kNoMatch;
  return verdict;
}

}  // namespace spate::tls
