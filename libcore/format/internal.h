// Helpers shared by the snapshot reader and writer (not installed).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include <xxhash.h>

#include "presnap/snapshot/image.h"

namespace presnap::snapshot::detail {

inline std::uint64_t checksum64(std::span<const std::uint8_t> bytes) {
    return XXH3_64bits(bytes.data(), bytes.size());
}

inline Hash128 to_hash128(XXH128_hash_t h) {
    return Hash128{h.low64, h.high64};
}

// Copies a trivially copyable on-disk record out of (possibly unaligned) bytes.
template <typename T> T load(std::span<const std::uint8_t> bytes, std::size_t offset = 0) {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof(T));
    return value;
}

inline void store_hash(std::uint8_t out[16], const Hash128& h) {
    std::memcpy(out, &h.low, 8);
    std::memcpy(out + 8, &h.high, 8);
}

inline Hash128 load_hash(const std::uint8_t in[16]) {
    Hash128 h;
    std::memcpy(&h.low, in, 8);
    std::memcpy(&h.high, in + 8, 8);
    return h;
}

// The content hash: XXH3-128 over the header bytes and the section table bytes.
inline Hash128 content_hash_of(std::span<const std::uint8_t> header,
                               std::span<const std::uint8_t> table) {
    XXH3_state_t* state = XXH3_createState();
    XXH3_128bits_reset(state);
    XXH3_128bits_update(state, header.data(), header.size());
    XXH3_128bits_update(state, table.data(), table.size());
    Hash128 h = to_hash128(XXH3_128bits_digest(state));
    XXH3_freeState(state);
    return h;
}

inline constexpr std::size_t kHeaderChecksummedBytes = offsetof(FileHeader, header_checksum);

} // namespace presnap::snapshot::detail
