#include "presnap/vmm/guest_memory.h"

#include <cstring>

namespace presnap::vmm {

GuestMemory::GuestMemory(uint8_t* base, uint64_t size)
    : base_(base), size_(size), dirty_((size / kPageSize + 63) / 64, 0) {}

Result<std::span<uint8_t>> GuestMemory::span(uint64_t gpa, uint64_t len) const {
    if (!range_inside(gpa, len, size_))
        return make_error(Errc::kGuest,
                          "guest range 0x{:x}+0x{:x} is outside guest memory (size 0x{:x})", gpa,
                          len, size_);
    return std::span<uint8_t>(base_ + gpa, len);
}

Result<std::span<uint8_t>> GuestMemory::span_for_write(uint64_t gpa, uint64_t len) {
    auto s = span(gpa, len);
    if (s)
        mark_dirty(gpa, len);
    return s;
}

Status GuestMemory::note_host_write(uint64_t gpa, uint64_t len) {
    auto s = span_for_write(gpa, len);
    if (!s)
        return std::unexpected(s.error());
    return {};
}

Status GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
    auto s = span(gpa, out.size());
    if (!s)
        return std::unexpected(s.error());
    std::memcpy(out.data(), s->data(), out.size());
    return {};
}

Status GuestMemory::write(uint64_t gpa, std::span<const uint8_t> in) {
    auto s = span_for_write(gpa, in.size());
    if (!s)
        return std::unexpected(s.error());
    std::memcpy(s->data(), in.data(), in.size());
    return {};
}

// Only for ranges already checked by span().
void GuestMemory::mark_dirty(uint64_t gpa, uint64_t len) {
    if (len == 0)
        return;
    for (uint64_t p = gpa / kPageSize; p <= (gpa + len - 1) / kPageSize; p++)
        dirty_[p / 64] |= 1ull << (p % 64);
}

void GuestMemory::clear_host_dirty() {
    std::fill(dirty_.begin(), dirty_.end(), 0);
}

} // namespace presnap::vmm
