// core/auth/credentials.h
//
// CredentialStore is the users file behind SMTP AUTH (RFC 4954): one user a line,
//
//   user:$pbkdf2-sha256$<iterations>$<salt>$<hash>
//
// salt and hash in base64 (standard alphabet, padding optional; passlib's "." for "+" is read
// too, so its pbkdf2_sha256 hashes work as they are). Blank lines and lines starting with '#'
// are skipped. `spate --hash-password` prints such a line's part after "user:".
//
// Verify() costs one PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) whether the user exists or not: an
// unknown user is checked against a dummy entry, and digests are compared in constant time, so
// neither the answer nor its timing tells which users exist.
// Threading: loaded once at start-up (reads the file: may block); immutable afterwards, Verify()
// is callable from any thread. Verify() blocks for the PBKDF2 (about 50 ms at 100,000
// iterations): the daemon calls it on auth::Verifier's workers, never on a reactor thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/auth/errc.h"
#include "core/result.h"

namespace spate::auth {

// What `spate --hash-password` uses for new hashes. Verification runs on auth::Verifier's
// workers, not on a reactor, so it can cost tens of milliseconds. Lines hashed with another
// count (the earlier default was 10,000) verify as they are: each line names its own count.
inline constexpr unsigned kDefaultIterations = 100000;
// Bounds accepted in the users file: below, the hash is too cheap to crack; above, one AUTH
// would hold a verifier worker (and every AUTH queued behind it) for a long time.
inline constexpr unsigned kMinIterations = 1000;
inline constexpr unsigned kMaxIterations = 1000000;

class CredentialStore {
 public:
  // On failure `error` (when given) names the file and the line.
  static Result<std::unique_ptr<CredentialStore>> Load(const std::string& path,
                                                       std::string* error = nullptr);
  static Result<std::unique_ptr<CredentialStore>> Parse(std::string_view text,
                                                        std::string* error = nullptr);

  // True when `user` is listed and `password` matches its hash. User names match exactly.
  bool Verify(std::string_view user, std::string_view password) const;

  size_t size() const { return users_.size(); }

 private:
  struct Entry {
    unsigned iterations = 0;
    std::vector<uint8_t> salt;
    std::vector<uint8_t> hash;
  };

  CredentialStore() = default;
  static bool ParseHash(std::string_view text, Entry* out);

  std::unordered_map<std::string, Entry> users_;
  Entry dummy_;  // random salt and hash, the usual iteration count: unknown users use it
};

// "$pbkdf2-sha256$<iterations>$<salt>$<hash>" for `password`, with a fresh 16-byte random salt
// and a 32-byte hash (base64 without padding).
std::string HashPassword(std::string_view password, unsigned iterations = kDefaultIterations);

}  // namespace spate::auth
