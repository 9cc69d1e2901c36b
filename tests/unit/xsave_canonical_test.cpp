// The canonical XSAVE header: XSTATE_BV marks every component of the guest's
// XCR0 that the KVM_GET_XSAVE area holds, whatever the CPU left in it.
#include "presnap/vmm/vcpu_state.h"

#include <cstring>
#include <linux/kvm.h>

#include <doctest/doctest.h>

using presnap::vmm::canonical_xstate_bv;

namespace {

std::vector<uint8_t> xcrs_with(uint64_t xcr0, uint32_t index = 0) {
    kvm_xcrs x{};
    x.nr_xcrs = 1;
    x.xcrs[0].xcr = index;
    x.xcrs[0].value = xcr0;
    auto* p = reinterpret_cast<const uint8_t*>(&x);
    return {p, p + sizeof x};
}

std::vector<uint8_t> xsave_with(uint64_t bv) {
    std::vector<uint8_t> a(4096, 0);
    a[0] = 0x7f; // FCW's low byte: some state that must not change
    std::memcpy(a.data() + 512, &bv, 8);
    return a;
}

uint64_t bv_of(const std::vector<uint8_t>& a) {
    uint64_t bv;
    std::memcpy(&bv, a.data() + 512, 8);
    return bv;
}

} // namespace

TEST_CASE("x87 saved in its initial state with or without its bit gives the same bytes") {
    auto a = xsave_with(0xa2), b = xsave_with(0xa3); // as two runs of one guest saved it
    canonical_xstate_bv(a, xcrs_with(0xe7));
    canonical_xstate_bv(b, xcrs_with(0xe7));
    CHECK(a == b);
    CHECK(bv_of(a) == 0xe7);
    CHECK(a[0] == 0x7f);
}

TEST_CASE("only the XCR0 components the area holds are marked") {
    auto a = xsave_with(0x3);
    canonical_xstate_bv(a, xcrs_with(0x600e7)); // AMX tile state: not in the 4096-byte area
    CHECK(bv_of(a) == 0xe7);
    auto b = xsave_with(0x1);
    canonical_xstate_bv(b, xcrs_with(0x7)); // no AVX-512 in XCR0
    CHECK(bv_of(b) == 0x7);
}

TEST_CASE("no XCR0 in the XCRs, or areas of the wrong size: unchanged") {
    auto a = xsave_with(0x2);
    canonical_xstate_bv(a, xcrs_with(0xe7, 1)); // XCR1, not XCR0
    CHECK(bv_of(a) == 0x2);
    canonical_xstate_bv(a, std::vector<uint8_t>(10)); // cut XCRs
    CHECK(bv_of(a) == 0x2);
    std::vector<uint8_t> cut(100, 0);
    canonical_xstate_bv(cut, xcrs_with(0xe7)); // cut area
    CHECK(cut == std::vector<uint8_t>(100, 0));
}
