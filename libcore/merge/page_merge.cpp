#include "presnap/merge/page_merge.h"

#include <algorithm>
#include <cstring>

namespace presnap::merge {

PageMergeResult merge_page(std::span<const std::uint8_t> base, std::span<const PageSide> sides,
                           std::span<const std::uint8_t> dead, std::span<std::uint8_t> out) {
    PageMergeResult r;
    static const std::uint8_t kZero[kPage] = {};
    const std::uint8_t* b = base.empty() ? kZero : base.data();
    std::memcpy(out.data(), b, kPage);
    for (std::size_t i = 0; i < kPage; i++) {
        bool have = false, differ = false, ruled_scoped = false;
        std::uint8_t value = b[i];
        for (const PageSide& s : sides) {
            if (s.page.empty() || s.page[i] == b[i])
                continue;
            if (!dead.empty() && dead[i])
                continue;
            if (!s.scoped.empty() && s.scoped[i]) {
                ruled_scoped = true;
                continue;
            }
            if (!have) {
                have = true;
                value = s.page[i];
            } else if (s.page[i] != value) {
                differ = true;
            }
        }
        if (!dead.empty() && dead[i]) {
            for (const PageSide& s : sides)
                if (!s.page.empty() && s.page[i] != b[i]) {
                    r.dead_bytes++;
                    break;
                }
            continue;
        }
        if (differ) {
            r.conflict = true;
            r.offsets.push_back(static_cast<std::uint16_t>(i));
            continue;
        }
        if (ruled_scoped && !have)
            r.scoped_bytes++;
        out[i] = have ? value : b[i];
    }
    return r;
}

} // namespace presnap::merge
