// The page merge of snapmerge (DESIGN.md section 7): one guest page of the
// base and of N sides (specialized snapshots made from that base) in, the
// merged page or the byte offsets that conflict out. Pure: no files, no
// KVM, so that every rule is tested as a picture (base / sides / expected).
//
// Rules, per byte:
//  - a byte in `dead` (dead at the wait point in every side: the stack below
//    the saved stack pointer, monitor-owned bytes that a restore rewrites)
//    takes the base's value;
//  - a side's change to a byte in that side's `scoped` mask (bytes a
//    steady-state request of its route rewrites: not warm state) is
//    ignored;
//  - otherwise the sides that changed the byte must agree on its value,
//    which the merged page takes; two different values are a conflict.
// A page only one side changed is that side's page as is (the composite
// equals the snapshot there): call merge_page only for pages several sides
// changed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace presnap::merge {

inline constexpr std::size_t kPage = 4096;

struct PageSide {
    // The side's page (kPage bytes); empty: the side did not change the page
    // (it is the base's). A page that became zero is kPage zero bytes.
    std::span<const std::uint8_t> page;
    // Empty, or kPage bytes: non-zero marks a request-scoped byte of this side.
    std::span<const std::uint8_t> scoped;
};

struct PageMergeResult {
    bool conflict = false;
    // Offsets where sides disagree (ascending). Empty when merged.
    std::vector<std::uint16_t> offsets;
    // Offsets a rule decided (dead or scoped bytes some side changed): for
    // the rules' statistics.
    std::uint32_t dead_bytes = 0, scoped_bytes = 0;
};

// `base`: kPage bytes, or empty for a page absent (zero) in the base.
// `dead`: empty, or kPage bytes, non-zero marks a dead byte. `out`: kPage
// bytes, the merged page (its content is unspecified on a conflict).
PageMergeResult merge_page(std::span<const std::uint8_t> base, std::span<const PageSide> sides,
                           std::span<const std::uint8_t> dead, std::span<std::uint8_t> out);

} // namespace presnap::merge
