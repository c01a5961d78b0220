// core/dkim/dkim.cc
//
// The signer: keys (BoringSSL), the author domain (the From: field's mailbox, RFC 5322 §3.4,
// §3.6.2), the choice of entries, and the DKIM-Signature field (RFC 6376 §3.5, §3.7, §5).
// BoringSSL's error queue is thread-local and is emptied after each call that can fail, so
// nothing left here is blamed on a later caller on the same thread.
#include "core/dkim/dkim.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "core/log.h"
#include "core/smtp/ascii.h"
#include "core/wipe.h"

namespace spate::dkim {
namespace {

// RFC 5322 §2.1.1: lines SHOULD be at most 78 characters, CRLF excluded.
constexpr size_t kFoldColumn = 78;
// A key file is a few kilobytes; anything much larger is not one (and is not read whole).
constexpr off_t kMaxKeyFile = 1 << 20;
// RFC 8301 §3.2: signers use at least 1024 bits, and verifiers must cope with 1024..4096, so
// a larger key would make signatures some verifiers cannot check.
constexpr unsigned kMinRsaBits = 1024;
constexpr unsigned kMaxRsaBits = 4096;

constexpr bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}

// ---- The From: field (RFC 5322 §3.4, §3.6.2, obsolete forms §4.4) ----------------------------

// atext (RFC 5322 §3.2.3), '.' (dot-atom, and obs-phrase / obs-local-part let dots stand
// loose), and any octet >= 0x80 (RFC 6532 §3.2: UTF-8 in atoms, quoted strings and domains).
bool IsAtomOctet(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x80 || smtp::IsAsciiAlnum(c))
    return true;
  return std::strchr("!#$%&'*+-/=?^_`{|}~.", c) != nullptr && c != '\0';
}

struct Token {
  enum Kind : uint8_t { kAtom, kQuoted, kLiteral, kSpecial } kind;
  std::string_view text;  // the atom, or the special octet; a quoted string or literal whole
};

enum class FromStatus : uint8_t { kOk, kUnparsable, kGroupOrList, kLiteral };

// Splits a field value into tokens, dropping FWS and comments (§3.2.2: nested, with quoted
// pairs). False on what no mailbox can hold: a control octet, an unclosed comment, quoted
// string or literal, a stray ')', ']' or '\'. One pass: each octet is looked at once.
bool Tokenize(std::string_view v, std::vector<Token>* out) {
  const size_t n = v.size();
  size_t i = 0;
  while (i < n) {
    const char c = v[i];
    const auto u = static_cast<unsigned char>(c);
    if (IsWsp(c) || c == '\r' || c == '\n') {
      ++i;
    } else if (u < 0x20 || u == 0x7f) {
      return false;  // a control octet (NUL included) or DEL: no mailbox holds one
    } else if (c == '(') {
      size_t depth = 0;
      for (; i < n; ++i) {
        if (v[i] == '\\') {
          ++i;
        } else if (v[i] == '(') {
          ++depth;
        } else if (v[i] == ')' && --depth == 0) {
          break;
        }
      }
      if (i >= n)
        return false;
      ++i;
    } else if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      const size_t start = i++;
      for (; i < n && v[i] != close; ++i) {
        if (v[i] == '\\')
          ++i;
        else if (c == '[' && v[i] == '[')
          return false;
      }
      if (i >= n)
        return false;
      ++i;
      out->push_back({c == '"' ? Token::kQuoted : Token::kLiteral, v.substr(start, i - start)});
    } else if (std::strchr("<>@,:;", c) != nullptr) {
      out->push_back({Token::kSpecial, v.substr(i, 1)});
      ++i;
    } else if (IsAtomOctet(c)) {
      const size_t start = i;
      while (i < n && IsAtomOctet(v[i]))
        ++i;
      out->push_back({Token::kAtom, v.substr(start, i - start)});
    } else {
      return false;  // one of ) ] \ out of place
    }
  }
  return true;
}

bool IsSpecial(const Token& t, char c) {
  return t.kind == Token::kSpecial && t.text[0] == c;
}

bool IsListOrGroupMark(const Token& t) {
  return IsSpecial(t, ',') || IsSpecial(t, ':') || IsSpecial(t, ';');
}

// A domain name as DKIM can name it: labels of letters, digits, '-' and '_' (or UTF-8,
// RFC 6532), each 1..63 octets, 255 in all.
bool ValidDomain(std::string_view d) {
  if (d.empty() || d.size() > 255)
    return false;
  size_t label = 0;
  for (char c : d) {
    if (c == '.') {
      if (label == 0)
        return false;
      label = 0;
      continue;
    }
    const auto u = static_cast<unsigned char>(c);
    if (!(u >= 0x80 || smtp::IsAsciiAlnum(c) || c == '-' || c == '_') || ++label > 63)
      return false;
  }
  return label > 0;
}

// addr-spec = local-part "@" domain, over tokens [begin, end).
FromStatus ParseAddrSpec(const std::vector<Token>& t, size_t begin, size_t end,
                         std::string* domain) {
  size_t at = end;
  for (size_t i = begin; i < end; ++i) {
    if (IsSpecial(t[i], '@')) {
      if (at != end)
        return FromStatus::kUnparsable;  // two '@': "a@b@c", or two addresses
      at = i;
    } else if (t[i].kind == Token::kSpecial) {
      return FromStatus::kUnparsable;
    }
  }
  if (at == end || at == begin || at + 1 == end)
    return FromStatus::kUnparsable;
  // The local part: words and dots; its exact form does not matter here, only that there is
  // one (ParseAddrSpec's caller has already refused specials in it).
  for (size_t i = begin; i < at; ++i) {
    if (t[i].kind == Token::kLiteral)
      return FromStatus::kUnparsable;
  }
  // The domain: a dot-atom, or a literal (no d= names one). obs-domain lets CFWS stand
  // around its dots ("example . com"): atoms join only where a dot separates them.
  if (at + 2 == end && t[at + 1].kind == Token::kLiteral)
    return FromStatus::kLiteral;
  std::string d;
  for (size_t i = at + 1; i < end; ++i) {
    if (t[i].kind != Token::kAtom)
      return FromStatus::kUnparsable;
    if (!d.empty() && d.back() != '.' && t[i].text.front() != '.')
      return FromStatus::kUnparsable;  // "exa mple.com": two words, not one domain
    d += t[i].text;
  }
  if (!ValidDomain(d))
    return FromStatus::kUnparsable;
  for (char& c : d)
    c = smtp::AsciiLower(c);
  *domain = std::move(d);
  return FromStatus::kOk;
}

// mailbox = name-addr / addr-spec; name-addr = [display-name] "<" [obs-route] addr-spec ">".
// A group ("Team: a@x, b@y;") or a mailbox-list ("a@x, b@y") is told apart from garbage, so
// that the reason given is the right one.
FromStatus ParseFrom(std::string_view value, std::string* domain) {
  std::vector<Token> t;
  if (!Tokenize(value, &t) || t.empty())
    return FromStatus::kUnparsable;
  size_t lt = t.size();
  for (size_t i = 0; i < t.size(); ++i) {
    if (IsSpecial(t[i], '<')) {
      lt = i;
      break;
    }
  }
  if (lt == t.size()) {  // a bare addr-spec
    if (std::any_of(t.begin(), t.end(), IsListOrGroupMark))
      return FromStatus::kGroupOrList;
    return ParseAddrSpec(t, 0, t.size(), domain);
  }
  // The display name: words and dots only (obs-phrase).
  for (size_t i = 0; i < lt; ++i) {
    if (IsListOrGroupMark(t[i]))
      return FromStatus::kGroupOrList;
    if (t[i].kind != Token::kAtom && t[i].kind != Token::kQuoted)
      return FromStatus::kUnparsable;
  }
  size_t gt = lt + 1;
  while (gt < t.size() && !IsSpecial(t[gt], '>')) {
    if (IsSpecial(t[gt], '<'))
      return FromStatus::kUnparsable;
    ++gt;
  }
  if (gt == t.size())
    return FromStatus::kUnparsable;
  if (gt + 1 < t.size()) {
    const Token& next = t[gt + 1];
    // Another mailbox follows, or a group's end: not garbage, but not one author either.
    return IsListOrGroupMark(next) || IsSpecial(next, '<') ? FromStatus::kGroupOrList
                                                           : FromStatus::kUnparsable;
  }
  // obs-route ("<@relay1,@relay2:user@example>", §4.4): everything up to its ':' goes.
  size_t begin = lt + 1;
  for (size_t i = lt + 1; i < gt; ++i) {
    if (IsSpecial(t[i], ':'))
      begin = i + 1;
  }
  if (begin != lt + 1) {
    if (!IsSpecial(t[lt + 1], '@') && !IsSpecial(t[lt + 1], ','))
      return FromStatus::kUnparsable;  // a route starts with its "@domain" (or a stray ',')
    for (size_t i = lt + 1; i + 1 < begin; ++i) {
      if (!(IsSpecial(t[i], '@') || IsSpecial(t[i], ',') || t[i].kind == Token::kAtom))
        return FromStatus::kUnparsable;
    }
  }
  return ParseAddrSpec(t, begin, gt, domain);
}

const char* FromReason(FromStatus s) {
  switch (s) {
    case FromStatus::kOk:
      break;
    case FromStatus::kUnparsable:
      return "the From: address does not parse";
    case FromStatus::kGroupOrList:
      return "the From: field holds a group or several mailboxes";
    case FromStatus::kLiteral:
      return "the From: address has a domain literal, which no d= can name";
  }
  return "";
}

// The value of the one From: field, and the body; false with *reason set when there is no
// From: field or more than one.
bool TheFrom(std::string_view message, std::string_view* value, std::string_view* body,
             std::string* reason) {
  FieldReader reader(message);
  HeaderField f;
  size_t n = 0;
  while (reader.Next(&f)) {
    if (NameIs(f, "from")) {
      *value = f.value;
      ++n;
    }
  }
  *body = reader.body();
  if (n == 1)
    return true;
  *reason = n == 0 ? std::string("no From: field")
                   : std::to_string(n) + " From: fields (RFC 5322 §3.6 allows one)";
  return false;
}

// ---- Keys --------------------------------------------------------------------------------------

// Encrypted keys are refused (there is nobody to type a passphrase); this callback makes sure
// BoringSSL never asks for one.
int NoPassphrase(char*, int, int, void*) {
  return 0;
}

// "PEM routines: NO_START_LINE": the first entry of BoringSSL's queue, which is then emptied.
std::string TakeErrors() {
  const uint32_t first = ERR_get_error();
  ERR_clear_error();
  if (first == 0)
    return {};
  const char* lib = ERR_lib_error_string(first);
  const char* reason = ERR_reason_error_string(first);
  return std::string(lib != nullptr ? lib : "?") + ": " +
         (reason != nullptr ? reason : std::to_string(ERR_GET_REASON(first)));
}

// What the key signs, and with which pre-hash. RSA: the data, which EVP hashes with SHA-256
// for EMSA-PKCS1-v1_5 (RFC 6376 §3.3.1, RFC 8017 §8.2). Ed25519: the SHA-256 of the data, the
// 32-octet hash being PureEdDSA's message (RFC 8463 §3, RFC 8032 §5.1.6), with no EVP pre-hash
// (Ed25519 hashes with SHA-512 inside).
class SigningInput {
 public:
  SigningInput(Algorithm algorithm, std::string_view data)
      : in_(reinterpret_cast<const uint8_t*>(data.data())), len_(data.size()) {
    if (algorithm == Algorithm::kEd25519Sha256) {
      SHA256(in_, len_, digest_);
      in_ = digest_;
      len_ = sizeof digest_;
      md_ = nullptr;
    }
  }
  SigningInput(const SigningInput&) = delete;  // in_ may point into this object
  SigningInput& operator=(const SigningInput&) = delete;

  const EVP_MD* md() const { return md_; }
  const uint8_t* data() const { return in_; }
  size_t size() const { return len_; }

 private:
  const EVP_MD* md_ = EVP_sha256();
  const uint8_t* in_;
  size_t len_;
  uint8_t digest_[SHA256_DIGEST_LENGTH];
};

// The raw signature of `data` under `entry`'s key. A context per call: concurrent calls share
// only the key, which BoringSSL does not mutate when signing.
bool SignData(const Signer::Entry& entry, std::string_view data, std::string* sig) {
  const SigningInput input(entry.algorithm, data);
  bssl::ScopedEVP_MD_CTX ctx;
  size_t len = EVP_PKEY_size(entry.key.get());
  sig->assign(len, '\0');
  if (!EVP_DigestSignInit(ctx.get(), nullptr, input.md(), nullptr, entry.key.get()) ||
      !EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(sig->data()), &len, input.data(),
                      input.size())) {
    ERR_clear_error();
    sig->clear();
    return false;
  }
  sig->resize(len);
  return true;
}

bool VerifyData(const Signer::Entry& entry, std::string_view data, std::string_view sig) {
  const SigningInput input(entry.algorithm, data);
  bssl::ScopedEVP_MD_CTX ctx;
  const bool ok = EVP_DigestVerifyInit(ctx.get(), nullptr, input.md(), nullptr, entry.key.get()) &&
                  EVP_DigestVerify(ctx.get(), reinterpret_cast<const uint8_t*>(sig.data()),
                                   sig.size(), input.data(), input.size());
  ERR_clear_error();
  return ok;
}

// Parses one PEM private key into *entry (algorithm, bits, key). False with *error.
bool LoadKey(const std::string& file, const std::string& pem, Signer::Entry* entry,
             std::string* error) {
  if (pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
      pem.find("Proc-Type: 4,ENCRYPTED") != std::string::npos) {
    *error = file + ": an encrypted private key; DKIM keys are read without a passphrase";
    return false;
  }
  ERR_clear_error();
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), pem.size()));
  bssl::UniquePtr<EVP_PKEY> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr) : nullptr);
  if (!key) {
    const std::string detail = TakeErrors();
    *error = file + ": not a PEM private key" + (detail.empty() ? "" : " (" + detail + ")");
    return false;
  }
  switch (EVP_PKEY_id(key.get())) {
    case EVP_PKEY_RSA: {
      entry->algorithm = Algorithm::kRsaSha256;
      entry->bits = EVP_PKEY_bits(key.get());
      if (entry->bits < kMinRsaBits || entry->bits > kMaxRsaBits) {
        *error = file + ": RSA key of " + std::to_string(entry->bits) + " bits; " +
                 std::to_string(kMinRsaBits) + " to " + std::to_string(kMaxRsaBits);
        return false;
      }
      break;
    }
    case EVP_PKEY_ED25519:
      entry->algorithm = Algorithm::kEd25519Sha256;
      entry->bits = 256;
      break;
    case EVP_PKEY_EC:
      *error = file + ": an EC key; DKIM signs with RSA or Ed25519";
      return false;
    case EVP_PKEY_DSA:
      *error = file + ": a DSA key; DKIM signs with RSA or Ed25519";
      return false;
    default:
      *error = file + ": a key of type " + std::to_string(EVP_PKEY_id(key.get())) +
               "; DKIM signs with RSA or Ed25519";
      return false;
  }
  entry->key.reset(key.release());
  // One signature now, checked against the key's own public half: a key that cannot sign is
  // refused at start rather than on the first message, and RSA's lazily built values
  // (Montgomery contexts, blinding) exist before threads share the key.
  const std::string_view probe = "spate dkim key check";
  std::string sig;
  if (!SignData(*entry, probe, &sig) || !VerifyData(*entry, probe, sig)) {
    *error = file + ": the key does not sign";
    return false;
  }
  return true;
}

bool ReadKeyFile(const std::string& path, std::string* out, std::string* error) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = path + ": cannot read (" + log::ErrorText(errno) + ")";
    return false;
  }
  struct stat st;
  int err = fstat(fd, &st) == 0 ? 0 : errno;
  if (err == 0 && (!S_ISREG(st.st_mode) || st.st_size > kMaxKeyFile)) {
    *error = path + ": cannot read (not a regular file of at most 1 MiB)";
    close(fd);
    return false;
  }
  if (err == 0) {
    out->resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < out->size()) {
      const ssize_t r = read(fd, out->data() + got, out->size() - got);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        err = errno;
      if (r <= 0)
        break;  // an error, or a file that shrank while read: what was read is checked
      got += static_cast<size_t>(r);
    }
    out->resize(got);
  }
  close(fd);
  if (err != 0) {
    Wipe(*out);
    *error = path + ": cannot read (" + log::ErrorText(err) + ")";
    return false;
  }
  return true;
}

// ---- Spec checks -------------------------------------------------------------------------------

// Letters, digits, '-', '_' in dot-separated labels (RFC 6376 §3.1 selectors, §3.5 d=): what
// can stand in a tag value and a DNS name, and nothing that would end a tag (';') or a line.
bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > 253)
    return false;
  size_t label = 0;
  for (char c : s) {
    if (c == '.') {
      if (label == 0)
        return false;
      label = 0;
    } else if ((smtp::IsAsciiAlnum(c) || c == '-' || c == '_') && ++label <= 63) {
    } else {
      return false;
    }
  }
  return label > 0;
}

// A header field name (RFC 5322 §3.6.8 ftext: printable US-ASCII but ':').
bool ValidFieldName(std::string_view s) {
  if (s.empty() || s.size() > 200)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 33 && c <= 126 && c != ':'; });
}

// ---- The DKIM-Signature field ------------------------------------------------------------------

// Appends tag text to a header field being written, folding (CRLF SP) before a piece that
// would pass kFoldColumn. FWS may stand between tags and around h='s colons (§3.2, §3.5), and
// anywhere inside a base64 value; never inside a domain or a name.
class Folder {
 public:
  explicit Folder(std::string* out) : out_(out), column_(out->size()) {}

  // " piece" on this line, or on a new one when it would not fit.
  void Piece(std::string_view piece) {
    if (column_ + 1 + piece.size() > kFoldColumn) {
      out_->append("\r\n");
      column_ = 0;
    }
    out_->push_back(' ');
    out_->append(piece);
    column_ += 1 + piece.size();
  }

  // "piece" right after what precedes it (the names of h=), or on a new line.
  void Glued(std::string_view piece) {
    if (column_ + piece.size() > kFoldColumn) {
      out_->append("\r\n ");
      column_ = 1;
    }
    out_->append(piece);
    column_ += piece.size();
  }

  // `text` right after what precedes it, broken at any octet to fill each line.
  void Breakable(std::string_view text) {
    while (!text.empty()) {
      if (column_ >= kFoldColumn) {
        out_->append("\r\n ");
        column_ = 1;
      }
      const size_t take = std::min(kFoldColumn - column_, text.size());
      out_->append(text.substr(0, take));
      column_ += take;
      text.remove_prefix(take);
    }
  }

 private:
  std::string* out_;
  size_t column_;
};

}  // namespace

std::string_view AlgorithmName(Algorithm algorithm) {
  return algorithm == Algorithm::kEd25519Sha256 ? "ed25519-sha256" : "rsa-sha256";
}

void Signer::KeyFree::operator()(evp_pkey_st* key) const {
  EVP_PKEY_free(key);
}

std::optional<Signer> Signer::Create(const std::vector<KeySpec>& specs, std::string* error) {
  std::string ignored;
  std::string& err = error != nullptr ? *error : ignored;
  std::vector<std::string> pem(specs.size());
  bool ok = true;
  for (size_t i = 0; i < specs.size() && ok; ++i) {
    if (specs[i].key_file.empty()) {
      err = "entry " + std::to_string(i + 1) + " (" + specs[i].domain + "): no key file";
      ok = false;
    } else {
      ok = ReadKeyFile(specs[i].key_file, &pem[i], &err);
    }
  }
  std::optional<Signer> signer;
  if (ok)
    signer = CreateFromPem(specs, pem, error);
  for (std::string& p : pem)
    Wipe(p);  // the private keys now live in BoringSSL's objects only
  return signer;
}

std::optional<Signer> Signer::CreateFromPem(const std::vector<KeySpec>& specs,
                                            const std::vector<std::string>& pem,
                                            std::string* error) {
  std::string ignored;
  std::string& err = error != nullptr ? *error : ignored;
  Signer signer;
  for (size_t i = 0; i < specs.size(); ++i) {
    Entry e;
    e.spec = specs[i];
    for (char& c : e.spec.domain)
      c = smtp::AsciiLower(c);
    if (!e.spec.domain.empty() && e.spec.domain.back() == '.')
      e.spec.domain.pop_back();
    const std::string where = "entry " + std::to_string(i + 1) + " (" + e.spec.domain + ")";
    if (!ValidName(e.spec.domain)) {
      err = where + ": the domain is not a domain name";
      return std::nullopt;
    }
    if (!ValidName(e.spec.selector)) {
      err = where + ": the selector \"" + e.spec.selector + "\" is not a DNS name";
      return std::nullopt;
    }
    // From first (it MUST be signed, §5.4), then the list in its order, each name once.
    e.sign_headers.push_back("from");
    for (const auto& name : e.spec.headers) {
      if (!ValidFieldName(name)) {
        err = where + ": \"" + name + "\" is not a header field name";
        return std::nullopt;
      }
      std::string lower(name);
      for (char& c : lower)
        c = smtp::AsciiLower(c);
      if (std::find(e.sign_headers.begin(), e.sign_headers.end(), lower) == e.sign_headers.end())
        e.sign_headers.push_back(std::move(lower));
    }
    if (e.spec.headers.empty()) {
      for (std::string_view name : kDefaultHeaders) {
        if (name != "from")
          e.sign_headers.emplace_back(name);
      }
    }
    if (i >= pem.size()) {
      err = where + ": no key";
      return std::nullopt;
    }
    if (!LoadKey(e.spec.key_file, pem[i], &e, &err))
      return std::nullopt;
    signer.entries_.push_back(std::move(e));
  }
  return signer;
}

std::string Signer::Sign(std::string_view message, int64_t now, std::vector<size_t>* signed_by,
                         std::string* why) const {
  if (signed_by != nullptr)
    signed_by->clear();
  std::string reason;
  std::string out;
  if (entries_.empty()) {
    if (why != nullptr)
      why->clear();
    return out;
  }
  std::string_view from, body;
  std::string domain;
  if (TheFrom(message, &from, &body, &reason)) {
    const FromStatus s = ParseFrom(from, &domain);
    if (s != FromStatus::kOk)
      reason = FromReason(s);
  }
  if (!reason.empty()) {
    if (why != nullptr)
      *why = std::move(reason);
    return out;
  }

  // The entries of the From: domain, else of its nearest parent that has some, else the
  // default ones (each with its own d=).
  std::vector<size_t> chosen;
  for (std::string_view d = domain; chosen.empty();) {
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].spec.domain == d)
        chosen.push_back(i);
    }
    const size_t dot = d.find('.');
    if (dot == std::string_view::npos)
      break;
    d.remove_prefix(dot + 1);
  }
  if (chosen.empty()) {
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (entries_[i].spec.is_default)
        chosen.push_back(i);
    }
  }
  if (chosen.empty()) {
    if (why != nullptr)
      why->clear();
    return out;
  }

  // The fields some chosen entry signs, top first: only those are kept, so a flood of other
  // fields costs a pass, not memory.
  std::vector<std::string_view> names;
  for (size_t index : chosen) {
    for (const std::string& name : entries_[index].sign_headers) {
      if (std::find(names.begin(), names.end(), name) == names.end())
        names.push_back(name);
    }
  }
  std::vector<HeaderField> fields;
  FieldReader reader(message);
  for (HeaderField f; reader.Next(&f);) {
    if (std::any_of(names.begin(), names.end(), [&](std::string_view n) { return NameIs(f, n); }))
      fields.push_back(f);
  }

  const std::string bh = RelaxedBodyHash(body);  // one body hash for every signature
  const std::string t = std::to_string(now < 0 ? 0 : now);
  std::string data;
  std::vector<std::string_view> h;
  std::string sig;
  for (size_t index : chosen) {
    const Entry& e = entries_[index];
    // §5.4.2: a name listed k times covers its last k occurrences, bottom-up; a name listed
    // once more than it occurs (From) covers "nothing" the extra time (§5.4), which an added
    // field would then be.
    data.clear();
    h.clear();
    for (const std::string& name : e.sign_headers) {
      for (size_t k = fields.size(); k-- > 0;) {
        if (NameIs(fields[k], name)) {
          AppendRelaxedHeader(fields[k].name, fields[k].value, &data);
          data.append("\r\n");
          h.push_back(name);
        }
      }
      if (name == "from")
        h.push_back(name);
    }
    std::string field = "DKIM-Signature:";
    Folder fold(&field);
    fold.Piece("v=1;");
    fold.Piece(std::string("a=").append(AlgorithmName(e.algorithm)).append(";"));
    fold.Piece("c=relaxed/relaxed;");
    fold.Piece("d=" + e.spec.domain + ";");
    fold.Piece("s=" + e.spec.selector + ";");
    fold.Piece("t=" + t + ";");
    fold.Piece("bh=" + bh + ";");
    for (size_t k = 0; k < h.size(); ++k) {
      const std::string name = std::string(h[k]).append(k + 1 == h.size() ? ";" : ":");
      if (k == 0)
        fold.Piece("h=" + name);
      else
        fold.Glued(name);
    }
    fold.Piece("b=");
    // §3.7: the signature field itself is hashed last, canonicalized, with b= empty and
    // without its CRLF.
    AppendRelaxedHeader("DKIM-Signature", std::string_view(field).substr(15), &data);
    if (!SignData(e, data, &sig)) {
      reason = "entry " + std::to_string(index + 1) + " (" + e.spec.domain +
               ", s=" + e.spec.selector + ") failed to sign";
      continue;
    }
    fold.Breakable(Base64(reinterpret_cast<const unsigned char*>(sig.data()), sig.size()));
    field.append("\r\n");
    out.append(field);
    if (signed_by != nullptr)
      signed_by->push_back(index);
  }
  if (why != nullptr)
    *why = std::move(reason);
  return out;
}

std::string FromDomain(std::string_view message) {
  std::string_view from, body;
  std::string reason, domain;
  if (!TheFrom(message, &from, &body, &reason) || ParseFrom(from, &domain) != FromStatus::kOk)
    return {};
  return domain;
}

}  // namespace spate::dkim
