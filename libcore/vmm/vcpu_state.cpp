#include "presnap/vmm/vcpu_state.h"

#include "presnap/guest_abi.h"

#include <algorithm>
#include <cstring>

namespace presnap::vmm {
namespace {

constexpr uint32_t kMsrKernelGsBase = 0xc0000102;
// RFLAGS bits a program at CPL3 can hold: CF PF AF ZF SF TF DF OF NT RF AC ID,
// plus the always-one bit 1. Never IF, IOPL or VM: presnap runs with neither.
constexpr uint64_t kRflagsAllowed = 0x1 | 0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 |
                                    0x4000 | 0x10000 | 0x40000 | 0x200000;
constexpr size_t kMxcsrOffset = 24; // in the legacy FXSAVE area
constexpr size_t kXstateBvOffset = 512;
// Components whose state fits the 4096-byte KVM_GET_XSAVE area: x87, SSE,
// AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM); the guest's XCR0 has no others.
constexpr uint64_t kXsaveAreaComponents = 0xe7;

template <typename T> T load(const std::vector<uint8_t>& bytes) {
    T v;
    std::memcpy(&v, bytes.data(), sizeof v);
    return v;
}

Status check_segment(const char* name, const kvm_segment& s, const kvm_segment& want) {
    if (s.selector != want.selector || s.dpl != want.dpl || s.l != want.l || s.present != 1)
        return make_error(Errc::kFormat,
                          "saved {} selector 0x{:x} (DPL {}) is not one presnap sets (0x{:x}, "
                          "DPL {})",
                          name, s.selector, unsigned(s.dpl), want.selector, unsigned(want.dpl));
    return {};
}

} // namespace

// The XSAVE header's XSTATE_BV tells which state components are not in
// their initial configuration, but a CPU may also leave a bit set for a
// component that is (the init optimization is optional), and a host context
// switch, which saves and reloads the vCPU's registers, changes what it does:
// the same guest, run twice, saved x87 state with the bit set once and clear
// once. KVM_GET_XSAVE writes every component's area either way (its initial
// values when the bit is clear), so marking all of the guest's XCR0
// components present loads the same registers and makes a deterministic
// guest's snapshot repeat byte for byte.
void canonical_xstate_bv(std::vector<uint8_t>& xsave, const std::vector<uint8_t>& xcrs) {
    if (xsave.size() < kXstateBvOffset + 8 || xcrs.size() != sizeof(kvm_xcrs))
        return;
    auto x = load<kvm_xcrs>(xcrs);
    for (uint32_t i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++) {
        if (x.xcrs[i].xcr != 0)
            continue;
        uint64_t bv;
        std::memcpy(&bv, xsave.data() + kXstateBvOffset, 8);
        bv |= x.xcrs[i].value & kXsaveAreaComponents;
        std::memcpy(xsave.data() + kXstateBvOffset, &bv, 8);
    }
}

const std::vector<uint32_t>& saved_msrs() {
    static const std::vector<uint32_t> msrs = {0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,
                                               kMsrKernelGsBase};
    return msrs;
}

Result<snapshot::VcpuState> save_vcpu(const Vcpu& vc) {
    auto regs = vc.regs();
    auto sregs = vc.sregs();
    auto xsave = vc.xsave();
    auto xcrs = vc.xcrs();
    auto msrs = vc.msrs(saved_msrs());
    if (!regs || !sregs || !xsave || !xcrs || !msrs)
        return std::unexpected(!regs    ? regs.error()
                               : !sregs ? sregs.error()
                               : !xsave ? xsave.error()
                               : !xcrs  ? xcrs.error()
                                        : msrs.error());
    auto bytes_of = [](const auto& v) {
        auto* p = reinterpret_cast<const uint8_t*>(&v);
        return std::vector<uint8_t>(p, p + sizeof v);
    };
    canonical_xstate_bv(*xsave, *xcrs);
    snapshot::VcpuState st;
    st.regs = bytes_of(*regs);
    st.sregs = bytes_of(*sregs);
    st.xsave = std::move(*xsave);
    st.xcrs = std::move(*xcrs);
    for (size_t i = 0; i < saved_msrs().size(); i++)
        st.msrs.push_back({saved_msrs()[i], (*msrs)[i]});
    return st;
}

Status validate_vcpu_state(const snapshot::VcpuState& st, const VcpuExpectations& ex) {
    if (st.regs.size() != sizeof(kvm_regs) || st.sregs.size() != sizeof(kvm_sregs))
        return make_error(Errc::kFormat,
                          "saved registers have {} and {} bytes (expected {} and {})",
                          st.regs.size(), st.sregs.size(), sizeof(kvm_regs), sizeof(kvm_sregs));
    auto regs = load<kvm_regs>(st.regs);
    auto sregs = load<kvm_sregs>(st.sregs);
    if ((regs.rflags & ~kRflagsAllowed) || !(regs.rflags & 0x2))
        return make_error(Errc::kFormat,
                          "saved RFLAGS 0x{:x} sets bits presnap never runs with (IF, IOPL, VM "
                          "or reserved)",
                          regs.rflags);

    // System registers: exactly what long_mode_sregs() sets for this layout.
    // The wait point is inside the guest kernel, which runs at CPL3 on PVM
    // and at CPL0 on VMX/SVM, so CS/SS may be either pair.
    kvm_sregs want = long_mode_sregs(sregs, ex.layout);
    bool kernel_mode = (sregs.cs.selector & 3) == 0;
    kvm_segment want_cs = want.cs, want_ss = want.ss;
    if (kernel_mode) {
        want_cs.selector = PSN_SEL_KCODE;
        want_cs.dpl = 0;
        want_ss.selector = PSN_SEL_KDATA;
        want_ss.dpl = 0;
        want_ss.l = 0;
    }
    if (auto s = check_segment("CS", sregs.cs, want_cs); !s)
        return s;
    if (sregs.ss.dpl != want_ss.dpl)
        return make_error(Errc::kFormat, "saved SS DPL {} with CS DPL {}", unsigned(sregs.ss.dpl),
                          unsigned(sregs.cs.dpl));
    struct Field {
        const char* name;
        uint64_t got, want;
    };
    const Field fields[] = {
        {"CR0", sregs.cr0, want.cr0},
        {"CR3", sregs.cr3, want.cr3},
        {"CR4", sregs.cr4, want.cr4},
        {"EFER", sregs.efer, want.efer},
        {"GDT base", sregs.gdt.base, want.gdt.base},
        {"GDT limit", sregs.gdt.limit, want.gdt.limit},
        {"IDT base", sregs.idt.base, want.idt.base},
        {"IDT limit", sregs.idt.limit, want.idt.limit},
        {"TR base", sregs.tr.base, want.tr.base},
        {"TR selector", sregs.tr.selector, want.tr.selector},
        {"TR limit", sregs.tr.limit, want.tr.limit},
    };
    for (const auto& f : fields)
        if (f.got != f.want)
            return make_error(Errc::kFormat, "saved {} is 0x{:x} (presnap sets 0x{:x})", f.name,
                              f.got, f.want);

    // MSRs: only those presnap saves, with the values presnap sets (the
    // program cannot write MSRs), except KERNEL_GS_BASE, which swapgs moves.
    auto want_msrs = syscall_msrs(ex.syscall_entry);
    for (const auto& m : st.msrs) {
        auto& list = saved_msrs();
        if (std::find(list.begin(), list.end(), m.index) == list.end())
            return make_error(Errc::kFormat, "snapshot sets MSR 0x{:x}, which presnap never saves",
                              m.index);
        if (m.index == kMsrKernelGsBase)
            continue;
        for (const auto& [index, value] : want_msrs)
            if (index == m.index && value != m.value)
                return make_error(Errc::kFormat, "saved MSR 0x{:x} is 0x{:x} (presnap sets 0x{:x})",
                                  m.index, m.value, value);
    }

    // Extended state: XCR0 within what this host gives the guest; MXCSR with
    // no reserved bits; XSTATE_BV within XCR0.
    uint64_t xcr0 = ex.xcr0;
    if (!st.xcrs.empty()) {
        if (st.xcrs.size() != sizeof(kvm_xcrs))
            return make_error(Errc::kFormat, "xcrs state has {} bytes (expected {})",
                              st.xcrs.size(), sizeof(kvm_xcrs));
        auto x = load<kvm_xcrs>(st.xcrs);
        if (x.nr_xcrs > KVM_MAX_XCRS)
            return make_error(Errc::kFormat, "xcrs state lists {} registers (at most {})",
                              x.nr_xcrs, KVM_MAX_XCRS);
        for (uint32_t i = 0; i < x.nr_xcrs; i++) {
            if (x.xcrs[i].xcr != 0)
                return make_error(Errc::kFormat, "saved XCR{} (presnap saves only XCR0)",
                                  x.xcrs[i].xcr);
            if ((x.xcrs[i].value & ~ex.xcr0) || !(x.xcrs[i].value & 1))
                return make_error(Errc::kFormat,
                                  "saved XCR0 0x{:x} is not within what this host gives the "
                                  "guest (0x{:x})",
                                  x.xcrs[i].value, ex.xcr0);
            xcr0 = x.xcrs[i].value;
        }
    }
    if (!st.xsave.empty()) {
        if (st.xsave.size() < kXstateBvOffset + 8)
            return make_error(Errc::kFormat, "xsave state has {} bytes", st.xsave.size());
        uint32_t mxcsr;
        std::memcpy(&mxcsr, st.xsave.data() + kMxcsrOffset, 4);
        if (mxcsr & 0xffff0000u)
            return make_error(Errc::kFormat, "saved MXCSR 0x{:x} sets reserved bits", mxcsr);
        uint64_t xstate_bv;
        std::memcpy(&xstate_bv, st.xsave.data() + kXstateBvOffset, 8);
        if (xstate_bv & ~xcr0)
            return make_error(Errc::kFormat, "saved XSTATE_BV 0x{:x} is not within XCR0 0x{:x}",
                              xstate_bv, xcr0);
    }
    return {};
}

Status restore_vcpu(Vcpu& vc, const snapshot::VcpuState& st, const VcpuExpectations& ex,
                    const GuestCpu* cpu) {
    if (auto s = validate_vcpu_state(st, ex); !s)
        return s;
    std::vector<std::pair<uint32_t, uint64_t>> msrs;
    for (const auto& m : st.msrs)
        msrs.emplace_back(m.index, m.value);
    Status s = cpu ? vc.set_cpuid(cpu->cpuid) : Status{};
    if (s)
        s = vc.set_sregs(load<kvm_sregs>(st.sregs));
    if (s && !st.xcrs.empty())
        s = vc.set_xcrs(st.xcrs);
    if (s && !st.xsave.empty())
        s = vc.set_xsave(st.xsave);
    if (s)
        s = vc.set_msrs(msrs);
    if (s)
        s = vc.set_regs(load<kvm_regs>(st.regs));
    return s;
}

} // namespace presnap::vmm
