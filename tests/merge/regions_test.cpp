// Conflict regions: each kind of guest address is reported by its region
// (the ELF-symbol kind is proved on real programs by tests/kvm/merge.sh
// conflicts).
#include "../../libcore/merge/regions.h"

#include "presnap/guest_abi.h"

#include <doctest/doctest.h>

using presnap::merge::classify;

namespace {
presnap::snapshot::MonitorState layout() {
    presnap::snapshot::MonitorState st;
    st.mem_size = 256ull << 20;
    st.page_tables = 0x200000 + PSN_KERNEL_LIMIT; // above the kernel, as a test value
    st.page_table_pages = 4;
    st.in_buf = 0xfd7d000;
    st.out_buf = 0xfe7d000;
    st.stack_low = 0xf000000;
    st.stack_top = 0xfd7c000;
    st.brk_start = 0x500000;
    st.mmap_top = 0xef00000;
    return st;
}
} // namespace

TEST_CASE("conflict regions: presnap's own areas") {
    auto st = layout();
    CHECK(classify(PSN_BOOT_INFO_ADDR + 0x70, st, nullptr, 0).region == "boot info");
    CHECK(classify(PSN_KERNEL_BASE + 0x15040, st, nullptr, 0).region == "guest kernel");
    CHECK(classify(0x1000, st, nullptr, 0).region == "monitor tables");
    CHECK(classify(st.page_tables + 0x10, st, nullptr, 0).region == "page tables");
    CHECK(classify(st.in_buf + 5, st, nullptr, 0).region == "input buffer");
    CHECK(classify(st.out_buf + 5, st, nullptr, 0).region == "output buffer");
}

TEST_CASE("conflict regions: the program's stack, heap and mmap area") {
    auto st = layout();
    CHECK(classify(st.stack_top - 64, st, nullptr, 0).region == "stack");
    CHECK(classify(st.brk_start + 0x100, st, nullptr, 0x600000).region == "heap");
    CHECK(classify(0xe000000, st, nullptr, 0x600000).region == "mmap");
    CHECK(classify(0xe000000, st, nullptr, 0).region == "heap or mmap");
}

TEST_CASE("conflict regions: ELF sections and symbols") {
    auto st = layout();
    presnap::merge::ElfSymbols elf;
    elf.low = 0x400000;
    elf.high = 0x4b0000;
    elf.sections = {
        {0x401000, 0x90000, ".text"}, {0x4a6000, 0x1000, ".data"}, {0x4a8000, 0x2000, ".bss"}};
    elf.symbols = {{0x4a6720, 0x60, "mp_"}, {0x4a8100, 8, "counter"}};
    auto r = classify(0x4a675c, st, &elf, 0);
    CHECK(r.region == "elf .data");
    CHECK(r.symbol == "mp_+0x3c");
    r = classify(0x4a8100, st, &elf, 0);
    CHECK(r.region == "elf .bss");
    CHECK(r.symbol == "counter");
    r = classify(0x4a8200, st, &elf, 0);
    CHECK(r.region == "elf .bss");
    CHECK(r.symbol.empty());
}
