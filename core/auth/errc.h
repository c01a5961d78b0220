// core/auth/errc.h
//
// Errors of the credentials store: a users file that cannot be read or has a bad line. A wrong
// password is not an error: it is the answer `false` (and a 535 to the client).
// Threading: values; the category is immutable.
#pragma once

#include <system_error>

namespace spate::auth {

enum class Errc {
  kUnreadable = 1,  // the users file cannot be opened or read
  kBadLine,         // a line is not "user:$pbkdf2-sha256$<iterations>$<salt>$<hash>"
  kDuplicateUser,   // a user name appears twice
};

const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), ErrorCategory()};
}

}  // namespace spate::auth

template <>
struct std::is_error_code_enum<spate::auth::Errc> : std::true_type {};
