// core/auth/credentials.cc
#include "core/auth/credentials.h"

#include <charconv>
#include <fstream>
#include <map>
#include <sstream>

#include <openssl/base64.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

namespace spate::auth {
namespace {

constexpr std::string_view kScheme = "$pbkdf2-sha256$";
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr size_t kMaxHashBytes = 64;

// Base64 with or without padding; passlib's "adapted" alphabet ('.' for '+') is accepted.
bool DecodeBase64(std::string_view in, std::vector<uint8_t>* out) {
  std::string s(in);
  for (char& c : s) {
    if (c == '.')
      c = '+';
  }
  while (!s.empty() && s.back() == '=')
    s.pop_back();
  while (s.size() % 4 != 0)
    s += '=';
  size_t max_len = 0;
  if (s.empty() || !EVP_DecodedLength(&max_len, s.size()))
    return false;
  out->resize(max_len);
  size_t len = 0;
  if (!EVP_DecodeBase64(out->data(), &len, out->size(), reinterpret_cast<const uint8_t*>(s.data()),
                        s.size())) {
    return false;
  }
  out->resize(len);
  return true;
}

// Base64 without padding (the PHC string format's choice).
std::string EncodeBase64(const uint8_t* data, size_t len) {
  size_t out_len = 0;
  EVP_EncodedLength(&out_len, len);
  std::string out(out_len, '\0');
  out.resize(EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), data, len));
  while (!out.empty() && out.back() == '=')
    out.pop_back();
  return out;
}

Unexpected Fail(Errc code, std::string text, std::string* error) {
  if (error != nullptr)
    *error = std::move(text);
  return Unexpected{make_error_code(code)};
}

}  // namespace

bool CredentialStore::ParseHash(std::string_view text, Entry* out) {
  if (text.substr(0, kScheme.size()) != kScheme)
    return false;
  text.remove_prefix(kScheme.size());
  size_t d1 = text.find('$');
  size_t d2 = d1 == std::string_view::npos ? d1 : text.find('$', d1 + 1);
  if (d2 == std::string_view::npos || text.find('$', d2 + 1) != std::string_view::npos)
    return false;
  std::string_view iterations = text.substr(0, d1);
  auto [end, ec] =
      std::from_chars(iterations.data(), iterations.data() + iterations.size(), out->iterations);
  if (ec != std::errc() || end != iterations.data() + iterations.size() ||
      out->iterations < kMinIterations || out->iterations > kMaxIterations) {
    return false;
  }
  return DecodeBase64(text.substr(d1 + 1, d2 - d1 - 1), &out->salt) && out->salt.size() >= 8 &&
         DecodeBase64(text.substr(d2 + 1), &out->hash) && out->hash.size() >= 16 &&
         out->hash.size() <= kMaxHashBytes;
}

Result<std::unique_ptr<CredentialStore>> CredentialStore::Load(const std::string& path,
                                                               std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Fail(Errc::kUnreadable, path + ": cannot open", error);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return Fail(Errc::kUnreadable, path + ": read error", error);
  auto store = Parse(text.str(), error);
  if (!store && error != nullptr)
    *error = path + ": " + *error;
  return store;
}

Result<std::unique_ptr<CredentialStore>> CredentialStore::Parse(std::string_view text,
                                                                std::string* error) {
  std::unique_ptr<CredentialStore> store(new CredentialStore());
  std::map<unsigned, size_t> iteration_counts;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.remove_suffix(1);
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#')
      continue;
    line.remove_prefix(first);
    std::string where = "line " + std::to_string(line_no);
    size_t colon = line.find(':');
    Entry entry;
    if (colon == 0 || colon == std::string_view::npos ||
        !ParseHash(line.substr(colon + 1), &entry)) {
      // The line is not echoed: it may hold a password pasted by mistake.
      return Fail(Errc::kBadLine,
                  where + ": want user:$pbkdf2-sha256$<iterations " +
                      std::to_string(kMinIterations) + " to " + std::to_string(kMaxIterations) +
                      ">$<salt>$<hash> (spate --hash-password)",
                  error);
    }
    std::string user(line.substr(0, colon));
    ++iteration_counts[entry.iterations];
    if (!store->users_.emplace(user, std::move(entry)).second)
      return Fail(Errc::kDuplicateUser, where + ": user \"" + user + "\" listed twice", error);
  }
  // The dummy costs what most entries cost, so an unknown user looks like a typical known one.
  store->dummy_.iterations = kDefaultIterations;
  size_t most = 0;
  for (const auto& [iterations, count] : iteration_counts) {
    if (count > most) {
      most = count;
      store->dummy_.iterations = iterations;
    }
  }
  store->dummy_.salt.resize(kSaltBytes);
  store->dummy_.hash.resize(kHashBytes);
  RAND_bytes(store->dummy_.salt.data(), store->dummy_.salt.size());
  RAND_bytes(store->dummy_.hash.data(), store->dummy_.hash.size());
  return store;
}

bool CredentialStore::Verify(std::string_view user, std::string_view password) const {
  auto it = users_.find(std::string(user));
  bool known = it != users_.end();
  const Entry& entry = known ? it->second : dummy_;
  uint8_t derived[kMaxHashBytes];
  if (!PKCS5_PBKDF2_HMAC(password.data(), password.size(), entry.salt.data(), entry.salt.size(),
                         entry.iterations, EVP_sha256(), entry.hash.size(), derived)) {
    return false;  // allocation failure
  }
  bool match = CRYPTO_memcmp(derived, entry.hash.data(), entry.hash.size()) == 0;
  // Both are computed whatever `known` is; the dummy's random hash cannot match anyway.
  return known & match;
}

std::string HashPassword(std::string_view password, unsigned iterations) {
  uint8_t salt[kSaltBytes];
  uint8_t hash[kHashBytes];
  RAND_bytes(salt, sizeof salt);
  SPATE_CHECK(PKCS5_PBKDF2_HMAC(password.data(), password.size(), salt, sizeof salt, iterations,
                                EVP_sha256(), sizeof hash, hash) == 1);
  return std::string(kScheme) + std::to_string(iterations) + "$" + EncodeBase64(salt, sizeof salt) +
         "$" + EncodeBase64(hash, sizeof hash);
}

}  // namespace spate::auth
