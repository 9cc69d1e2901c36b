// The checked door into guest memory: ranges, overflow, dirty tracking.
#include "presnap/vmm/guest_memory.h"

#include <vector>

#include <doctest/doctest.h>

using namespace presnap::vmm;

TEST_CASE("ranges inside guest memory are accepted, everything else refused") {
    std::vector<uint8_t> buf(16 * kPageSize);
    GuestMemory mem(buf.data(), buf.size());
    CHECK(mem.span(0, buf.size()).has_value());
    CHECK(mem.span(buf.size(), 0).has_value());
    CHECK_FALSE(mem.span(buf.size(), 1).has_value());
    CHECK_FALSE(mem.span(buf.size() - 1, 2).has_value());
    CHECK_FALSE(mem.span(1ull << 40, 8).has_value());
    auto r = mem.span(0x10000, 0x10);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == "guest range 0x10000+0x10 is outside guest memory (size 0x10000)");
}

TEST_CASE("address plus length that overflows is refused") {
    std::vector<uint8_t> buf(4 * kPageSize);
    GuestMemory mem(buf.data(), buf.size());
    CHECK_FALSE(mem.span(8, ~0ull).has_value());
    CHECK_FALSE(mem.span(~0ull, 2).has_value());
    CHECK_FALSE(range_inside(0x1000, ~0ull - 0x800, 0x4000));
}

TEST_CASE("host writes are marked dirty page by page, reads are not") {
    std::vector<uint8_t> buf(256 * kPageSize);
    GuestMemory mem(buf.data(), buf.size());
    uint8_t data[10] = {1, 2, 3};
    REQUIRE(mem.write(2 * kPageSize - 4, data).has_value()); // straddles pages 1 and 2
    uint8_t out[4];
    REQUIRE(mem.read(100 * kPageSize, out).has_value());
    const auto& bits = mem.host_dirty_bitmap();
    CHECK(bits[0] == ((1ull << 1) | (1ull << 2)));
    CHECK(bits[1] == 0);
    CHECK(buf[2 * kPageSize - 4] == 1);
    mem.clear_host_dirty();
    CHECK(mem.host_dirty_bitmap()[0] == 0);
    CHECK_FALSE(mem.write(buf.size() - 2, data).has_value());
    CHECK(mem.host_dirty_bitmap()[3] == 0); // a refused write marks nothing
}

TEST_CASE("typed reads and writes go through the same checks") {
    std::vector<uint8_t> buf(kPageSize);
    GuestMemory mem(buf.data(), buf.size());
    REQUIRE(mem.write_obj<uint64_t>(8, 0x1122334455667788ull).has_value());
    CHECK(*mem.read_obj<uint64_t>(8) == 0x1122334455667788ull);
    CHECK_FALSE(mem.read_obj<uint64_t>(kPageSize - 4).has_value());
}

TEST_CASE("note_host_write checks its range: marks a range inside, refuses one outside") {
    std::vector<uint8_t> buf(128 * kPageSize);
    GuestMemory mem(buf.data(), buf.size());
    REQUIRE(mem.note_host_write(5 * kPageSize + 100, kPageSize).has_value()); // pages 5 and 6
    CHECK(mem.host_dirty_bitmap()[0] == ((1ull << 5) | (1ull << 6)));
    CHECK(mem.note_host_write(buf.size(), 0).has_value());
    mem.clear_host_dirty();
    // Past the end, wrapping, and far away: refused, and nothing marked (the
    // bitmap has two words; an unchecked mark wrote past it).
    auto r = mem.note_host_write(buf.size() - 8, 16);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == "guest range 0x7fff8+0x10 is outside guest memory (size 0x80000)");
    CHECK_FALSE(mem.note_host_write(1ull << 40, kPageSize).has_value());
    CHECK_FALSE(mem.note_host_write(~0ull - 10, 100).has_value());
    CHECK_FALSE(mem.note_host_write(8, ~0ull).has_value());
    for (uint64_t w : mem.host_dirty_bitmap())
        CHECK(w == 0);
}
