// Private to libcore/select.
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <string>

namespace presnap::select {

// The file's bytes, refused past `limit`.
Result<std::string> read_bounded_file(const std::string& path, uint64_t limit);

} // namespace presnap::select
