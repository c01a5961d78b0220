// core/result.h
//
// Result<T> is the only way a fallible function in this code base reports failure. It holds
// either a T or a std::error_code. Member names copy std::expected (C++23), so moving to
// `std::expected<T, std::error_code>` later is mechanical.
// An SMTP 4xx/5xx reply is NOT an error: it is a value (see core/smtp/reply.h).
// Threading: a value type; no shared state.
#pragma once

#include <system_error>
#include <utility>
#include <variant>

#include "core/check.h"

namespace spate {

// Wraps an error for construction, like std::unexpected. The code must be non-zero.
struct Unexpected {
  std::error_code error;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Unexpected u) : v_(std::in_place_index<1>, u.error) {}      // NOLINT: implicit

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  // Precondition: has_value(). Checked always.
  T& value() & {
    SPATE_CHECK(has_value());
    return *std::get_if<0>(&v_);
  }
  const T& value() const& {
    SPATE_CHECK(has_value());
    return *std::get_if<0>(&v_);
  }
  T&& value() && {
    SPATE_CHECK(has_value());
    return std::move(*std::get_if<0>(&v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Precondition: !has_value().
  const std::error_code& error() const {
    SPATE_CHECK(!has_value());
    return *std::get_if<1>(&v_);
  }

 private:
  std::variant<T, std::error_code> v_;
};

// Result<void> holds only an error_code; an empty code means success.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected u) : ec_(u.error) {}  // NOLINT: implicit
  bool has_value() const { return !ec_; }
  explicit operator bool() const { return has_value(); }
  const std::error_code& error() const { return ec_; }

 private:
  std::error_code ec_;
};

// The errno of a failed POSIX call (or a negative io_uring result) as an Unexpected.
inline Unexpected Errno(int err) {
  return Unexpected{std::error_code(err, std::system_category())};
}

}  // namespace spate

// Returns early with the error of a Result-returning expression.
#define SPATE_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    if (auto spate_r_ = (expr); !spate_r_) {        \
      return ::spate::Unexpected{spate_r_.error()}; \
    }                                               \
  } while (false)
