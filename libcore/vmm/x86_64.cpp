#include "presnap/vmm/x86_64.h"

#include "presnap/guest_abi.h"

#include <cpuid.h>
#include <cstring>
#include <mutex>
#include <optional>

namespace presnap::vmm {

Result<GuestCpu> query_guest_cpu(const Vm& vm);

namespace {

constexpr uint64_t kPtePresent = 1, kPteWrite = 2, kPteUser = 4;
constexpr uint64_t kGuardGap = kPageSize;

uint64_t page_up(uint64_t v) {
    return (v + kPageSize - 1) & ~(kPageSize - 1);
}

uint64_t div_up(uint64_t a, uint64_t b) {
    return (a + b - 1) / b;
}

// Permissions of the 4 KiB page at `gpa` in the fixed layout.
uint64_t pte_flags(const GuestLayout& l, uint64_t gpa) {
    if (gpa == 0)
        return 0; // null page
    if (gpa < PSN_BOOT_INFO_ADDR)
        return kPtePresent | kPteWrite; // GDT, TSS, IDT: supervisor only
    if (gpa == PSN_BOOT_INFO_ADDR)
        return kPtePresent | kPteUser; // read by the guest kernel, which may run at CPL3
    if (gpa < PSN_KERNEL_BASE)
        return kPtePresent | kPteWrite; // exception stack
    if (gpa >= l.page_tables)
        return 0; // page tables are not mapped at all
    if (gpa >= l.rootfs && gpa < l.rootfs + page_up(l.rootfs_size))
        return kPtePresent | kPteUser; // read-only file tree
    if (gpa == l.stack_top || gpa == l.stack_low - kGuardGap)
        return 0; // guard pages around the stack
    return kPtePresent | kPteWrite | kPteUser;
}

} // namespace

Result<GuestLayout> compute_layout(uint64_t mem_size, uint64_t rootfs_size, uint64_t image_high) {
    if (mem_size < kMinMemory || mem_size > kMaxMemory || mem_size % (2ull << 20))
        return make_error(Errc::kInvalidArgument,
                          "guest memory size {} MiB is not a multiple of 2 MiB between {} MiB and "
                          "{} GiB",
                          mem_size >> 20, kMinMemory >> 20, kMaxMemory >> 30);
    GuestLayout l;
    l.mem_size = mem_size;
    uint64_t pages = mem_size / kPageSize;
    uint64_t pts = div_up(pages, 512), pds = div_up(pts, 512), pdpts = div_up(pds, 512);
    l.page_table_pages = 1 + pdpts + pds + pts;
    l.page_tables = mem_size - l.page_table_pages * kPageSize;
    l.rootfs_size = rootfs_size;
    uint64_t rootfs_bytes = page_up(rootfs_size);
    uint64_t fixed = l.page_table_pages * kPageSize + rootfs_bytes + 2 * PSN_IO_BUFFER_SIZE +
                     kGuardGap + PSN_STACK_SIZE + kGuardGap;
    l.brk_start = page_up(image_high);
    if (fixed + l.brk_start + kMinHeap > mem_size)
        return make_error(Errc::kInvalidArgument,
                          "guest memory of {} MiB is too small for this program (image ends at "
                          "0x{:x}, file tree {} KiB, stack {} MiB); raise --mem",
                          mem_size >> 20, image_high, rootfs_size >> 10, PSN_STACK_SIZE >> 20);
    l.rootfs = l.page_tables - rootfs_bytes;
    l.out_buf = l.rootfs - PSN_IO_BUFFER_SIZE;
    l.in_buf = l.out_buf - PSN_IO_BUFFER_SIZE;
    l.stack_top = l.in_buf - kGuardGap;
    l.stack_low = l.stack_top - PSN_STACK_SIZE;
    l.mmap_top = l.stack_low - kGuardGap;
    return l;
}

Status write_system_tables(GuestMemory& mem, const GuestLayout& l, uint64_t exc_table_gpa) {
    // Page tables: PML4, PDPTs, PDs, PTs, consecutive from l.page_tables.
    uint64_t pages = l.mem_size / kPageSize;
    uint64_t pts = div_up(pages, 512), pds = div_up(pts, 512), pdpts = div_up(pds, 512);
    uint64_t pml4 = l.page_tables, pdpt0 = pml4 + kPageSize, pd0 = pdpt0 + pdpts * kPageSize,
             pt0 = pd0 + pds * kPageSize;
    auto tables = mem.span_for_write(l.page_tables, l.page_table_pages * kPageSize);
    if (!tables)
        return std::unexpected(tables.error());
    auto* t = reinterpret_cast<uint64_t*>(tables->data());
    auto entry = [&](uint64_t table_gpa, uint64_t idx) -> uint64_t& {
        return t[(table_gpa - l.page_tables) / 8 + idx];
    };
    constexpr uint64_t kDir = kPtePresent | kPteWrite | kPteUser;
    for (uint64_t i = 0; i < pdpts; i++)
        entry(pml4, i) = (pdpt0 + i * kPageSize) | kDir;
    for (uint64_t i = 0; i < pds; i++)
        entry(pdpt0, i) = (pd0 + i * kPageSize) | kDir;
    for (uint64_t i = 0; i < pts; i++)
        entry(pd0, i) = (pt0 + i * kPageSize) | kDir;
    for (uint64_t p = 0; p < pages; p++) {
        uint64_t gpa = p * kPageSize;
        uint64_t f = pte_flags(l, gpa);
        entry(pt0, p) = f ? (gpa | f) : 0;
    }

    // GDT: null, kernel code, kernel data, user data, user code, TSS (16 bytes).
    uint64_t gdt[8] = {0,
                       0x00af9a000000ffffull,
                       0x00cf92000000ffffull,
                       0x00cff2000000ffffull,
                       0x00affa000000ffffull,
                       0,
                       0,
                       0};
    // The TSS carries an I/O permission bitmap that opens only the hypercall
    // ports to CPL3 (ports past the bitmap's end are closed), so the guest
    // kernel can make hypercalls whether it runs at CPL0 or CPL3. A 4-byte
    // `out` to port P checks the bits of P..P+3, hence the 3 extra ports.
    constexpr uint64_t kIomapBase = 0x68;
    constexpr unsigned kOpenPortsEnd = PSN_HC_PORT_BASE + PSN_HC_COUNT + 3;
    constexpr uint64_t kIomapBytes = kOpenPortsEnd / 8 + 1;
    uint64_t tss = PSN_TSS_ADDR, tss_limit = kIomapBase + kIomapBytes; // + terminator byte
    gdt[5] = (tss_limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x89ull << 40) |
             (((tss >> 24) & 0xff) << 56);
    gdt[6] = tss >> 32;
    if (auto s = mem.write(PSN_GDT_ADDR, {reinterpret_cast<uint8_t*>(gdt), sizeof gdt}); !s)
        return s;
    uint8_t tss_bytes[kIomapBase + kIomapBytes + 1] = {};
    uint64_t rsp0 = PSN_EXC_STACK_TOP;
    std::memcpy(tss_bytes + 4, &rsp0, 8);
    uint16_t iomap = kIomapBase;
    std::memcpy(tss_bytes + 0x66, &iomap, 2);
    std::memset(tss_bytes + kIomapBase, 0xff, kIomapBytes + 1);
    for (unsigned port = PSN_HC_PORT_BASE; port < kOpenPortsEnd; port++)
        tss_bytes[kIomapBase + port / 8] &= uint8_t(~(1u << (port % 8)));
    if (auto s = mem.write(PSN_TSS_ADDR, tss_bytes); !s)
        return s;

    // IDT: interrupt gates to the guest kernel's 32 exception stubs.
    auto handlers = mem.read_obj<std::array<uint64_t, 32>>(exc_table_gpa);
    if (!handlers)
        return std::unexpected(handlers.error());
    uint64_t idt[64] = {};
    for (int v = 0; v < 32; v++) {
        uint64_t h = (*handlers)[size_t(v)];
        uint64_t dpl = (v == 3 || v == 4) ? 3 : 0; // int3 and into are allowed from user code
        idt[2 * v] = (h & 0xffff) | (uint64_t(PSN_SEL_KCODE) << 16) | ((0x8eull | dpl << 5) << 40) |
                     (((h >> 16) & 0xffff) << 48);
        idt[2 * v + 1] = h >> 32;
    }
    return mem.write(PSN_IDT_ADDR, {reinterpret_cast<uint8_t*>(idt), sizeof idt});
}

Result<std::vector<uint64_t>> accessed_pages(GuestMemory& mem, const GuestLayout& l, bool clear) {
    constexpr uint64_t kAccessed = 1u << 5;
    uint64_t pages = l.mem_size / kPageSize;
    uint64_t pts = div_up(pages, 512), pds = div_up(pts, 512), pdpts = div_up(pds, 512);
    uint64_t pt0 = l.page_tables + (1 + pdpts + pds) * kPageSize;
    // Only the page-table pages whose bits change count as written by the host:
    // marking them all would put every page table into every diff.
    auto span = mem.span(pt0, pages * 8);
    if (!span)
        return std::unexpected(span.error());
    auto* pte = reinterpret_cast<uint64_t*>(span->data());
    std::vector<uint64_t> out;
    for (uint64_t p = 0; p < pages; p++) {
        if (pte[p] & kAccessed) {
            out.push_back(p);
            if (clear) {
                pte[p] &= ~kAccessed;
                mem.note_host_write(pt0 + p * 8, 8);
            }
        }
    }
    return out;
}

kvm_sregs long_mode_sregs(const kvm_sregs& current, const GuestLayout& l) {
    kvm_sregs s = current;
    kvm_segment code{};
    code.base = 0;
    code.limit = 0xffffffff;
    code.selector = PSN_SEL_UCODE;
    code.type = 11; // execute/read, accessed
    code.present = 1;
    code.dpl = 3;
    code.s = 1;
    code.l = 1;
    code.g = 1;
    kvm_segment data = code;
    data.selector = PSN_SEL_UDATA;
    data.type = 3; // read/write, accessed
    data.l = 0;
    data.db = 1;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    kvm_segment tr{};
    tr.base = PSN_TSS_ADDR;
    tr.limit = 0x68 + (PSN_HC_PORT_BASE + PSN_HC_COUNT + 3) / 8 + 1;
    tr.selector = PSN_SEL_TSS;
    tr.type = 11; // 64-bit busy TSS
    tr.present = 1;
    s.tr = tr;
    s.ldt = {};
    s.ldt.unusable = 1;
    s.gdt.base = PSN_GDT_ADDR;
    s.gdt.limit = 8 * 8 - 1;
    s.idt.base = PSN_IDT_ADDR;
    s.idt.limit = 256 * 16 - 1;
    s.cr0 = 0x80050033; // PG WP NE ET MP PE
    s.cr3 = l.page_tables;
    s.cr4 = (1u << 5) | (1u << 9) | (1u << 10) | (1u << 16) |
            (1u << 18); // PAE OSFXSR OSXMMEXCPT FSGSBASE OSXSAVE
    s.efer = (1u << 0) | (1u << 8) | (1u << 10) | (1u << 11); // SCE LME LMA NXE
    std::memset(s.interrupt_bitmap, 0, sizeof s.interrupt_bitmap);
    return s;
}

std::vector<std::pair<uint32_t, uint64_t>> syscall_msrs(uint64_t syscall_entry) {
    constexpr uint32_t kStar = 0xc0000081, kLstar = 0xc0000082, kCstar = 0xc0000083,
                       kSfmask = 0xc0000084, kKernelGsBase = 0xc0000102, kFsBase = 0xc0000100,
                       kGsBase = 0xc0000101;
    // SYSRET loads CS = base + 16 and SS = base + 8 (both | 3): base 0x10 gives 0x23 / 0x1b.
    uint64_t star = (uint64_t(PSN_SEL_KDATA) << 48) | (uint64_t(PSN_SEL_KCODE) << 32);
    // Mask TF, IF, DF, NT, AC on entry; IOPL stays so the kernel may `out` at CPL3.
    uint64_t sfmask = 0x100 | 0x200 | 0x400 | 0x4000 | 0x40000;
    return {{kStar, star},     {kLstar, syscall_entry}, {kCstar, 0},
            {kSfmask, sfmask}, {kKernelGsBase, 0},      {kFsBase, 0},
            {kGsBase, 0}};
}

Result<GuestCpu> guest_cpu(const Vm& vm) {
    // KVM_GET_SUPPORTED_CPUID costs about 0.4 ms here and its answer is a
    // property of the host kernel: ask once per process.
    static std::mutex mu;
    static std::optional<GuestCpu> cached;
    std::lock_guard lock(mu);
    if (cached)
        return *cached;
    auto cpu = query_guest_cpu(vm);
    if (cpu)
        cached = *cpu;
    return cpu;
}

Result<GuestCpu> query_guest_cpu(const Vm& vm) {
    auto cpuid = vm.supported_cpuid();
    if (!cpuid)
        return std::unexpected(cpuid.error());
    GuestCpu g;
    g.cpuid = std::move(*cpuid);
    uint64_t supported_xcr0 = 0x3;
    for (const auto& e : g.cpuid) {
        if (e.function == 0xd && e.index == 0)
            supported_xcr0 = (uint64_t(e.edx) << 32) | e.eax;
        if (e.function == 1)
            g.hwcap = e.edx;
    }
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & 1))
        return make_error(Errc::kUnsupported,
                          "this CPU lacks FSGSBASE, which the guest kernel needs");
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    uint64_t host_xcr0 = (uint64_t(hi) << 32) | lo;
    // x87, SSE, AVX, and AVX-512 state when both KVM and the host use them.
    g.xcr0 = supported_xcr0 & host_xcr0 & 0xe7;
    return g;
}

} // namespace presnap::vmm
