// core/smtp/reply.h
//
// Reply is one SMTP reply (RFC 5321 §4.2) as a value: the three-digit code, the RFC 3463
// enhanced status code when the server sent one, and the text. A 4xx or 5xx reply is an
// outcome, never an error (see core/result.h).
// Threading: a value type.
#pragma once

#include <cstdint>
#include <string>

namespace spate::smtp {

struct Reply {
  uint16_t code = 0;     // 200..599; 0 when no reply was received (synthetic outcomes)
  std::string enhanced;  // "2.0.0"; empty when absent (RFC 2034 §3)
  std::string text;      // the text of every line after code and enhanced code, joined by '\n'

  bool positive() const { return code >= 200 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }

  // "250 2.0.0 Ok" (first line only), for logs and DSNs.
  std::string ToString() const;
};

}  // namespace spate::smtp
