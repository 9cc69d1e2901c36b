// The guest memory layout: regions in order, no overlaps, sizes checked.
#include "presnap/guest_abi.h"
#include "presnap/vmm/x86_64.h"

#include <doctest/doctest.h>

using namespace presnap::vmm;

TEST_CASE("the layout stacks its regions from the top without overlap") {
    auto l = compute_layout(256ull << 20, 5000, 0x4a1234);
    REQUIRE(l.has_value());
    CHECK(l->brk_start == 0x4a2000);
    CHECK(l->brk_start < l->mmap_top);
    CHECK(l->mmap_top + kPageSize == l->stack_low); // guard page
    CHECK(l->stack_top - l->stack_low == PSN_STACK_SIZE);
    CHECK(l->stack_top + kPageSize == l->in_buf);
    CHECK(l->in_buf + PSN_IO_BUFFER_SIZE == l->out_buf);
    CHECK(l->out_buf + PSN_IO_BUFFER_SIZE == l->rootfs);
    CHECK(l->rootfs + 2 * kPageSize == l->page_tables); // 5000 bytes round up to 2 pages
    CHECK(l->page_tables + l->page_table_pages * kPageSize == 256ull << 20);
    // 65536 pages need 128 page tables, 1 directory, 1 PDPT and the PML4.
    CHECK(l->page_table_pages == 131);
}

TEST_CASE("sizes out of range or too small for the program are refused") {
    CHECK_FALSE(compute_layout(8ull << 20, 0, 0x500000).has_value());
    CHECK_FALSE(compute_layout((64ull << 20) + 4096, 0, 0x500000).has_value());
    auto r = compute_layout(16ull << 20, 0, 0x600000);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("too small for this program") != std::string::npos);
}
