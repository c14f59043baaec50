// SPDX-License-Identifier: MIT
// Errno-carrying results: every fallible engine call returns Result<T>. The error
// holds the errno the ioctl answers and a sentence saying why, which the daemon logs.
#pragma once

#include <fmt/format.h>

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace ioasid {

struct Error {
  int code = 0;     // a positive errno value
  std::string why;  // human-readable reason, logged by the daemon
};

// Builds an Error with a formatted reason: return fail(EINVAL, "min {} > max {}", a, b);
template <typename... Args>
[[nodiscard]] Error fail(int code, fmt::format_string<Args...> format, Args&&... args) {
  return Error{code, fmt::format(format, std::forward<Args>(args)...)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit on purpose
  Result(Error error) : state_(std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(state_); }
  Error&& error() && { return std::get<1>(std::move(state_)); }
  int code() const { return ok() ? 0 : error().code; }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }
  int code() const { return failed_ ? error_.code : 0; }

 private:
  Error error_;
  bool failed_ = false;
};

inline Result<void> success() { return {}; }

}  // namespace ioasid

// Propagates an error from an expression returning Result<...>. Binds by reference,
// so a named Result of a move-only type is not copied (its error is moved out).
#define IOASID_TRY(expr)                                          \
  do {                                                            \
    if (auto&& ioasid_try_result_ = (expr); !ioasid_try_result_) \
      return std::move(ioasid_try_result_).error();               \
  } while (0)
