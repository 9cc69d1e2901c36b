// Errors returned by libcore. Library code never prints or exits: it returns
// an Error carrying a code, a message and where it happened (file, offset,
// page, request), and the tools turn it into one diagnostic line.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace presnap {

enum class Errc {
    kInvalidArgument = 1, // bad option or value given by the user
    kIo,                  // the host OS refused a read, write, open, mmap ...
    kFormat,              // a file is malformed (bad magic, bounds, checksum ...)
    kUnsupported,         // valid but not supported (e.g. a dynamic executable)
    kKvm,                 // a KVM ioctl failed
    kGuest,               // the guest misbehaved (fault, bad pointer, limits)
    kTimeout,             // a guest request ran past its time limit
    kInternal,            // a bug in presnap
};

struct Error {
    Errc code = Errc::kInternal;
    std::string message; // lowercase, no trailing period
    std::string context; // file name or other subject, may be empty

    // "context: message", or just the message.
    std::string describe() const { return context.empty() ? message : context + ": " + message; }

    // Returns a copy of this error with a context set when it has none.
    Error with_context(std::string ctx) const& {
        Error e = *this;
        if (e.context.empty())
            e.context = std::move(ctx);
        return e;
    }
};

template <typename T> using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

template <typename... Args>
std::unexpected<Error> make_error(Errc code, fmt::format_string<Args...> f, Args&&... args) {
    return std::unexpected(Error{code, fmt::format(f, std::forward<Args>(args)...), {}});
}

// Like make_error, with errno's text appended ("...: No such file or directory").
std::unexpected<Error> make_errno_error(Errc code, int err, std::string what);

} // namespace presnap
