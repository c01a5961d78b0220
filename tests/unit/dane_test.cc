// tests/unit/dane_test.cc
//
// TLSA matching (core/tls/dane.h) against real certificates that the test makes with BoringSSL at
// run time: a root CA, an intermediate CA and leaves for mx.dest.test under them, plus expired,
// misnamed, self-signed, wildcard and foreign ones. The digests in the records are computed here
// from the keys (i2d_PUBKEY) and the DER, not by the code under test; one record's digest comes
// from the openssl command line.
#include "core/tls/dane.h"

#include <cstdio>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace spate::tls {
namespace {

constexpr int64_t kNow = 1'750'000'000;  // 2025-06-15
constexpr int64_t kDay = 86400;
const std::vector<std::string> kMx = {"mx.dest.test"};

struct Spec {
  std::string cn = {};
  bool ca = false;
  std::vector<std::string> dns = {};  // subjectAltName dNSNames
  int64_t not_before = kNow - 30 * kDay;
  int64_t not_after = kNow + 365 * kDay;
  int path_len = -1;  // pathLenConstraint of a CA; -1: none
};

struct Cert {
  bssl::UniquePtr<EVP_PKEY> key;
  bssl::UniquePtr<X509> x509;
  std::string der;
};

bssl::UniquePtr<EVP_PKEY> NewKey() {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  EXPECT_TRUE(ec != nullptr && EC_KEY_generate_key(ec.get()));
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  EXPECT_TRUE(EVP_PKEY_assign_EC_KEY(key.get(), ec.release()));
  return key;
}

void AddExtension(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  bssl::UniquePtr<X509_EXTENSION> ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  ASSERT_NE(ext, nullptr) << value;
  ASSERT_TRUE(X509_add_ext(x, ext.get(), -1));
}

// A certificate for `spec`, signed by `issuer` (nullptr: self-signed).
Cert Make(const Spec& spec, const Cert* issuer) {
  static long serial = 1;
  Cert c;
  c.key = NewKey();
  c.x509.reset(X509_new());
  X509* x = c.x509.get();
  EXPECT_TRUE(X509_set_version(x, X509_VERSION_3));
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_NAME* name = X509_get_subject_name(x);
  EXPECT_TRUE(X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_UTF8, reinterpret_cast<const uint8_t*>(spec.cn.c_str()), -1, -1, 0));
  X509* signer = issuer != nullptr ? issuer->x509.get() : x;
  EXPECT_TRUE(X509_set_issuer_name(x, X509_get_subject_name(signer)));
  EXPECT_TRUE(ASN1_TIME_set(X509_getm_notBefore(x), static_cast<time_t>(spec.not_before)));
  EXPECT_TRUE(ASN1_TIME_set(X509_getm_notAfter(x), static_cast<time_t>(spec.not_after)));
  EXPECT_TRUE(X509_set_pubkey(x, c.key.get()));
  if (spec.ca) {
    std::string bc = "critical,CA:TRUE";
    if (spec.path_len >= 0)
      bc += ",pathlen:" + std::to_string(spec.path_len);
    AddExtension(x, signer, NID_basic_constraints, bc);
    AddExtension(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(x, signer, NID_basic_constraints, "critical,CA:FALSE");
    AddExtension(x, signer, NID_key_usage, "critical,digitalSignature");
  }
  if (!spec.dns.empty()) {
    std::string san;
    for (const std::string& d : spec.dns)
      san += (san.empty() ? "DNS:" : ",DNS:") + d;
    AddExtension(x, signer, NID_subject_alt_name, san);
  }
  EVP_PKEY* signing_key = issuer != nullptr ? issuer->key.get() : c.key.get();
  EXPECT_GT(X509_sign(x, signing_key, EVP_sha256()), 0);
  uint8_t* der = nullptr;
  int len = i2d_X509(x, &der);
  EXPECT_GT(len, 0);
  c.der.assign(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return c;
}

// The SubjectPublicKeyInfo DER of the certificate's key, made from the key (not the certificate).
std::string Spki(const Cert& c) {
  uint8_t* der = nullptr;
  int len = i2d_PUBKEY(c.key.get(), &der);
  EXPECT_GT(len, 0);
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string Sha256(const std::string& s) {
  uint8_t md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(s.data()), s.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}

std::string Sha512(const std::string& s) {
  uint8_t md[SHA512_DIGEST_LENGTH];
  SHA512(reinterpret_cast<const uint8_t*>(s.data()), s.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}

// The record `usage selector matching` for `c`.
Tlsa Record(uint8_t usage, uint8_t selector, uint8_t matching, const Cert& c) {
  std::string selected = selector == 0 ? c.der : Spki(c);
  std::string data = matching == 0 ? selected : matching == 1 ? Sha256(selected) : Sha512(selected);
  return Tlsa{usage, selector, matching, data};
}

// Every certificate of the tests, made once.
struct Pki {
  Cert root = Make({.cn = "Test Root", .ca = true}, nullptr);
  Cert inter = Make({.cn = "Test Intermediate", .ca = true}, &root);
  Cert leaf = Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}}, &inter);
  Cert wrong_name = Make({.cn = "mx.other.test", .dns = {"mx.other.test"}}, &inter);
  Cert expired_leaf = Make({.cn = "mx.dest.test",
                            .dns = {"mx.dest.test"},
                            .not_before = kNow - 400 * kDay,
                            .not_after = kNow - kDay},
                           &inter);
  Cert future_leaf =
      Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}, .not_before = kNow + kDay}, &inter);
  Cert expired_inter = Make({.cn = "Expired Intermediate",
                             .ca = true,
                             .not_before = kNow - 400 * kDay,
                             .not_after = kNow - kDay},
                            &root);
  Cert under_expired = Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}}, &expired_inter);
  Cert self_signed = Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}}, nullptr);
  // Another CA whose intermediate has the very same name as `inter`: only signatures tell.
  Cert other_root = Make({.cn = "Other Root", .ca = true}, nullptr);
  Cert other_inter = Make({.cn = "Test Intermediate", .ca = true}, &other_root);
  Cert other_leaf = Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}}, &other_inter);
  Cert wildcard = Make({.cn = "wildcard", .dns = {"*.dest.test"}}, &inter);
  Cert partial_wildcard = Make({.cn = "partial", .dns = {"m*.dest.test"}}, &inter);
  Cert tld_wildcard = Make({.cn = "tld", .dns = {"*.test"}}, &inter);
  Cert cn_only = Make({.cn = "mx.dest.test"}, &inter);
  Cert san_beats_cn = Make({.cn = "mx.dest.test", .dns = {"other.dest.test"}}, &inter);
  Cert two_names = Make({.cn = "x", .dns = {"other.dest.test", "MX.Dest.Test"}}, &inter);
  // Signed by root but not a CA itself.
  Cert not_ca = Make({.cn = "Not A CA"}, &root);
  Cert under_not_ca = Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}}, &not_ca);
  // A root that allows no intermediate below it (pathlen:0).
  Cert strict_root = Make({.cn = "Strict Root", .ca = true, .path_len = 0}, nullptr);
  Cert strict_inter = Make({.cn = "Strict Intermediate", .ca = true}, &strict_root);
  Cert strict_leaf = Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}}, &strict_inter);
  Cert loop_ca = Make({.cn = "Loop CA", .ca = true}, nullptr);
  Cert under_loop = Make({.cn = "mx.dest.test", .dns = {"mx.dest.test"}}, &loop_ca);
};

const Pki& P() {
  static const Pki* pki = new Pki;
  return *pki;
}

DaneVerdict Match(const std::vector<Tlsa>& records, const std::vector<const Cert*>& chain,
                  const std::vector<std::string>& names = kMx, int64_t now = kNow) {
  std::vector<std::string> der;
  for (const Cert* c : chain)
    der.push_back(c->der);
  return MatchTlsa(records, der, names, now);
}

#define EXPECT_VERDICT(verdict, expected)        \
  do {                                           \
    DaneVerdict v_ = (verdict);                  \
    EXPECT_EQ(v_.result, expected) << v_.detail; \
  } while (0)

// --- DANE-EE(3) -------------------------------------------------------------------------------

TEST(DaneTest, DaneEeMatchesTheLeafInEverySelectorAndMatchingType) {
  const Pki& p = P();
  for (uint8_t selector : {0, 1}) {
    for (uint8_t matching : {0, 1, 2}) {
      SCOPED_TRACE(std::to_string(selector) + " " + std::to_string(matching));
      DaneVerdict v = Match({Record(3, selector, matching, p.leaf)}, {&p.leaf, &p.inter});
      EXPECT_EQ(v.result, DaneResult::kMatch) << v.detail;
      EXPECT_NE(v.detail.find("matched the leaf"), std::string::npos) << v.detail;
      // The same record for another certificate of the chain does not make a DANE-EE match.
      EXPECT_VERDICT(Match({Record(3, selector, matching, p.inter)}, {&p.leaf, &p.inter}),
                     DaneResult::kNoMatch);
    }
  }
}

TEST(DaneTest, DaneEeSpkiSha256MatchesTheOpensslCommandLine) {
  const Pki& p = P();
  char path[] = "/tmp/dane_test_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  FILE* f = fdopen(fd, "w");
  ASSERT_TRUE(PEM_write_X509(f, p.leaf.x509.get()));
  fclose(f);
  std::string cmd = std::string("openssl x509 -in ") + path +
                    " -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 "
                    "-binary 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string digest;
  char buf[256];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;)
    digest.append(buf, n);
  int status = pclose(pipe);
  unlink(path);
  if (status != 0 || digest.size() != 32)
    GTEST_SKIP() << "no usable openssl command (status " << status << ")";
  EXPECT_VERDICT(Match({Tlsa{3, 1, 1, digest}}, {&p.leaf}), DaneResult::kMatch);
  digest[31] ^= 1;
  EXPECT_VERDICT(Match({Tlsa{3, 1, 1, digest}}, {&p.leaf}), DaneResult::kNoMatch);
}

TEST(DaneTest, DaneEeWithAWrongDigestDoesNotMatch) {
  const Pki& p = P();
  for (uint8_t matching : {0, 1, 2}) {
    Tlsa r = Record(3, 1, matching, p.leaf);
    r.data[r.data.size() / 2] ^= 0x01;
    EXPECT_VERDICT(Match({r}, {&p.leaf, &p.inter}), DaneResult::kNoMatch);
  }
  // Another leaf's key, and the certificate digest given as a key digest.
  EXPECT_VERDICT(Match({Record(3, 1, 1, p.other_leaf)}, {&p.leaf}), DaneResult::kNoMatch);
  Tlsa swapped = Record(3, 0, 1, p.leaf);
  swapped.selector = 1;
  EXPECT_VERDICT(Match({swapped}, {&p.leaf}), DaneResult::kNoMatch);
}

TEST(DaneTest, DaneEeIgnoresValidityNamesAndChain) {
  const Pki& p = P();
  // RFC 7671 §5.1: the validity period and the names of a DANE-EE certificate do not matter.
  EXPECT_VERDICT(Match({Record(3, 1, 1, p.expired_leaf)}, {&p.expired_leaf}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(3, 1, 1, p.future_leaf)}, {&p.future_leaf}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(3, 1, 1, p.wrong_name)}, {&p.wrong_name}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(3, 0, 2, p.leaf)}, {&p.leaf}, {}), DaneResult::kMatch);
  // Nor does what follows the leaf.
  EXPECT_VERDICT(Match({Record(3, 1, 1, p.other_leaf)}, {&p.other_leaf, &p.inter}),
                 DaneResult::kMatch);
}

// --- DANE-TA(2) -------------------------------------------------------------------------------

TEST(DaneTest, DaneTaOnTheIntermediateMatches) {
  const Pki& p = P();
  DaneVerdict v = Match({Record(2, 0, 1, p.inter)}, {&p.leaf, &p.inter});
  EXPECT_EQ(v.result, DaneResult::kMatch) << v.detail;
  EXPECT_EQ(v.detail, "2 0 1 matched chain[1]");
  EXPECT_VERDICT(Match({Record(2, 1, 1, p.inter)}, {&p.leaf, &p.inter}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(2, 1, 2, p.inter)}, {&p.leaf, &p.inter}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(2, 0, 0, p.inter)}, {&p.leaf, &p.inter}), DaneResult::kMatch);
  // Not sent: nothing to match.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.inter)}, {&p.leaf}), DaneResult::kNoMatch);
}

TEST(DaneTest, DaneTaOnTheRootSentMatchesInAnyOrder) {
  const Pki& p = P();
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.root)}, {&p.leaf, &p.inter, &p.root}),
                 DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.root)}, {&p.leaf, &p.root, &p.inter}),
                 DaneResult::kMatch);
  // The root, but not the intermediate between it and the leaf.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.root)}, {&p.leaf, &p.root}), DaneResult::kNoMatch);
}

TEST(DaneTest, DaneTaOnTheLeafItselfIsNoTrustAnchor) {
  const Pki& p = P();
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.leaf)}, {&p.leaf, &p.inter}), DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.leaf)}, {&p.leaf}), DaneResult::kNoMatch);
}

TEST(DaneTest, DaneTaOnALoneSelfSignedLeaf) {
  const Pki& p = P();
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.self_signed)}, {&p.self_signed}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(2, 1, 1, p.self_signed)}, {&p.self_signed}), DaneResult::kMatch);
  // Still a DANE-TA match: the name counts, and so does the time.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.self_signed)}, {&p.self_signed}, {"mx.other.test"}),
                 DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.self_signed)}, {&p.self_signed}, kMx, kNow + 400 * kDay),
                 DaneResult::kNoMatch);
  // With more certificates sent, the leaf is not the anchor; DANE-EE still matches it.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.self_signed)}, {&p.self_signed, &p.inter}),
                 DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({Record(3, 0, 1, p.self_signed)}, {&p.self_signed, &p.inter}),
                 DaneResult::kMatch);
}

TEST(DaneTest, DaneTaOnTheRootKeyNotSent) {
  const Pki& p = P();
  // RFC 7671 §5.2: 2 1 0 carries the key itself, which verifies the top certificate sent.
  DaneVerdict v = Match({Record(2, 1, 0, p.root)}, {&p.leaf, &p.inter});
  EXPECT_EQ(v.result, DaneResult::kMatch) << v.detail;
  EXPECT_NE(v.detail.find("public key"), std::string::npos) << v.detail;
  EXPECT_VERDICT(Match({Record(2, 1, 0, p.other_root)}, {&p.leaf, &p.inter}), DaneResult::kNoMatch);
  // The key's digest cannot verify anything: with the root not sent, 2 1 1 does not match.
  EXPECT_VERDICT(Match({Record(2, 1, 1, p.root)}, {&p.leaf, &p.inter}), DaneResult::kNoMatch);
  // A bare key vouches for the chain below it as a certificate would: times and names count.
  EXPECT_VERDICT(Match({Record(2, 1, 0, p.root)}, {&p.under_expired, &p.expired_inter}),
                 DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({Record(2, 1, 0, p.root)}, {&p.wrong_name, &p.inter}), DaneResult::kNoMatch);
  // A bare key that signed the leaf directly.
  EXPECT_VERDICT(Match({Record(2, 1, 0, p.inter)}, {&p.leaf}), DaneResult::kMatch);
}

TEST(DaneTest, DaneTaChecksTheLeafName) {
  const Pki& p = P();
  Tlsa r = Record(2, 0, 1, p.inter);
  DaneVerdict v = Match({r}, {&p.wrong_name, &p.inter});
  EXPECT_EQ(v.result, DaneResult::kNoMatch) << v.detail;
  EXPECT_NE(v.detail.find("does not name mx.dest.test"), std::string::npos) << v.detail;
  // RFC 7672 §3.2.3: the TLSA base domain (after CNAME expansion) is a reference identifier too.
  EXPECT_VERDICT(Match({r}, {&p.wrong_name, &p.inter}, {"mx.dest.test", "mx.other.test"}),
                 DaneResult::kMatch);
  EXPECT_VERDICT(Match({r}, {&p.leaf, &p.inter}, {}), DaneResult::kNoMatch);
  // Case does not matter, nor does a trailing dot on either side; any of the SANs may match.
  EXPECT_VERDICT(Match({r}, {&p.leaf, &p.inter}, {"MX.DEST.TEST."}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({r}, {&p.two_names, &p.inter}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({r}, {&p.leaf, &p.inter}, {"x.mx.dest.test"}), DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({r}, {&p.leaf, &p.inter}, {"dest.test"}), DaneResult::kNoMatch);
}

TEST(DaneTest, DaneTaFallsBackToTheCommonNameOnlyWithoutDnsNames) {
  const Pki& p = P();
  Tlsa r = Record(2, 0, 1, p.inter);
  EXPECT_VERDICT(Match({r}, {&p.cn_only, &p.inter}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({r}, {&p.cn_only, &p.inter}, {"other.dest.test"}), DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({r}, {&p.san_beats_cn, &p.inter}), DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({r}, {&p.san_beats_cn, &p.inter}, {"other.dest.test"}), DaneResult::kMatch);
}

TEST(DaneTest, WildcardIsOneWholeLeftMostLabel) {
  const Pki& p = P();
  Tlsa r = Record(2, 0, 1, p.inter);
  EXPECT_VERDICT(Match({r}, {&p.wildcard, &p.inter}, {"mx.dest.test"}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({r}, {&p.wildcard, &p.inter}, {"MX.dest.test."}), DaneResult::kMatch);
  EXPECT_VERDICT(Match({r}, {&p.wildcard, &p.inter}, {"a.mx.dest.test"}), DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({r}, {&p.wildcard, &p.inter}, {"dest.test"}), DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({r}, {&p.wildcard, &p.inter}, {".dest.test"}), DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({r}, {&p.wildcard, &p.inter}, {"mx.other.test"}), DaneResult::kNoMatch);
  // A reference identifier is a name, not a pattern.
  EXPECT_VERDICT(Match({r}, {&p.wildcard, &p.inter}, {"*.dest.test"}), DaneResult::kNoMatch);
  // A wildcard over a single label names nothing.
  EXPECT_VERDICT(Match({r}, {&p.tld_wildcard, &p.inter}, {"dest.test"}), DaneResult::kNoMatch);
  // RFC 6125 §6.4.3 allows "m*" but RFC 7672 §3.2.3 does not.
  EXPECT_VERDICT(Match({r}, {&p.partial_wildcard, &p.inter}, {"mx.dest.test"}),
                 DaneResult::kNoMatch);
}

TEST(DaneTest, DaneTaChecksValidityAlongThePath) {
  const Pki& p = P();
  DaneVerdict v = Match({Record(2, 0, 1, p.expired_inter)}, {&p.under_expired, &p.expired_inter});
  EXPECT_EQ(v.result, DaneResult::kNoMatch) << v.detail;
  EXPECT_NE(v.detail.find("chain[1] is outside its validity period"), std::string::npos)
      << v.detail;
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.root)}, {&p.under_expired, &p.expired_inter, &p.root}),
                 DaneResult::kNoMatch);
  // The same chain while the intermediate was valid.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.root)}, {&p.under_expired, &p.expired_inter, &p.root},
                       kMx, kNow - 10 * kDay),
                 DaneResult::kMatch);
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.inter)}, {&p.expired_leaf, &p.inter}),
                 DaneResult::kNoMatch);
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.inter)}, {&p.future_leaf, &p.inter}),
                 DaneResult::kNoMatch);
  EXPECT_VERDICT(
      Match({Record(2, 0, 1, p.inter)}, {&p.future_leaf, &p.inter}, kMx, kNow + 2 * kDay),
      DaneResult::kMatch);
}

TEST(DaneTest, DaneTaNeedsTheSignatureOfTheTrustAnchor) {
  const Pki& p = P();
  // other_leaf names "Test Intermediate" as its issuer, like leaf; only the signature differs.
  DaneVerdict v = Match({Record(2, 0, 1, p.inter)}, {&p.other_leaf, &p.inter});
  EXPECT_EQ(v.result, DaneResult::kNoMatch) << v.detail;
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.other_inter)}, {&p.other_leaf, &p.other_inter}),
                 DaneResult::kMatch);
  // The server sends a foreign intermediate of the same name alongside: still no path.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.root)}, {&p.other_leaf, &p.inter, &p.root}),
                 DaneResult::kNoMatch);
  // The right path exists among the certificates sent, after a wrong one of the same name.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.root)}, {&p.leaf, &p.other_inter, &p.inter, &p.root}),
                 DaneResult::kMatch);
  // Signed by a CA that is not the one the record names.
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.other_root)}, {&p.leaf, &p.inter, &p.other_root}),
                 DaneResult::kNoMatch);
}

TEST(DaneTest, DaneTaNeedsCaCertificatesAndHonoursPathLength) {
  const Pki& p = P();
  DaneVerdict v = Match({Record(2, 0, 1, p.root)}, {&p.under_not_ca, &p.not_ca, &p.root});
  EXPECT_EQ(v.result, DaneResult::kNoMatch) << v.detail;
  EXPECT_NE(v.detail.find("not a CA"), std::string::npos) << v.detail;
  EXPECT_VERDICT(Match({Record(2, 0, 1, p.not_ca)}, {&p.under_not_ca, &p.not_ca}),
                 DaneResult::kNoMatch);
  // pathlen:0 on the root: no intermediate may sit below it, but the intermediate may anchor.
  EXPECT_VERDICT(
      Match({Record(2, 0, 1, p.strict_root)}, {&p.strict_leaf, &p.strict_inter, &p.strict_root}),
      DaneResult::kNoMatch);
  EXPECT_VERDICT(
      Match({Record(2, 0, 1, p.strict_inter)}, {&p.strict_leaf, &p.strict_inter, &p.strict_root}),
      DaneResult::kMatch);
}

// --- record sets, usability, parsing ----------------------------------------------------------

TEST(DaneTest, AnyUsableRecordThatMatchesIsAMatch) {
  const Pki& p = P();
  Tlsa wrong = Record(3, 1, 1, p.other_leaf);
  Tlsa pkix = Record(1, 1, 1, p.leaf);
  DaneVerdict v = Match({pkix, wrong, Record(2, 0, 1, p.inter)}, {&p.leaf, &p.inter});
  EXPECT_EQ(v.result, DaneResult::kMatch) << v.detail;
  EXPECT_EQ(v.detail, "2 0 1 matched chain[1]");
  v = Match({wrong, Record(2, 0, 1, p.other_inter)}, {&p.leaf, &p.inter});
  EXPECT_EQ(v.result, DaneResult::kNoMatch) << v.detail;
  // Each usable record says why it failed.
  EXPECT_NE(v.detail.find("3 1 1: the leaf does not match"), std::string::npos) << v.detail;
  EXPECT_NE(v.detail.find("2 0 1: no certificate sent matches"), std::string::npos) << v.detail;
}

TEST(DaneTest, PkixUsagesAndUnknownParametersAreUnusable) {
  const Pki& p = P();
  // RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) would match here, but SMTP does not use them.
  std::vector<Tlsa> pkix = {Record(0, 0, 1, p.root), Record(1, 1, 1, p.leaf)};
  EXPECT_FALSE(Usable(pkix[0]));
  EXPECT_FALSE(Usable(pkix[1]));
  EXPECT_VERDICT(Match(pkix, {&p.leaf, &p.inter, &p.root}), DaneResult::kNoUsableRecords);
  Tlsa usage4 = Record(3, 1, 1, p.leaf);
  usage4.usage = 4;
  Tlsa selector2 = Record(3, 1, 1, p.leaf);
  selector2.selector = 2;
  Tlsa matching3 = Record(3, 1, 1, p.leaf);
  matching3.matching_type = 3;
  Tlsa empty_full{3, 1, 0, ""};
  for (const Tlsa& r : {usage4, selector2, matching3, empty_full}) {
    EXPECT_FALSE(Usable(r)) << int{r.usage} << int{r.selector} << int{r.matching_type};
    EXPECT_VERDICT(Match({r}, {&p.leaf}), DaneResult::kNoUsableRecords);
  }
  EXPECT_VERDICT(Match({}, {&p.leaf}), DaneResult::kNoUsableRecords);
  EXPECT_TRUE(Usable(Record(3, 1, 1, p.leaf)));
  EXPECT_TRUE(Usable(Record(2, 0, 2, p.leaf)));
  EXPECT_TRUE(Usable(Record(2, 1, 0, p.leaf)));
}

TEST(DaneTest, DigestOfTheWrongLengthIsUnusable) {
  const Pki& p = P();
  Tlsa short256 = Record(3, 1, 1, p.leaf);
  short256.data.pop_back();  // 31 octets
  EXPECT_FALSE(Usable(short256));
  EXPECT_VERDICT(Match({short256}, {&p.leaf}), DaneResult::kNoUsableRecords);
  Tlsa long512 = Record(3, 1, 2, p.leaf);
  long512.data.push_back('x');  // 65 octets
  EXPECT_FALSE(Usable(long512));
  // A 32-octet digest claiming to be SHA2-512.
  Tlsa mislabelled = Record(3, 1, 1, p.leaf);
  mislabelled.matching_type = 2;
  EXPECT_FALSE(Usable(mislabelled));
  // A usable record beside them decides.
  EXPECT_VERDICT(Match({short256, Record(3, 1, 1, p.other_leaf)}, {&p.leaf}), DaneResult::kNoMatch);
}

std::string Rdata(uint8_t usage, uint8_t selector, uint8_t matching, const std::string& data) {
  return std::string{static_cast<char>(usage), static_cast<char>(selector),
                     static_cast<char>(matching)} +
         data;
}

TEST(DaneTest, ParseTlsaRdata) {
  const Pki& p = P();
  std::string digest = Sha256(Spki(p.leaf));
  std::optional<Tlsa> r = ParseTlsaRdata(Rdata(3, 1, 1, digest));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->usage, 3);
  EXPECT_EQ(r->selector, 1);
  EXPECT_EQ(r->matching_type, 1);
  EXPECT_EQ(r->data, digest);
  EXPECT_VERDICT(Match({*r}, {&p.leaf}), DaneResult::kMatch);

  r = ParseTlsaRdata(Rdata(2, 0, 2, Sha512(p.inter.der)));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->usage, 2);
  EXPECT_EQ(r->selector, 0);
  EXPECT_EQ(r->matching_type, 2);
  EXPECT_EQ(r->data, Sha512(p.inter.der));
  EXPECT_VERDICT(Match({*r}, {&p.leaf, &p.inter}), DaneResult::kMatch);

  // Full(0): any length, octets kept as they are (NULs included).
  std::string spki = Spki(p.leaf);
  r = ParseTlsaRdata(Rdata(3, 1, 0, spki));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->data, spki);
  // Octets above 127 in the header.
  r = ParseTlsaRdata(Rdata(255, 254, 253, "ab"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->usage, 255);
  EXPECT_EQ(r->selector, 254);
  EXPECT_EQ(r->matching_type, 253);
  EXPECT_EQ(r->data, "ab");
  EXPECT_FALSE(Usable(*r));

  EXPECT_FALSE(ParseTlsaRdata("").has_value());
  EXPECT_FALSE(ParseTlsaRdata(std::string("\x03\x01", 2)).has_value());
  r = ParseTlsaRdata(std::string("\x03\x01\x00", 3));  // parses, but names nothing
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(Usable(*r));
  EXPECT_FALSE(ParseTlsaRdata(Rdata(3, 1, 1, digest.substr(0, 31))).has_value());
  EXPECT_FALSE(ParseTlsaRdata(Rdata(3, 1, 1, digest + "x")).has_value());
  EXPECT_FALSE(ParseTlsaRdata(Rdata(3, 1, 2, digest)).has_value());
  EXPECT_TRUE(ParseTlsaRdata(Rdata(3, 1, 2, digest + digest)).has_value());
  EXPECT_FALSE(ParseTlsaRdata(Rdata(3, 1, 2, digest + digest + "x")).has_value());
}

// --- hostile input ----------------------------------------------------------------------------

TEST(DaneTest, GarbageDerNeverMatchesAndNeverCrashes) {
  const Pki& p = P();
  std::string truncated = p.leaf.der.substr(0, p.leaf.der.size() / 2);
  std::string trailing = p.leaf.der + std::string(1, '\0');
  std::vector<std::string> garbage = {"",        "\x30",   "not a certificate",
                                      truncated, trailing, std::string(5000, '\xff')};
  std::vector<Tlsa> records = {Record(3, 0, 1, p.leaf), Record(3, 1, 1, p.leaf),
                               Record(2, 0, 1, p.inter), Record(2, 1, 0, p.root)};
  for (size_t i = 0; i < garbage.size(); ++i) {
    SCOPED_TRACE(i);
    // As the leaf, also when its bytes are the record's own (3 0 0 on the garbage).
    DaneVerdict v = MatchTlsa(records, {garbage[i], p.inter.der}, kMx, kNow);
    EXPECT_EQ(v.result, DaneResult::kNoMatch) << v.detail;
    if (!garbage[i].empty()) {
      v = MatchTlsa({Tlsa{3, 0, 0, garbage[i]}}, {garbage[i]}, kMx, kNow);
      EXPECT_EQ(v.result, DaneResult::kNoMatch) << v.detail;
    }
    // As the intermediate: a DANE-TA path through it cannot exist, DANE-EE is not concerned.
    EXPECT_VERDICT(
        MatchTlsa({Record(2, 0, 1, p.root)}, {p.leaf.der, garbage[i], p.root.der}, kMx, kNow),
        DaneResult::kNoMatch);
    EXPECT_VERDICT(MatchTlsa({Record(3, 1, 1, p.leaf)}, {p.leaf.der, garbage[i]}, kMx, kNow),
                   DaneResult::kMatch);
    // Garbage beside the real intermediate is skipped.
    EXPECT_VERDICT(
        MatchTlsa({Record(2, 0, 1, p.inter)}, {p.leaf.der, garbage[i], p.inter.der}, kMx, kNow),
        DaneResult::kMatch);
    // Garbage as a 2 1 0 record's key.
    EXPECT_VERDICT(MatchTlsa({Tlsa{2, 1, 0, garbage[i].empty() ? "x" : garbage[i]}},
                             {p.leaf.der, p.inter.der}, kMx, kNow),
                   DaneResult::kNoMatch);
  }
  EXPECT_VERDICT(MatchTlsa({Record(3, 1, 1, p.leaf)}, {}, kMx, kNow), DaneResult::kNoMatch);
}

TEST(DaneTest, PathSearchIsBounded) {
  const Pki& p = P();
  // Fourteen copies of the self-signed CA that issued the leaf: each copy verifies every other,
  // so an unbounded search would try 14! orders before giving up on an anchor none reaches.
  std::vector<std::string> chain = {p.under_loop.der};
  for (int i = 0; i < 14; ++i)
    chain.push_back(p.loop_ca.der);
  chain.push_back(p.inter.der);
  std::vector<Tlsa> records(50, Record(2, 0, 1, p.inter));
  EXPECT_VERDICT(MatchTlsa(records, chain, kMx, kNow), DaneResult::kNoMatch);
  EXPECT_VERDICT(MatchTlsa({Record(2, 0, 1, p.loop_ca)}, chain, kMx, kNow), DaneResult::kMatch);
  // Certificates past the sixteenth are not looked at.
  std::vector<std::string> long_chain = {p.leaf.der};
  for (int i = 0; i < 20; ++i)
    long_chain.push_back(p.other_inter.der);
  long_chain.push_back(p.inter.der);
  EXPECT_VERDICT(MatchTlsa({Record(2, 0, 1, p.inter)}, long_chain, kMx, kNow),
                 DaneResult::kNoMatch);
  long_chain[15] = p.inter.der;
  EXPECT_VERDICT(MatchTlsa({Record(2, 0, 1, p.inter)}, long_chain, kMx, kNow), DaneResult::kMatch);
}

}  // namespace
}  // namespace spate::tls
