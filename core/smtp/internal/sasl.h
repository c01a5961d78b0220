// core/smtp/internal/sasl.h
//
// The server side of one SASL exchange of SMTP AUTH (RFC 4954 §4): PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login). Fed the client's responses (base64, RFC 4648 §4), it says what to
// answer: the next 334 challenge, that the credentials are complete, or the reply that ends the
// exchange. It checks no password: ServerSession hands the credentials to the glue, which does.
// Whether AUTH may be used at all (EHLO, TLS, no transaction) is the session's business.
// Private to ServerSession (core/smtp/server_session.h).
// Threading: owned by its session, on the session's shard.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace spate::smtp {

struct AuthRequest;  // core/smtp/server_session.h

namespace internal {

// RFC 4648 §4, padded, no white space (RFC 4954 §4: a response is a base64 string).
bool DecodeBase64(std::string_view in, std::string* out);

class SaslServer {
 public:
  enum class Outcome : uint8_t {
    kChallenge,  // send `reply` (a 334) and feed the next line to Respond()
    kComplete,   // the credentials are complete
    kFailed,     // send `reply` (501, 535): the exchange is over
  };
  struct Step {
    Outcome outcome;
    std::string_view reply;  // without CRLF; empty for kComplete
  };

  // Begins an exchange, forgetting any earlier one: PLAIN if `plain`, else LOGIN. Returns the
  // first challenge, for a client that sent no initial response.
  std::string_view Begin(bool plain);

  // One response: a line after a 334 (without CRLF), or the AUTH command's initial response
  // (its "=" already made empty, RFC 4954 §4). On kComplete, *credentials holds them.
  Step Respond(std::string_view line, AuthRequest* credentials);

 private:
  enum class Awaiting : uint8_t {
    kPlain,          // PLAIN's only response: [authzid] NUL authcid NUL passwd
    kLoginUser,      // LOGIN: the user name, then...
    kLoginPassword,  // ...the password
  };

  Awaiting awaiting_ = Awaiting::kPlain;
  std::string user_;  // LOGIN's user name, between its two responses
};

}  // namespace internal
}  // namespace spate::smtp
