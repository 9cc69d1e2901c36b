// x86-64 guest setup: the memory layout, identity-mapped 4 KiB page tables,
// GDT/TSS/IDT, and the special registers and MSRs that put the vCPU straight
// into 64-bit long mode at CPL3 (no BIOS, no real mode, no guest boot code).
#pragma once

#include "presnap/error.h"
#include "presnap/vmm/guest_memory.h"
#include "presnap/vmm/kvm.h"

#include <cstdint>

namespace presnap::vmm {

// Where everything lives in guest memory (guest physical == guest virtual).
// From the top: page tables, rootfs image, output buffer, input buffer, a
// gap page, the stack, a guard page, then the mmap area growing down towards
// the brk heap that grows up from the program image.
struct GuestLayout {
    uint64_t mem_size = 0;
    uint64_t page_tables = 0; // first page-table page (PML4)
    uint64_t page_table_pages = 0;
    uint64_t rootfs = 0;
    uint64_t rootfs_size = 0;
    uint64_t out_buf = 0;
    uint64_t in_buf = 0;
    uint64_t stack_top = 0;
    uint64_t stack_low = 0;
    uint64_t mmap_top = 0;
    uint64_t brk_start = 0;
};

inline constexpr uint64_t kMinMemory = 16ull << 20;
inline constexpr uint64_t kMaxMemory = 64ull << 30;
inline constexpr uint64_t kMinHeap = 1ull << 20; // brk + mmap space a program at least gets

Result<GuestLayout> compute_layout(uint64_t mem_size, uint64_t rootfs_size, uint64_t image_high);

// Writes page tables, GDT, TSS and IDT (gates from the guest kernel header).
Status write_system_tables(GuestMemory& mem, const GuestLayout& layout, uint64_t exc_table_gpa);

// Guest pages whose accessed bit is set in the leaf page tables (the pages the
// guest touched since the bits were last cleared), sorted. With `clear`, also
// clears the bits: do that only while no vCPU has run since the page tables
// were loaded (its TLB would hide later accesses).
Result<std::vector<uint64_t>> accessed_pages(GuestMemory& mem, const GuestLayout& layout,
                                             bool clear);

// Special registers for long mode at CPL3 with the layout's page tables.
kvm_sregs long_mode_sregs(const kvm_sregs& current, const GuestLayout& layout);

// MSRs for the syscall entry: STAR, LSTAR, SFMASK and friends.
std::vector<std::pair<uint32_t, uint64_t>> syscall_msrs(uint64_t syscall_entry);

// CPUID for the guest from KVM's supported list; also returns the XCR0 to set.
struct GuestCpu {
    std::vector<kvm_cpuid_entry2> cpuid;
    uint64_t xcr0 = 0;
    uint32_t hwcap = 0; // CPUID.1:EDX, for AT_HWCAP
};
Result<GuestCpu> guest_cpu(const Vm& vm);

} // namespace presnap::vmm
