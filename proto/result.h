// Result<T>: a value or an Error. Used on every data path instead of exceptions.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace herald::proto {

enum class ErrorCode {
    kInvalidArgument,  // bad input from a client: 400
    kTooLarge,         // a limit was exceeded: 413
    kNotFound,         // 404
    kUnavailable,      // shutting down or overloaded: 503
    kStorage,          // the history store failed: 500
    kInternal,         // a broken invariant we chose not to abort on
};

struct Error {
    ErrorCode code;
    std::string detail;
};

template <typename T> class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
    Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T value() && { return std::get<0>(std::move(v_)); }
    const Error& error() const { return std::get<1>(v_); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

private:
    std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() {
    return Unit{};
}

inline Error make_error(ErrorCode code, std::string detail) {
    return Error{code, std::move(detail)};
}

}  // namespace herald::proto
