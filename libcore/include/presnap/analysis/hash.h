// Small, fully specified hashes shared by the probability map and the history
// format. They are part of the file formats (docs/formats/pmap.md,
// history.md), so anyone can recompute them without presnap's code: changing
// them changes both formats.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace presnap::analysis {

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ull;

// FNV-1a, 64 bit, over the bytes of `data`, continuing from `h`.
constexpr uint64_t fnv1a64(std::string_view data, uint64_t h = kFnvOffset) {
    for (unsigned char c : data) {
        h ^= c;
        h *= kFnvPrime;
    }
    return h;
}

// The 16-digit lowercase hex form used for every hash in presnap's text files.
std::string hex64(uint64_t v);

// Parses exactly 16 hex digits (either case); nullopt otherwise.
std::optional<uint64_t> parse_hex64(std::string_view s);

// The request hash of the history format: FNV-1a 64 of the request's bytes
// (the whole request, also when the record stores it truncated).
inline uint64_t request_hash(std::string_view bytes) {
    return fnv1a64(bytes);
}

} // namespace presnap::analysis
