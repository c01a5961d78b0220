// tests/unit/dkim_test.cc
//
// core/dkim: relaxed canonicalization against RFC 6376 §3.4.5 and RFC 8463 Appendix A and
// hand-computed cases (SHA-256 values computed with Python's hashlib), the From: domain, key
// loading and its errors, the choice of entries, the signature field's form, and above all
// signatures checked by an independent verifier: Debian's python3-dkim (dkimpy), through
// tests/dkim/verify.py, with the public keys taken from the key files by the openssl command.
// Keys are made once per run with `openssl genpkey` in a temporary directory.
#include "core/dkim/dkim.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

namespace spate::dkim {
namespace {

namespace fs = std::filesystem;

// ---- Helpers -----------------------------------------------------------------------------------

// Runs a shell command; its standard output (and error, when `merge`), and *status.
std::string Shell(const std::string& command, int* status = nullptr, bool merge = true) {
  std::string out;
  FILE* p = popen((command + (merge ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (p == nullptr)
    return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0)
    out.append(buf, n);
  const int rc = pclose(p);
  if (status != nullptr)
    *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

void WriteFile(const std::string& path, std::string_view text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string B64(const std::string& raw) {
  return Base64(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

// The test keys, made once: RSA-2048 (PKCS#8 and the same key as PKCS#1), Ed25519, and the
// ones that must be refused. `*_txt` are the DNS records a verifier would fetch.
struct Keys {
  std::string dir;
  std::string rsa, rsa_pkcs1, ed, rsa512, ec, encrypted, garbage, fake_pem;
  std::string rsa_txt, ed_txt;
  std::string error;  // why making them failed, if it did
};

const Keys& TestKeys() {
  static const Keys keys = [] {
    Keys k;
    char tmpl[] = "/tmp/dkim_test.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      k.error = "mkdtemp failed";
      return k;
    }
    k.dir = tmpl;
    k.rsa = k.dir + "/rsa.pem";
    k.rsa_pkcs1 = k.dir + "/rsa-pkcs1.pem";
    k.ed = k.dir + "/ed25519.pem";
    k.rsa512 = k.dir + "/rsa512.pem";
    k.ec = k.dir + "/ec.pem";
    k.encrypted = k.dir + "/encrypted.pem";
    k.garbage = k.dir + "/garbage.pem";
    k.fake_pem = k.dir + "/fake.pem";
    const std::vector<std::string> commands = {
        "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + k.rsa,
        "openssl rsa -in " + k.rsa + " -traditional -out " + k.rsa_pkcs1,
        "openssl genpkey -algorithm ED25519 -out " + k.ed,
        "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512 -out " + k.rsa512,
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + k.ec,
        "openssl genpkey -algorithm ED25519 -aes-128-cbc -pass pass:secret -out " + k.encrypted,
    };
    for (const std::string& c : commands) {
      int status = 0;
      const std::string out = Shell(c, &status);
      if (status != 0) {
        k.error = c + ": " + out + " (is the openssl command installed?)";
        return k;
      }
    }
    WriteFile(k.garbage, "this is not a key\n");
    WriteFile(k.fake_pem, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
    // The public keys as DNS would publish them: the SPKI for RSA (RFC 6376 §3.6.1), the raw
    // 32 octets for Ed25519 (RFC 8463 §4.2), which end its SPKI.
    int status = 0;
    const std::string rsa_spki =
        Shell("openssl pkey -in " + k.rsa + " -pubout -outform DER", &status, false);
    const std::string ed_spki =
        Shell("openssl pkey -in " + k.ed + " -pubout -outform DER", &status, false);
    if (status != 0 || ed_spki.size() != 44) {
      k.error = "openssl pkey -pubout failed";
      return k;
    }
    k.rsa_txt = "v=DKIM1; k=rsa; p=" + B64(rsa_spki);
    k.ed_txt = "v=DKIM1; k=ed25519; p=" + B64(ed_spki.substr(12));
    return k;
  }();
  return keys;
}

class KeysCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    // Only if the keys were made: TestKeys() is not called here for the first time.
    if (made_)
      fs::remove_all(TestKeys().dir);
  }
  static void Made() { made_ = true; }

 private:
  static inline bool made_ = false;
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new KeysCleanup);

const Keys& RequireKeys() {
  const Keys& k = TestKeys();
  KeysCleanup::Made();
  EXPECT_EQ(k.error, "");
  return k;
}

KeySpec Spec(std::string domain, std::string selector, std::string file, bool is_default = false) {
  KeySpec s;
  s.domain = std::move(domain);
  s.selector = std::move(selector);
  s.key_file = std::move(file);
  s.is_default = is_default;
  return s;
}

Signer MustCreate(const std::vector<KeySpec>& specs) {
  std::string error;
  std::optional<Signer> s = Signer::Create(specs, &error);
  EXPECT_TRUE(s.has_value()) << error;
  if (!s.has_value())
    std::abort();  // the test cannot go on without it, and said why above
  return std::move(*s);
}

// dkimpy's verdict on `message`: "ok" when every signature verifies with `txt`, else why.
std::string PyVerify(const std::string& message, const std::string& txt) {
  static int n = 0;
  const std::string path = TestKeys().dir + "/message-" + std::to_string(n++) + ".eml";
  WriteFile(path, message);
  std::string out = Shell("/usr/bin/python3 " SPATE_DKIM_VERIFY " " + path + " '" + txt + "'");
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

// The value of `tag` in the DKIM-Signature field that `text` starts with, whitespace removed.
std::string Tag(const std::string& text, const std::string& tag) {
  // The field runs until a line that does not start with SP (a continuation).
  std::string compact;
  for (size_t pos = 0; pos < text.size();) {
    const size_t e = std::min(text.find("\r\n", pos), text.size());
    for (char c : text.substr(pos, e - pos)) {
      if (c != ' ' && c != '\t')
        compact += c;
    }
    pos = e + 2;
    if (pos >= text.size() || text[pos] != ' ')
      break;
  }
  const std::string prefix = "DKIM-Signature:";
  if (compact.rfind(prefix, 0) != 0)
    return "<not a DKIM-Signature field>";
  std::string_view rest = std::string_view(compact).substr(prefix.size());
  while (!rest.empty()) {
    const size_t semi = std::min(rest.find(';'), rest.size());
    const std::string_view spec = rest.substr(0, semi);
    if (spec.substr(0, spec.find('=')) == tag)
      return std::string(spec.substr(std::min(spec.find('=') + 1, spec.size())));
    rest.remove_prefix(std::min(semi + 1, rest.size()));
  }
  return "<no " + tag + "=>";
}

// ---- RelaxedHeader (RFC 6376 §3.4.2) -----------------------------------------------------------

TEST(DkimRelaxedHeader, TheExampleOfRfc6376Section345) {
  // "A: <SP> X <CRLF>" and "B <SP> : <SP> Y <HTAB><CRLF> <HTAB> Z <SP><SP><CRLF>".
  EXPECT_EQ(RelaxedHeader("A", " X"), "a:X");
  EXPECT_EQ(RelaxedHeader("B ", " Y\t\r\n\tZ  "), "b:Y Z");
  const SplitMessage m = Split("A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n");
  ASSERT_EQ(m.fields.size(), 2u);
  EXPECT_EQ(RelaxedHeader(m.fields[0].name, m.fields[0].value), "a:X");
  EXPECT_EQ(RelaxedHeader(m.fields[1].name, m.fields[1].value), "b:Y Z");
  EXPECT_EQ(m.body, " C \r\nD \t E\r\n\r\n\r\n");
}

TEST(DkimRelaxedHeader, WhitespaceRunsFoldsAndCase) {
  EXPECT_EQ(RelaxedHeader("SUBJECT", "  Spring\t  sale,\r\n\tfolded   twice\r\n  and  again "),
            "subject:Spring sale, folded twice and again");
  EXPECT_EQ(RelaxedHeader("Content-Type", " text/plain;\r\n charset=utf-8"),
            "content-type:text/plain; charset=utf-8");
  EXPECT_EQ(RelaxedHeader("X-Empty", ""), "x-empty:");
  EXPECT_EQ(RelaxedHeader("X-Blank", " \t \r\n  "), "x-blank:");
  EXPECT_EQ(RelaxedHeader("Name \t", "v"), "name:v");
  // Only ASCII letters are folded in the name; the value keeps its case and its 8-bit octets.
  EXPECT_EQ(RelaxedHeader("To", " J\xc3\xbcrgen <J@X.example>"), "to:J\xc3\xbcrgen <J@X.example>");
}

// ---- RelaxedBody / RelaxedBodyHash (RFC 6376 §3.4.4) -------------------------------------------

constexpr const char* kEmptyHash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";  // SHA-256("")

TEST(DkimRelaxedBody, TheExampleOfRfc6376Section345) {
  const std::string body = " C \r\nD \t E\r\n\r\n\r\n";
  EXPECT_EQ(RelaxedBody(body), " C\r\nD E\r\n");
  EXPECT_EQ(RelaxedBodyHash(body), "unak6JHq0wL+Q1HP7dW1tjBx9FLA6DffoZ0qrLwbbpo=");
}

TEST(DkimRelaxedBody, TheBodyHashOfRfc8463AppendixA) {
  // The example message of RFC 6376 Appendix A, as RFC 8463 signs it: bh= of its signatures.
  EXPECT_EQ(RelaxedBodyHash("Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
}

TEST(DkimRelaxedBody, EmptyBodiesHashTheEmptyString) {
  EXPECT_EQ(RelaxedBody(""), "");
  EXPECT_EQ(RelaxedBodyHash(""), kEmptyHash);
  EXPECT_EQ(RelaxedBodyHash("\r\n"), kEmptyHash);
  EXPECT_EQ(RelaxedBodyHash("\r\n\r\n\r\n"), kEmptyHash);
  EXPECT_EQ(RelaxedBodyHash(" \t\r\n  \r\n"), kEmptyHash);  // blank lines are empty lines
}

TEST(DkimRelaxedBody, RunsOfWhitespaceAndTrailingWhitespace) {
  EXPECT_EQ(RelaxedBody("a  \t b\t\r\n\t\tx \r\n"), "a b\r\n x\r\n");
  EXPECT_EQ(RelaxedBodyHash("a  \t b\t\r\n\t\tx \r\n"),
            "Kzvuyy4RtE5OHU9zahg1bj+ceO/8/emo2Ke17TClpoM=");
}

TEST(DkimRelaxedBody, TrailingEmptyLinesGoInnerOnesStay) {
  EXPECT_EQ(RelaxedBody("a\r\n\r\nb\r\n\r\n\r\n"), "a\r\n\r\nb\r\n");
  EXPECT_EQ(RelaxedBodyHash("a\r\n\r\nb\r\n\r\n\r\n"),
            "zCIZgM59A4jZIcXrGIzhpoD2WhSv0BLiYnkKxFCegn8=");
  EXPECT_EQ(RelaxedBody("a\r\n \r\n\t\r\nb\r\n"), "a\r\n\r\n\r\nb\r\n");
}

TEST(DkimRelaxedBody, ALastLineWithoutCrlfGetsOne) {
  EXPECT_EQ(RelaxedBody("abc"), "abc\r\n");
  EXPECT_EQ(RelaxedBodyHash("abc"), "VSuraGTHp7aaUC7RhUuSRcDhow8AiqoLKB2mJYX9sCU=");
  EXPECT_EQ(RelaxedBodyHash("abc\r\n"), "VSuraGTHp7aaUC7RhUuSRcDhow8AiqoLKB2mJYX9sCU=");
  // Its trailing WSP goes as on any line (§3.4.4 "at the end of lines"); a blank one is empty.
  EXPECT_EQ(RelaxedBody("abc \t"), "abc\r\n");
  EXPECT_EQ(RelaxedBody("a\r\n  "), "a\r\n");
}

TEST(DkimRelaxedBody, OnlyCrlfEndsALine) {
  EXPECT_EQ(RelaxedBody("a\nb \r\n"), "a\nb\r\n");
  EXPECT_EQ(RelaxedBody("a \r"), "a \r\r\n");
  EXPECT_EQ(RelaxedBody("x\r\r\n"), "x\r\r\n");
}

TEST(DkimRelaxedBody, ALargeBodyHashesAsItsCopyDoes) {
  // Past the 16 KiB hashing buffer, with empty lines held back across flushes.
  std::string body;
  for (int i = 0; i < 5000; ++i)
    body += "line " + std::to_string(i) + "  \t of text\r\n" + (i % 7 == 0 ? "\r\n\r\n" : "");
  body += std::string(40000, 'x') + "\r\n\r\n";
  const std::string canonical = RelaxedBody(body);
  // Computed by the other path: the canonical text is its own canonical form.
  EXPECT_EQ(RelaxedBodyHash(body), RelaxedBodyHash(canonical));
  EXPECT_EQ(RelaxedBody(canonical), canonical);
  EXPECT_EQ(canonical.find("  "), std::string::npos);
  EXPECT_TRUE(canonical.ends_with("x\r\n"));
}

// ---- Split -------------------------------------------------------------------------------------

TEST(DkimSplit, FoldedFieldsNoBodyAndStrayLines) {
  SplitMessage m = Split("Subject: a\r\n b\r\nTo: x\r\n\r\nbody\r\n");
  ASSERT_EQ(m.fields.size(), 2u);
  EXPECT_EQ(m.fields[0].value, " a\r\n b");
  EXPECT_EQ(m.body, "body\r\n");
  m = Split("Subject: a\r\nTo: x\r\n");  // no empty line: all header
  EXPECT_EQ(m.fields.size(), 2u);
  EXPECT_EQ(m.body, "");
  m = Split("Subject: a");
  ASSERT_EQ(m.fields.size(), 1u);
  EXPECT_EQ(m.fields[0].value, " a");
  m = Split("\r\nFrom: not a header\r\n");
  EXPECT_TRUE(m.fields.empty());
  EXPECT_EQ(m.body, "From: not a header\r\n");
  m = Split(" stray\r\nno colon here\r\n more of it\r\nFrom: a@b.example\r\n\r\n");
  ASSERT_EQ(m.fields.size(), 2u);
  EXPECT_TRUE(m.fields[0].malformed);
  EXPECT_FALSE(NameIs(m.fields[0], "no colon here"));
  EXPECT_TRUE(NameIs(m.fields[1], "FROM"));
}

// ---- FromDomain --------------------------------------------------------------------------------

std::string FromOf(const std::string& from_value) {
  return FromDomain("Subject: x\r\nFrom:" + from_value + "\r\nTo: y@z.example\r\n\r\nbody\r\n");
}

TEST(DkimFromDomain, TheFormsOfAMailbox) {
  EXPECT_EQ(FromOf(" a@Example.COM"), "example.com");
  EXPECT_EQ(FromOf(" Joe Q. Public <john.q.public@Example.com>"), "example.com");
  EXPECT_EQ(FromOf(" \"Doe, John\" <j@x.example>"), "x.example");  // the comma is quoted
  EXPECT_EQ(FromOf(" \"a \\\"b\\\" <c@d>\" <u@q.example>"), "q.example");
  // RFC 5322 Appendix A.5: comments everywhere, one nested, one with a quoted ')'.
  EXPECT_EQ(FromOf(" Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>"),
            "silly.test");
  EXPECT_EQ(FromOf(" (a (nested) comment) u@nested.example (and (another))"), "nested.example");
  EXPECT_EQ(FromOf(" Joe\r\n\t<joe@fold.example>"), "fold.example");
  EXPECT_EQ(FromOf("\r\n joe@fold.example"), "fold.example");
  EXPECT_EQ(FromOf(" user@host.example (User)"), "host.example");
  EXPECT_EQ(FromOf(" \"odd local\"@q.example"), "q.example");
  EXPECT_EQ(FromOf(" <@relay.example,@r2.example:user@route.example>"), "route.example");
  EXPECT_EQ(FromOf(" user@example . com"), "example.com");  // obs-domain
  EXPECT_EQ(FromOf(" <a@B.example>"), "b.example");
  EXPECT_EQ(FromOf(" =?utf-8?q?J=C3=BCrgen?= <j@mail.example>"), "mail.example");
  // RFC 6532: UTF-8 in the display name and the domain (only ASCII letters are lowered).
  EXPECT_EQ(FromOf(" J\xc3\xbcrgen <j@M\xc3\xbcnchen.example>"), "m\xc3\xbcnchen.example");
}

TEST(DkimFromDomain, TheFieldIsFoundByNameAndOnlyInTheHeader) {
  EXPECT_EQ(FromDomain("FROM: a@upper.example\r\n\r\n"), "upper.example");
  EXPECT_EQ(FromDomain("from \t: a@obs.example\r\n\r\n"), "obs.example");
  EXPECT_EQ(FromDomain("Resent-From: a@resent.example\r\nFrom: b@real.example\r\n\r\n"),
            "real.example");
  EXPECT_EQ(FromDomain("From: a@head.example\r\n\r\nFrom: b@body.example\r\n"), "head.example");
  EXPECT_EQ(FromDomain("From: a@nobody.example"), "nobody.example");
}

TEST(DkimFromDomain, WhatHasNoOneAuthorDomain) {
  EXPECT_EQ(FromDomain("Subject: no from\r\n\r\n"), "");
  EXPECT_EQ(FromDomain("From: a@one.example\r\nFrom: b@two.example\r\n\r\n"), "");
  EXPECT_EQ(FromDomain("\r\nFrom: a@body.example\r\n"), "");
  for (const char* bad : {
           " Team: a@x.example, b@y.example;",  // a group
           " undisclosed-recipients:;",         // an empty group
           " a@x.example, b@y.example",         // a mailbox list
           " A <a@x.example>, B <b@y.example>",
           " a@x.example b@y.example",
           " <a@x.example> <b@y.example>",
           " just a name",
           "",
           "   ",
           " \"unterminated <a@x.example>",
           " (unterminated a@x.example",
           " <a@x.example",
           " a@x.example>",
           " a@[192.0.2.1]",  // a literal: no d= names it
           " a@x..example",
           " a@.example",
           " a@example.",
           " a@",
           " @x.example",
           " a@exa mple.com",
           " a@x.example\x01",
           " <user:a@x.example>",
           " a@x.example)",
           " a@\"quoted\".example",
       }) {
    EXPECT_EQ(FromOf(bad), "") << "From:" << bad;
  }
  EXPECT_EQ(FromOf(" a@" + std::string(64, 'x') + ".example"), "");  // a label over 63
  std::string deep = " ";
  for (int i = 0; i < 100000; ++i)
    deep += '(';
  EXPECT_EQ(FromOf(deep + "a@x.example"), "");  // an unclosed comment, deep: no recursion
}

// ---- Keys --------------------------------------------------------------------------------------

TEST(DkimKeys, RsaInBothPemFormsAndEd25519Load) {
  const Keys& k = RequireKeys();
  const Signer s = MustCreate({Spec("Shop.Example.", "s1", k.rsa), Spec("shop.example", "s2", k.ed),
                               Spec("shop.example", "s3", k.rsa_pkcs1)});
  ASSERT_EQ(s.entries().size(), 3u);
  EXPECT_EQ(s.entries()[0].algorithm, Algorithm::kRsaSha256);
  EXPECT_EQ(s.entries()[0].bits, 2048u);
  EXPECT_EQ(s.entries()[0].spec.domain, "shop.example");  // lower-cased, root dot dropped
  EXPECT_EQ(s.entries()[1].algorithm, Algorithm::kEd25519Sha256);
  EXPECT_EQ(s.entries()[1].bits, 256u);
  EXPECT_EQ(s.entries()[2].algorithm, Algorithm::kRsaSha256);
  EXPECT_EQ(AlgorithmName(Algorithm::kRsaSha256), "rsa-sha256");
  EXPECT_EQ(AlgorithmName(Algorithm::kEd25519Sha256), "ed25519-sha256");
}

TEST(DkimKeys, BadKeysAreRefusedNamingTheFile) {
  const Keys& k = RequireKeys();
  struct Case {
    std::string file, says;
  };
  const std::vector<Case> cases = {
      {k.dir + "/missing.pem", "cannot read (No such file or directory)"},
      {k.dir, "cannot read"},  // a directory
      {k.garbage, "not a PEM private key"},
      {k.fake_pem, "not a PEM private key"},
      {k.rsa512, "RSA key of 512 bits; 1024 to 4096"},
      {k.ec, "an EC key; DKIM signs with RSA or Ed25519"},
      {k.encrypted, "an encrypted private key"},
  };
  for (const Case& c : cases) {
    std::string error;
    // The bad key is the second entry: the first one's success does not hide it.
    EXPECT_FALSE(
        Signer::Create({Spec("a.example", "s1", k.ed), Spec("b.example", "s1", c.file)}, &error)
            .has_value())
        << c.file;
    EXPECT_EQ(error.rfind(c.file + ": ", 0), 0u) << error;
    EXPECT_NE(error.find(c.says), std::string::npos) << error;
  }
}

TEST(DkimKeys, EntriesThatCannotBeWrittenIntoAHeaderAreRefused) {
  const Keys& k = RequireKeys();
  std::string error;
  EXPECT_FALSE(Signer::Create({Spec("shop.example", "s1;x=1", k.ed)}, &error).has_value());
  EXPECT_NE(error.find("entry 1 (shop.example): the selector"), std::string::npos) << error;
  EXPECT_FALSE(Signer::Create({Spec("shop example", "s1", k.ed)}, &error).has_value());
  EXPECT_NE(error.find("not a domain name"), std::string::npos) << error;
  EXPECT_FALSE(Signer::Create({Spec("shop.example", "s1", "")}, &error).has_value());
  EXPECT_NE(error.find("no key file"), std::string::npos) << error;
  KeySpec bad_header = Spec("shop.example", "s1", k.ed);
  bad_header.headers = {"Subject", "X Bad"};
  EXPECT_FALSE(Signer::Create({bad_header}, &error).has_value());
  EXPECT_NE(error.find("\"X Bad\" is not a header field name"), std::string::npos) << error;
  // No entries: a signer that signs nothing (and says no reason: nothing is wrong).
  const Signer none = MustCreate({});
  std::string why = "unchanged";
  EXPECT_EQ(none.Sign("From: a@b.example\r\n\r\nx\r\n", 1, nullptr, &why), "");
  EXPECT_EQ(why, "");
}

// ---- Which entries sign ------------------------------------------------------------------------

TEST(DkimSelect, OwnDomainThenNearestParentThenDefaultThenNone) {
  const Keys& k = RequireKeys();
  const Signer s = MustCreate({Spec("shop.example", "s1", k.rsa), Spec("shop.example", "s2", k.ed),
                               Spec("example", "top", k.ed), Spec("esp.example", "esp", k.ed, true),
                               Spec("mail.other.example", "m", k.ed)});
  auto signers = [&](const std::string& from) {
    std::vector<size_t> by = {99};
    std::string why = "unchanged";
    const std::string out =
        s.Sign("From: " + from + "\r\nSubject: s\r\n\r\nhello\r\n", 1700000000, &by, &why);
    EXPECT_EQ(why, "") << from;
    EXPECT_EQ(out.empty(), by.empty()) << from;
    return by;
  };
  EXPECT_EQ(signers("a@shop.example"), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(signers("A <a@SHOP.Example>"), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(signers("a@mail.shop.example"), (std::vector<size_t>{0, 1}));  // the parent's
  EXPECT_EQ(signers("a@x.y.shop.example"), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(signers("a@other.example"), (std::vector<size_t>{2}));  // nearest: "example"
  EXPECT_EQ(signers("a@client.test"), (std::vector<size_t>{3}));    // the default
  EXPECT_EQ(signers("a@esp.example"), (std::vector<size_t>{3}));    // its own, once
  // The parent's entry signs with the parent's d=, the default's with its own.
  const std::string sub = s.Sign("From: a@mail.shop.example\r\n\r\nx\r\n", 1);
  EXPECT_EQ(Tag(sub, "d"), "shop.example");
  const std::string dflt = s.Sign("From: a@client.test\r\n\r\nx\r\n", 1);
  EXPECT_EQ(Tag(dflt, "d"), "esp.example");

  const Signer no_default = MustCreate({Spec("shop.example", "s1", k.ed)});
  std::vector<size_t> by;
  std::string why = "unchanged";
  EXPECT_EQ(no_default.Sign("From: a@client.test\r\n\r\nx\r\n", 1, &by, &why), "");
  EXPECT_TRUE(by.empty());
  EXPECT_EQ(why, "");  // not signed, and not an error
  // "shop.example" is not a parent of "myshop.example".
  EXPECT_EQ(no_default.Sign("From: a@myshop.example\r\n\r\nx\r\n", 1), "");
}

TEST(DkimSelect, UnsignableMessagesSayWhy) {
  const Keys& k = RequireKeys();
  const Signer s = MustCreate({Spec("shop.example", "s1", k.ed, true)});
  auto why_of = [&](const std::string& message) {
    std::string why;
    std::vector<size_t> by = {7};
    EXPECT_EQ(s.Sign(message, 1, &by, &why), "");
    EXPECT_TRUE(by.empty());
    return why;
  };
  EXPECT_EQ(why_of("Subject: x\r\n\r\nbody\r\n"), "no From: field");
  EXPECT_EQ(why_of("From: a@shop.example\r\nFrom: b@shop.example\r\n\r\n"),
            "2 From: fields (RFC 5322 §3.6 allows one)");
  EXPECT_EQ(why_of("From: a@shop.example, b@shop.example\r\n\r\n"),
            "the From: field holds a group or several mailboxes");
  EXPECT_EQ(why_of("From: Team: a@shop.example;\r\n\r\n"),
            "the From: field holds a group or several mailboxes");
  EXPECT_EQ(why_of("From: nobody\r\n\r\n"), "the From: address does not parse");
  EXPECT_NE(why_of("From: a@[192.0.2.1]\r\n\r\n").find("domain literal"), std::string::npos);
}

// ---- The signature field -----------------------------------------------------------------------

const std::string kMessage =
    "From: Shop <news@shop.example>\r\n"
    "To: bob@dest.example\r\n"
    "To: carol@dest.example\r\n"
    "Subject: Spring sale\r\n"
    "Date: Tue, 01 Dec 2026 19:00:00 +0000\r\n"
    "Message-ID: <m1@shop.example>\r\n"
    "X-Not-Signed: no\r\n"
    "List-Unsubscribe: <mailto:u@shop.example>\r\n"
    "\r\n"
    "Hello.\r\n";

TEST(DkimField, TagsFromOversignedAndEachOccurrenceListed) {
  const Keys& k = RequireKeys();
  const Signer s = MustCreate({Spec("shop.example", "s1", k.rsa)});
  const std::string out = s.Sign(kMessage, 1796000000);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.rfind("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=shop.example;", 0),
            0u)
      << out;
  EXPECT_TRUE(out.ends_with("\r\n"));
  EXPECT_EQ(Tag(out, "t"), "1796000000");
  EXPECT_EQ(Tag(out, "s"), "s1");
  EXPECT_EQ(Tag(out, "bh"), RelaxedBodyHash("Hello.\r\n"));
  EXPECT_EQ(Tag(out, "h"), "from:from:to:to:subject:date:message-id:list-unsubscribe");
  // b= last: nothing follows it but its value.
  const std::string unfolded = std::regex_replace(out, std::regex("\r\n "), " ");
  EXPECT_TRUE(std::regex_search(unfolded, std::regex("; b=[A-Za-z0-9+/= ]+\r\n$"))) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), std::count(out.begin(), out.end(), '\r'));
  // Folded: every line within 78 columns, every continuation starting with SP.
  size_t pos = 0, lines = 0;
  while (pos < out.size()) {
    const size_t e = out.find("\r\n", pos);
    EXPECT_LE(e - pos, 78u) << out.substr(pos, e - pos);
    if (lines++ > 0) {
      EXPECT_EQ(out[pos], ' ');
    }
    pos = e + 2;
  }
  EXPECT_GE(lines, 5u);  // a 2048-bit signature alone is 344 base64 octets
}

TEST(DkimField, ItsOwnHeaderListFromAlwaysFirst) {
  const Keys& k = RequireKeys();
  KeySpec spec = Spec("shop.example", "s1", k.ed);
  spec.headers = {"Subject", "X-Not-Signed", "X-Absent", "subject", "FROM"};
  const Signer s = MustCreate({spec});
  EXPECT_EQ(Tag(s.Sign(kMessage, 1), "h"), "from:from:subject:x-not-signed");
}

TEST(DkimField, TheSameMessageSignsTheSameOnManyThreads) {
  const Keys& k = RequireKeys();
  const Signer s =
      MustCreate({Spec("shop.example", "s1", k.rsa), Spec("shop.example", "s2", k.ed)});
  const std::string once = s.Sign(kMessage, 42);
  ASSERT_FALSE(once.empty());
  // RSASSA-PKCS1-v1_5 and Ed25519 are deterministic: any difference is a race.
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i)
        same[t] += s.Sign(kMessage, 42) == once ? 1 : 0;
    });
  }
  for (std::thread& th : threads)
    th.join();
  EXPECT_EQ(same, (std::vector<int>{25, 25, 25, 25}));
}

// ---- Verified by python3-dkim ------------------------------------------------------------------

// The hard cases: folded headers with runs of blanks, blanks at line ends, names in odd case,
// a field that occurs twice, 8-bit bodies (UTF-8 and Latin-1), lines that start with a dot,
// runs of blanks in the body and empty lines at its end, no body, no empty line at all.
const std::vector<std::pair<std::string, std::string>> kHardMessages = {
    {"folded",
     "From:   Shop  Team <news@shop.example>\r\n"
     "To: bob@dest.example,\r\n"
     "   carol@dest.example  \r\n"
     "SUBJECT:  Spring\t  sale,\r\n"
     "\tfolded   twice\r\n"
     "  and  again \r\n"
     "Date: Tue, 01 Dec 2026 19:00:00 +0000\r\n"
     "Message-ID: <hard-1@shop.example>\r\n"
     "Cc: one@dest.example\r\n"
     "cc: two@dest.example\r\n"
     "MIME-Version: 1.0\r\n"
     "Content-Type: text/plain;\r\n charset=utf-8\r\n"
     "List-Unsubscribe: <mailto:unsub@shop.example>\r\n"
     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
     "X-Not-Signed: this header is not in h=\r\n"
     "\r\n"
     "Some  text \t with   runs\t\r\n"
     "\r\n"
     "last line\r\n"
     "\r\n"
     "\r\n"
     "\r\n"},
    {"eight-bit-and-dots",
     "From: =?utf-8?q?M=C3=BCller?= <m@shop.example>\r\n"
     "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
     "Content-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: 8bit\r\n"
     "\r\n"
     "Gr\xc3\xbc\xc3\x9f"
     "e  aus   M\xc3\xbcnchen \t \r\n"
     ".a line that starts with a dot\r\n"
     "..and one with two\r\n"
     ".\r\n"
     ".\tdot and tab\r\n"
     "latin-1 \xe9t\xe9 \xe0 la plage\r\n"},
    {"no-body", "From: news@shop.example\r\nSubject: no body at all\r\n\r\n"},
    {"all-header", "From: news@shop.example\r\nSubject: not even an empty line\r\n"},
    {"no-final-crlf", "From: news@shop.example\r\nSubject: s\r\n\r\nline one\r\nline two"},
    {"subdomain", "From: a@mail.shop.example\r\nSubject: s\r\n\r\nhello\r\n"},
};

class DkimVerified : public ::testing::TestWithParam<Algorithm> {
 protected:
  void SetUp() override {
    const Keys& k = RequireKeys();
    ASSERT_EQ(k.error, "");
    const bool rsa = GetParam() == Algorithm::kRsaSha256;
    signer_.emplace(MustCreate({Spec("shop.example", "s1", rsa ? k.rsa : k.ed)}));
    txt_ = rsa ? k.rsa_txt : k.ed_txt;
  }
  std::string SignedCopy(const std::string& message) {
    const std::string sig = signer_->Sign(message, 1796000000);
    EXPECT_TRUE(sig.rfind("DKIM-Signature: ", 0) == 0) << sig;
    EXPECT_EQ(Tag(sig, "a"), AlgorithmName(GetParam()));
    return sig + message;
  }

  std::optional<Signer> signer_;
  std::string txt_;
};

TEST_P(DkimVerified, HardMessagesVerify) {
  for (const auto& [name, message] : kHardMessages)
    EXPECT_EQ(PyVerify(SignedCopy(message), txt_), "ok") << name;
}

TEST_P(DkimVerified, TamperingIsCaught) {
  const std::string& folded = kHardMessages[0].second;
  const std::string signed_message = SignedCopy(folded);
  ASSERT_EQ(PyVerify(signed_message, txt_), "ok");
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string m = signed_message;
    const size_t at = m.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return m.replace(at, from.size(), to);
  };
  // A signed header changed, the body changed, a From: added on top (oversigning), one of the
  // two Cc: fields dropped, a line added to the body: each breaks the signature.
  EXPECT_NE(PyVerify(replaced("Spring", "Autumn"), txt_), "ok");
  EXPECT_NE(PyVerify(replaced("last line", "last lime"), txt_), "ok");
  EXPECT_NE(PyVerify("From: evil@attacker.example\r\n" + signed_message, txt_), "ok");
  EXPECT_NE(PyVerify(replaced("cc: two@dest.example\r\n", ""), txt_), "ok");
  EXPECT_NE(PyVerify(signed_message + "P.S. added\r\n", txt_), "ok");
  // What relaxed canonicalization forgives, and a field not in h=, still verify: the verifier
  // is not merely refusing everything.
  EXPECT_EQ(PyVerify(replaced("Some  text", "Some text"), txt_), "ok");
  EXPECT_EQ(PyVerify(replaced("this header is not in h=", "changed"), txt_), "ok");
  EXPECT_EQ(PyVerify(signed_message + "\r\n\r\n", txt_), "ok");
}

INSTANTIATE_TEST_SUITE_P(Algorithms, DkimVerified,
                         ::testing::Values(Algorithm::kRsaSha256, Algorithm::kEd25519Sha256),
                         [](const ::testing::TestParamInfo<Algorithm>& p) {
                           return p.param == Algorithm::kRsaSha256 ? "RsaSha256" : "Ed25519Sha256";
                         });

TEST(DkimVerifiedBoth, TwoSignaturesOneMessageEachVerifies) {
  const Keys& k = RequireKeys();
  const Signer s =
      MustCreate({Spec("shop.example", "s1", k.rsa), Spec("shop.example", "s2", k.ed)});
  std::vector<size_t> by;
  const std::string message = kHardMessages[1].second;
  const std::string signed_message = s.Sign(message, 1796000000, &by) + message;
  EXPECT_EQ(by, (std::vector<size_t>{0, 1}));
  const std::string keys = TestKeys().dir + "/keys.json";
  WriteFile(keys, "{\"s1._domainkey.shop.example\": \"" + k.rsa_txt +
                      "\", \"s2._domainkey.shop.example\": \"" + k.ed_txt + "\"}");
  const std::string path = TestKeys().dir + "/both.eml";
  WriteFile(path, signed_message);
  int status = -1;
  const std::string out =
      Shell("/usr/bin/python3 " SPATE_DKIM_VERIFY " --all " + path + " " + keys, &status);
  EXPECT_EQ(out,
            "[[\"shop.example\", \"s1\", \"rsa-sha256\", true, \"\"], "
            "[\"shop.example\", \"s2\", \"ed25519-sha256\", true, \"\"]]\n");
  EXPECT_EQ(status, 0);
}

}  // namespace
}  // namespace spate::dkim
