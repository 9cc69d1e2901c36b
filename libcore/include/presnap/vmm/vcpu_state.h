// The vCPU's part of a snapshot: what it saves at a wait point and how it
// restores, with the checks an untrusted snapshot file needs. Every value
// must be one that presnap itself can produce for the guest's layout; a
// refusal names the register and the value.
#pragma once

#include "presnap/error.h"
#include "presnap/snapshot/image.h"
#include "presnap/vmm/kvm.h"
#include "presnap/vmm/x86_64.h"

#include <cstdint>
#include <vector>

namespace presnap::vmm {

// The MSRs a snapshot carries (FS/GS bases and EFER travel in sregs).
const std::vector<uint32_t>& saved_msrs();

// Registers, system registers, XSAVE area (in canonical form, below), XCRs
// and saved_msrs().
Result<snapshot::VcpuState> save_vcpu(const Vcpu& vcpu);

// Sets XSTATE_BV in a KVM_GET_XSAVE area (`xsave`) for every component of the
// XCR0 in `xcrs` (KVM_GET_XCRS) that the area holds, so that the same guest
// state saves the same bytes whatever the CPU's init optimization did.
void canonical_xstate_bv(std::vector<uint8_t>& xsave, const std::vector<uint8_t>& xcrs);

// What a restored vCPU state is checked against.
struct VcpuExpectations {
    GuestLayout layout;
    uint64_t syscall_entry = 0; // the guest kernel's, from the kernel header in guest memory
    uint64_t xcr0 = 0;          // what this host gives the guest
};

// Checks `state` (kvm_regs/kvm_sregs layouts, MSR list and values, XCR0,
// MXCSR) and returns the first problem.
Status validate_vcpu_state(const snapshot::VcpuState& state, const VcpuExpectations& expect);

// validate_vcpu_state, then CPUID (unless `cpu` is null: a vCPU that has
// run keeps the CPUID it was given, and KVM refuses to change it), sregs,
// XCRs, XSAVE, MSRs and regs.
Status restore_vcpu(Vcpu& vcpu, const snapshot::VcpuState& state, const VcpuExpectations& expect,
                    const GuestCpu* cpu);

} // namespace presnap::vmm
