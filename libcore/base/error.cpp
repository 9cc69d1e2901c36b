#include "presnap/error.h"

#include <cstring>

namespace presnap {

std::unexpected<Error> make_errno_error(Errc code, int err, std::string what) {
    return std::unexpected(Error{code, what + ": " + std::strerror(err), {}});
}

} // namespace presnap
