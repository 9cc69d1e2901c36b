// Sizes as users write them on command lines: "65536", "64K", "256M", "1G"
// (also "KiB", "MiB", "GiB"). Shared by the tools so they agree.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace presnap {

// Bytes, or nullopt for anything malformed or overflowing.
std::optional<uint64_t> parse_size(const std::string& text);

} // namespace presnap
