// core/smtp/internal/sasl.cc
#include "core/smtp/internal/sasl.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "core/smtp/server_session.h"
#include "core/wipe.h"

namespace spate::smtp::internal {
namespace {

// AUTH LOGIN's challenges (draft-murchison-sasl-login): "Username:" and "Password:" in base64.
constexpr std::string_view kLoginUser = "334 VXNlcm5hbWU6";
constexpr std::string_view kLoginPassword = "334 UGFzc3dvcmQ6";
// RFC 4954 §4: PLAIN has nothing to say before the client's response.
constexpr std::string_view kPlainChallenge = "334 ";
// RFC 4954 §6: also what a malformed PLAIN message gets, as bad credentials would.
constexpr std::string_view kInvalid = "535 5.7.8 Authentication credentials invalid";

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '+') {
    return 62;
  }
  if (c == '/') {
    return 63;
  }
  return -1;
}

// RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd, authcid and passwd not
// empty.
bool ParsePlain(std::string_view message, AuthRequest* credentials) {
  const size_t nul1 = message.find('\0');
  const size_t nul2 = nul1 == std::string_view::npos ? nul1 : message.find('\0', nul1 + 1);
  if (nul2 == std::string_view::npos || message.find('\0', nul2 + 1) != std::string_view::npos ||
      nul2 == nul1 + 1 || nul2 + 1 == message.size()) {
    return false;
  }
  credentials->authzid = std::string(message.substr(0, nul1));
  credentials->user = std::string(message.substr(nul1 + 1, nul2 - nul1 - 1));
  credentials->password = std::string(message.substr(nul2 + 1));
  return true;
}

}  // namespace

bool DecodeBase64(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) {
    return false;
  }
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t bits = 0;
    int pad = 0;
    for (size_t j = 0; j < 4; ++j) {
      const char c = in[i + j];
      int v = 0;
      if (c == '=') {
        if (i + 4 != in.size() || j < 2) {
          return false;
        }
        ++pad;
      } else {
        v = Base64Value(c);
        if (v < 0 || pad > 0) {
          return false;
        }
      }
      bits = (bits << 6) | static_cast<uint32_t>(v);
    }
    out->push_back(static_cast<char>(bits >> 16));
    if (pad < 2) {
      out->push_back(static_cast<char>((bits >> 8) & 0xff));
    }
    if (pad < 1) {
      out->push_back(static_cast<char>(bits & 0xff));
    }
  }
  return true;
}

std::string_view SaslServer::Begin(bool plain) {
  awaiting_ = plain ? Awaiting::kPlain : Awaiting::kLoginUser;
  user_.clear();
  return plain ? kPlainChallenge : kLoginUser;
}

SaslServer::Step SaslServer::Respond(std::string_view line, AuthRequest* credentials) {
  if (line == "*") {
    return {Outcome::kFailed, "501 5.0.0 Authentication cancelled"};  // RFC 4954 §4
  }
  // The decoded response holds the password (PLAIN's, or LOGIN's second): wiped on every path,
  // and the credentials get copies, never a moved-from buffer.
  std::string decoded;
  if (!DecodeBase64(line, &decoded)) {
    Wipe(decoded);  // what was decoded before the bad octet
    return {Outcome::kFailed, "501 5.5.2 Cannot decode response"};  // RFC 4954 §4
  }
  switch (awaiting_) {
    case Awaiting::kPlain: {
      const bool ok = ParsePlain(decoded, credentials);
      Wipe(decoded);
      if (!ok) {
        return {Outcome::kFailed, kInvalid};
      }
      credentials->mechanism = "PLAIN";
      return {Outcome::kComplete, ""};
    }
    case Awaiting::kLoginUser:
      user_ = decoded;
      Wipe(decoded);
      awaiting_ = Awaiting::kLoginPassword;
      return {Outcome::kChallenge, kLoginPassword};
    case Awaiting::kLoginPassword:
      break;
  }
  credentials->mechanism = "LOGIN";
  credentials->user = user_;
  Wipe(user_);
  credentials->password = decoded;
  Wipe(decoded);
  return {Outcome::kComplete, ""};
}

}  // namespace spate::smtp::internal
