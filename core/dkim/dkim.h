// core/dkim/dkim.h
//
// DKIM signing (RFC 6376), sans-I/O: a message in, the DKIM-Signature header fields to put in
// front of it out. c=relaxed/relaxed (§3.4.2, §3.4.4); a=rsa-sha256 (§3.3.1: RSASSA-PKCS1-v1_5
// over SHA-256, keys of 1024..4096 bits, RFC 8301 §3.2) or a=ed25519-sha256 (RFC 8463 §3:
// PureEdDSA Ed25519 over the SHA-256 hash of the header data, not over the data itself).
// Tags: v, a, c, d, s, t, bh, h, then b last, which is signed empty (§3.7). No l= (a body
// length limit lets anyone append to the body), no x=, no i= (it defaults to @d, §3.5).
//
// Signed header fields (§5.4): a default list (kDefaultHeaders) or the entry's own; each one
// present is listed once per occurrence and the occurrences are signed bottom-up (§5.4.2).
// From is always signed (§5.4: it MUST be) and oversigned: listed once more than it occurs,
// so a From: added on the way breaks the signature instead of fooling a reader (§8.15).
//
// Which entries sign (Sign): those of the From: domain, else those of its nearest parent
// domain that has entries, else the default ones. The From: field must hold one mailbox: no
// From:, two From: fields, a group or a list of mailboxes (RFC 5322 §3.6.2; DMARC, RFC 7489
// §6.6.1, needs one author domain) or an address that does not parse is not signed.
//
// Hostile input (the message is the client's): never a crash or an exception, and work
// linear in the message.
// Threading: Create() reads the key files (blocks on them: start-up or a reload, never a
// reactor). A Signer is immutable afterwards: Sign() may run on many threads at once (each
// signature has its own BoringSSL contexts; BoringSSL's keys are safe for concurrent use).
// Sign() costs about a millisecond per RSA-2048 signature: run it off the reactors.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dkim/canon.h"  // RelaxedHeader(), RelaxedBodyHash(): exposed for tests and fuzzing

// BoringSSL's key type, so that this header does not pull in <openssl/evp.h>.
struct evp_pkey_st;

namespace spate::dkim {

enum class Algorithm : uint8_t { kRsaSha256, kEd25519Sha256 };

// "rsa-sha256", "ed25519-sha256": the a= value (RFC 6376 §3.5, RFC 8463 §3).
std::string_view AlgorithmName(Algorithm algorithm);

// What is signed when an entry names no headers, in this order, each when present (From is
// always first and oversigned). The fields a reader sees or acts on (RFC 6376 §5.4.1), and
// those of bulk mail: List-Unsubscribe(-Post) must be signed for one-click unsubscribing to
// count (RFC 8058 §4), Feedback-ID is how a mailbox provider reports complaints per sender.
inline constexpr std::array<std::string_view, 16> kDefaultHeaders = {"from",
                                                                     "to",
                                                                     "cc",
                                                                     "subject",
                                                                     "date",
                                                                     "message-id",
                                                                     "reply-to",
                                                                     "in-reply-to",
                                                                     "references",
                                                                     "mime-version",
                                                                     "content-type",
                                                                     "content-transfer-encoding",
                                                                     "list-id",
                                                                     "list-unsubscribe",
                                                                     "list-unsubscribe-post",
                                                                     "feedback-id"};

// One [[dkim]] entry of the configuration.
struct KeySpec {
  std::string domain;    // the d= domain, lower-case
  std::string selector;  // s=
  // PEM: an RSA private key (PKCS#1 or PKCS#8) of 1024..4096 bits, or an Ed25519 private key
  // (PKCS#8); not encrypted.
  std::string key_file;
  std::vector<std::string> headers;  // the header names to sign; empty: kDefaultHeaders
  bool is_default = false;  // signs mail whose From: domain has no entry (with d= this domain)
};

class Signer {
 public:
  struct KeyFree {
    void operator()(evp_pkey_st* key) const;
  };
  struct Entry {
    KeySpec spec;
    Algorithm algorithm = Algorithm::kRsaSha256;
    unsigned bits = 0;  // the RSA modulus; 256 for Ed25519 (a 32-octet key, RFC 8463 §4.2)
    // Internal: the key, and the header names to sign (lower case, From first, no repeats).
    std::unique_ptr<evp_pkey_st, KeyFree> key;
    std::vector<std::string> sign_headers;
  };

  // Loads every key. nullopt with *error (when given) naming the file and why:
  // "KEY_FILE: cannot read (No such file or directory)", "KEY_FILE: not a PEM private key",
  // "KEY_FILE: RSA key of 512 bits; 1024 to 4096", "KEY_FILE: an EC key; RSA or Ed25519".
  // An entry whose domain, selector or header names could not be written into a header is
  // refused too, naming the entry. No entries at all is a Signer that signs nothing.
  static std::optional<Signer> Create(const std::vector<KeySpec>& specs, std::string* error);
  // The same with each key's PEM text given: pem[i] is specs[i]'s key (its key_file only
  // names it in errors). For tests and the fuzzer; Create() reads the files and calls this.
  static std::optional<Signer> CreateFromPem(const std::vector<KeySpec>& specs,
                                             const std::vector<std::string>& pem,
                                             std::string* error);

  Signer(Signer&&) = default;
  Signer& operator=(Signer&&) = default;

  const std::vector<Entry>& entries() const { return entries_; }

  // The DKIM-Signature header fields for `message` (CRLF lines, not dot-stuffed: headers, an
  // empty line, the body; a message without an empty line is all headers), to be put in front
  // of it: one per entry that applies, each "DKIM-Signature: ...\r\n", folded at 78 columns
  // (a longer domain or header name is never split). `now`: unix seconds, for t=.
  // `signed_by` (may be null) gets the indices into entries() of the entries that signed.
  // Empty with *why (may be null) empty: no entry applies (not an error; not signed).
  // Empty with *why set: the message cannot be signed ("no From: field", "2 From: fields",
  // "the From: field holds a group or several mailboxes", "the From: address does not parse").
  std::string Sign(std::string_view message, int64_t now, std::vector<size_t>* signed_by = nullptr,
                   std::string* why = nullptr) const;

 private:
  Signer() = default;

  std::vector<Entry> entries_;
};

// The domain of the From: field's one mailbox, lower-case (ASCII letters); "" when there is no
// From:, more than one, a group or a list, an address that does not parse, or a domain
// literal (no d= can name it). Display names, quoted strings, comments, angle-addr, bare
// addr-spec, folding and the obsolete route of RFC 5322 §4.4 are understood.
std::string FromDomain(std::string_view message);

}  // namespace spate::dkim
