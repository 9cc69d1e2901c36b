// The sample snapshots that the unit tests and the fixture generator share:
// a 16-page guest with a few non-zero pages, fixed vCPU blobs, and fixed
// (host-independent) CPU features, so every byte is reproducible.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "presnap/snapshot/image.h"

namespace presnap::snapshot::sample {

inline constexpr std::uint64_t kGuestPages = 16;

// Fills a page with a compressible pattern that depends on `seed`.
inline void fill_page(std::uint8_t* page, std::uint32_t seed) {
    for (std::uint32_t i = 0; i < kPageSize; ++i)
        page[i] = static_cast<std::uint8_t>((i / 16 + seed * 7) % 251);
}

// Pages 0-1, 5 and 9 are non-zero; the rest are zero.
inline std::vector<std::uint8_t> base_memory() {
    std::vector<std::uint8_t> m(kGuestPages * kPageSize, 0);
    for (std::uint32_t p : {0u, 1u, 5u, 9u})
        fill_page(m.data() + p * kPageSize, p + 1);
    return m;
}

// After a request: page 1 changed, page 5 became zero, page 12 is new.
inline std::vector<std::uint8_t> after_memory() {
    std::vector<std::uint8_t> m = base_memory();
    m[1 * kPageSize + 100] ^= 0xff;
    std::memset(m.data() + 5 * kPageSize, 0, kPageSize);
    fill_page(m.data() + 12 * kPageSize, 42);
    return m;
}
inline const std::vector<std::uint64_t> kDirtyPages = {1, 5, 12};

inline std::vector<std::uint8_t> pattern(std::size_t size, std::uint8_t seed) {
    std::vector<std::uint8_t> v(size);
    for (std::size_t i = 0; i < size; ++i)
        v[i] = static_cast<std::uint8_t>(seed + i * 3);
    return v;
}

// Features every x86-64 host has: the golden files pass a host check anywhere.
inline CpuFeatures baseline_features() {
    CpuFeatures f;
    f.vendor = "AuthenticAMD";
    f.xcr0 = 0x3; // x87 sse
    // fpu cx8 cmov mmx fxsr sse sse2
    f.words.push_back(
        {1, 0, CpuidReg::kEdx,
         (1u << 0) | (1u << 8) | (1u << 15) | (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26)});
    // syscall nx lm
    f.words.push_back({0x80000001, 0, CpuidReg::kEdx, (1u << 11) | (1u << 20) | (1u << 29)});
    return f;
}

// `memory` must outlive the image: the runs borrow it.
inline SnapshotImage full_image(const std::vector<std::uint8_t>& memory, bool with_xsave = true) {
    SnapshotImage image;
    image.kind = SnapshotKind::kFull;
    image.flags = kFlagDeterministic;
    image.guest_memory_size = kGuestPages * kPageSize;
    image.vcpu.regs = pattern(kRegsSize, 1);
    image.vcpu.sregs = pattern(kSregsSize, 2);
    if (with_xsave)
        image.vcpu.xsave = std::vector<std::uint8_t>(kXsaveMinSize, 0);
    image.vcpu.xcrs = pattern(kXcrsSize, 3);
    image.vcpu.msrs = {{0xc0000080, 0xd01},      {0xc0000081, 0x23001000000000},
                       {0xc0000082, 0x401000},   {0xc0000084, 0x47700},
                       {0xc0000100, 0x4c8000},   {0xc0000101, 0},
                       {0x10, 0x123456789abcdef}};
    image.monitor_state = pattern(40, 4);
    image.cpu_features = baseline_features();
    image.executable = ExecutableInfo{{0x1111, 0x2222}, 812345, "examples/hello/hello"};
    image.metadata_json = R"({"pages_dirtied":3,"pages_touched":7,"memory_growth_bytes":4096,)"
                          R"("syscalls":{"read":2,"write":1},"exits":4,"time_ns":123456})";
    image.working_set = {{0, 2}, {5, 1}, {9, 1}};
    (void)add_memory(image, 0, memory, ZeroPages::kSkip);
    return image;
}

inline SnapshotImage diff_image(const std::vector<std::uint8_t>& after, Hash128 parent,
                                bool with_xsave = true) {
    SnapshotImage image = full_image(after, with_xsave);
    image.kind = SnapshotKind::kDiff;
    image.parent = parent;
    image.memory.clear();
    image.working_set = {{1, 1}, {5, 1}, {12, 1}};
    image.metadata_json = R"({"pages_dirtied":3,"pages_touched":3,"memory_growth_bytes":0})";
    (void)add_pages(image, kDirtyPages, after, ZeroPages::kRecord);
    return image;
}

} // namespace presnap::snapshot::sample
