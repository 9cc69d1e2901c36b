// Guest physical memory as the host sees it, and the one checked door into
// it. Every guest address and length the monitor reads or writes goes through
// span()/read()/write(), which check range and overflow. Writes made by the
// host are recorded in a dirty bitmap, because KVM's dirty log does not see
// them (snapshots need the union of both).
#pragma once

#include "presnap/error.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace presnap::vmm {

inline constexpr uint64_t kPageSize = 4096;

class GuestMemory {
  public:
    GuestMemory() = default;
    // Borrows `base` (size bytes, page aligned); the owner keeps it mapped.
    GuestMemory(uint8_t* base, uint64_t size);

    uint64_t size() const { return size_; }
    uint8_t* host_base() const { return base_; }

    // The host bytes of guest range [gpa, gpa + len), or an error naming the
    // range when it is not wholly inside guest memory.
    Result<std::span<uint8_t>> span(uint64_t gpa, uint64_t len) const;
    // Like span() for a range the host is about to write: marks it dirty.
    Result<std::span<uint8_t>> span_for_write(uint64_t gpa, uint64_t len);

    Status read(uint64_t gpa, std::span<uint8_t> out) const;
    Status write(uint64_t gpa, std::span<const uint8_t> in);

    template <typename T> Result<T> read_obj(uint64_t gpa) const {
        T v;
        if (auto s = read(gpa, {reinterpret_cast<uint8_t*>(&v), sizeof v}); !s)
            return std::unexpected(s.error());
        return v;
    }
    template <typename T> Status write_obj(uint64_t gpa, const T& v) {
        return write(gpa, {reinterpret_cast<const uint8_t*>(&v), sizeof v});
    }

    // Records that the host wrote [gpa, gpa + len) through a span() it got
    // before it knew how much it would write (e.g. a read(2) into guest memory).
    // The range is checked like span()'s: outside guest memory (or wrapping),
    // nothing is marked and the error names the range. Callers that note a
    // range inside a span they already hold may ignore the result.
    Status note_host_write(uint64_t gpa, uint64_t len);

    // Pages written by the host since the last clear_host_dirty().
    const std::vector<uint64_t>& host_dirty_bitmap() const { return dirty_; }
    void clear_host_dirty();

  private:
    void mark_dirty(uint64_t gpa, uint64_t len);

    uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    std::vector<uint64_t> dirty_; // one bit per page
};

// True when [gpa, gpa + len) lies inside [0, size) without overflow.
constexpr bool range_inside(uint64_t gpa, uint64_t len, uint64_t size) {
    return gpa <= size && len <= size - gpa;
}

} // namespace presnap::vmm
