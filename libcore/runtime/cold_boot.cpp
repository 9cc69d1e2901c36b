// Booting a program cold: the host writes the guest kernel, page tables and
// system tables, the ELF image, the initial stack and the boot information
// page; the vCPU starts at the program's entry point at CPL3.
#include "internal.h"

#include "presnap/guest_abi.h"
#include "presnap/vmm/boot_stack.h"
#include "presnap/vmm/elf_loader.h"
#include "presnap/vmm/rootfs.h"

#include <cerrno>
#include <cstring>
#include <elf.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <x86intrin.h>

extern "C" const uint8_t presnap_guest_image[];
extern "C" const uint8_t presnap_guest_image_end[];

namespace presnap::runtime {
namespace {

constexpr uint64_t kMaxProgramBytes = 1ull << 30;

// Programs may read the restore generation at this address (presnap-guest(7)).
static_assert(offsetof(psn_boot_info, restore_generation) == 0x70,
              "this changes the guest ABI: bump PSN_ABI_VERSION and presnap-guest(7)");

Result<std::vector<uint8_t>> read_program(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return make_errno_error(Errc::kIo, errno, "cannot open");
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return make_error(Errc::kInvalidArgument, "not a regular file");
    }
    if (uint64_t(st.st_size) > kMaxProgramBytes) {
        ::close(fd);
        return make_error(Errc::kInvalidArgument, "file is larger than {} MiB",
                          kMaxProgramBytes >> 20);
    }
    std::vector<uint8_t> buf(size_t(st.st_size));
    size_t got = 0;
    while (got < buf.size()) {
        ssize_t r = ::read(fd, buf.data() + got, buf.size() - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int err = r < 0 ? errno : EIO;
            ::close(fd);
            return make_errno_error(Errc::kIo, err, "cannot read");
        }
        got += size_t(r);
    }
    ::close(fd);
    return buf;
}

// splitmix64: expands the --seed of a deterministic run into seed bytes.
void seed_bytes(uint64_t seed, uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        std::memcpy(out + i, &z, std::min<size_t>(8, n - i));
    }
}

// On PVM the guest's `cpuid` is not intercepted and reports the APIC ID of
// the host core it happens to run on, which glibc keeps in memory: a
// deterministic run keeps its thread on one core so that its snapshots
// repeat. (sched_setaffinity(0, ...) applies to the calling thread only.)
Status pin_to_one_cpu() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return make_errno_error(Errc::kIo, errno, "sched_getaffinity");
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) {
            CPU_ZERO(&set);
            CPU_SET(c, &set);
            if (sched_setaffinity(0, sizeof set, &set) != 0)
                return make_errno_error(Errc::kIo, errno, "sched_setaffinity");
            return {};
        }
    return {};
}

} // namespace

Status reseed_boot_info(vmm::GuestMemory& mem, bool deterministic, uint64_t seed,
                        uint64_t generation) {
    auto bi = mem.read_obj<psn_boot_info>(PSN_BOOT_INFO_ADDR);
    if (!bi)
        return std::unexpected(bi.error());
    if (bi->magic != PSN_BOOT_MAGIC || bi->abi_version != PSN_ABI_VERSION)
        return make_error(Errc::kUnsupported, "made for guest ABI version {} (this presnap has {})",
                          bi->abi_version, PSN_ABI_VERSION);
    bi->restore_generation = generation;
    if (deterministic) // clones repeat only when asked to
        seed_bytes(seed ^ (generation * 0x9e3779b97f4a7c15ull), bi->random_seed,
                   sizeof bi->random_seed);
    else if (getrandom(bi->random_seed, sizeof bi->random_seed, 0) !=
             ssize_t(sizeof bi->random_seed))
        return make_errno_error(Errc::kIo, errno, "getrandom");
    return mem.write_obj(PSN_BOOT_INFO_ADDR, *bi);
}

Result<std::unique_ptr<Session>> Session::boot(const ProgramSpec& spec,
                                               const SessionOptions& options) {
    if (spec.deterministic)
        if (auto s = pin_to_one_cpu(); !s)
            return std::unexpected(s.error());
    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    uint64_t tsc0 = __rdtsc();
    int64_t raw0 = clock_ns(CLOCK_MONOTONIC_RAW);

    auto file = read_program(spec.program);
    if (!file)
        return std::unexpected(file.error().with_context(spec.program));
    auto elf = vmm::parse_elf(*file, PSN_PIE_BASE);
    if (!elf)
        return std::unexpected(elf.error().with_context(spec.program));
    if (elf->low < PSN_USER_BASE)
        return make_error(Errc::kUnsupported,
                          "{}: program is linked at 0x{:x}, below the lowest user address 0x{:x}",
                          spec.program, elf->low, PSN_USER_BASE);
    std::vector<uint8_t> rootfs;
    if (spec.rootfs) {
        auto r = vmm::build_rootfs_image(*spec.rootfs);
        if (!r)
            return std::unexpected(r.error().with_context(*spec.rootfs));
        rootfs = std::move(*r);
    }
    auto layout = vmm::compute_layout(spec.mem_size, rootfs.size(), elf->high);
    if (!layout)
        return std::unexpected(layout.error().with_context(spec.program));

    auto vm = vmm::Vm::create();
    if (!vm)
        return std::unexpected(vm.error());
    auto impl = std::make_unique<Impl>(options, std::move(*vm));
    Impl& m = *impl;
    m.start_ns = t0;
    m.tsc0 = tsc0;
    m.raw0 = raw0;
    if (auto s = m.map_memory(layout->mem_size); !s)
        return std::unexpected(s.error());
    m.layout = *layout;
    m.deterministic = spec.deterministic;
    if (auto s = m.vm.set_memory(m.mem_host, layout->mem_size, options.track_dirty); !s)
        return std::unexpected(s.error());
    m.slot_registered = true;
    vmm::GuestMemory& mem = m.mem;

    // Guest kernel image.
    std::span<const uint8_t> kimg(presnap_guest_image,
                                  size_t(presnap_guest_image_end - presnap_guest_image));
    psn_kernel_header kh{};
    if (kimg.size() < sizeof kh)
        return make_error(Errc::kInternal, "embedded guest kernel is truncated");
    std::memcpy(&kh, kimg.data(), sizeof kh);
    if (kh.magic != PSN_KERNEL_MAGIC || kh.abi_version != PSN_ABI_VERSION ||
        kh.image_end > PSN_KERNEL_LIMIT)
        return make_error(Errc::kInternal, "embedded guest kernel has a bad header (ABI {})",
                          kh.abi_version);
    m.out_len_addr = kh.out_len_addr;
    if (auto s = mem.write(PSN_KERNEL_BASE, kimg); !s)
        return std::unexpected(s.error());
    if (auto s = vmm::write_system_tables(mem, *layout, kh.exc_table); !s)
        return std::unexpected(s.error());
    if (auto s = vmm::load_elf(*elf, *file, mem); !s)
        return std::unexpected(s.error().with_context(spec.program));
    if (!rootfs.empty())
        if (auto s = mem.write(layout->rootfs, rootfs); !s)
            return std::unexpected(s.error());

    auto cpu = vmm::guest_cpu(m.vm);
    if (!cpu)
        return std::unexpected(cpu.error());

    // Random bytes: from the host, or from --seed when deterministic.
    uint8_t seeds[48];
    if (spec.deterministic)
        seed_bytes(spec.seed, seeds, sizeof seeds);
    else if (getrandom(seeds, sizeof seeds, 0) != ssize_t(sizeof seeds))
        return make_errno_error(Errc::kIo, errno, "getrandom");

    vmm::StackSpec ss;
    ss.top = layout->stack_top;
    ss.argv.push_back(spec.program);
    ss.argv.insert(ss.argv.end(), spec.args.begin(), spec.args.end());
    ss.envp = spec.env;
    ss.execfn = spec.program;
    std::memcpy(ss.at_random.data(), seeds + 32, 16);
    ss.auxv = {{AT_PHDR, elf->phdr},   {AT_PHENT, elf->phentsize},
               {AT_PHNUM, elf->phnum}, {AT_PAGESZ, vmm::kPageSize},
               {AT_BASE, 0},           {AT_FLAGS, 0},
               {AT_ENTRY, elf->entry}, {AT_UID, 1000},
               {AT_EUID, 1000},        {AT_GID, 1000},
               {AT_EGID, 1000},        {AT_SECURE, 0},
               {AT_HWCAP, cpu->hwcap}, {AT_HWCAP2, 2 /* FSGSBASE */},
               {AT_CLKTCK, 100}};
    auto stack = vmm::build_stack(ss);
    if (!stack)
        return std::unexpected(stack.error());
    if (auto s = mem.write(stack->rsp, stack->bytes); !s)
        return std::unexpected(s.error());

    psn_boot_info bi{};
    bi.magic = PSN_BOOT_MAGIC;
    bi.abi_version = PSN_ABI_VERSION;
    bi.flags = spec.deterministic ? PSN_BOOT_DETERMINISTIC : 0;
    bi.mem_size = layout->mem_size;
    bi.brk_start = layout->brk_start;
    bi.mmap_top = layout->mmap_top;
    bi.stack_low = layout->stack_low;
    bi.stack_top = layout->stack_top;
    bi.in_buf = layout->in_buf;
    bi.out_buf = layout->out_buf;
    bi.rootfs_addr = layout->rootfs;
    bi.rootfs_size = layout->rootfs_size;
    std::memcpy(bi.random_seed, seeds, 32);
    bi.exe_path = stack->execfn_addr;

    if (auto s = m.create_vcpu(); !s)
        return std::unexpected(s.error());
    vmm::Vcpu& vc = *m.vcpu;
    if (auto s = vc.set_cpuid(cpu->cpuid); !s)
        return std::unexpected(s.error());
    m.cpuid_set = true;
    auto sregs = vc.sregs();
    if (!sregs)
        return std::unexpected(sregs.error());
    if (auto s = vc.set_sregs(vmm::long_mode_sregs(*sregs, *layout)); !s)
        return std::unexpected(s.error());
    if (auto s = vc.set_msrs(vmm::syscall_msrs(kh.syscall_entry)); !s)
        return std::unexpected(s.error());
    if (auto s = vc.set_xcr0(cpu->xcr0); !s)
        return std::unexpected(s.error());
    kvm_regs regs{};
    regs.rip = elf->entry;
    regs.rsp = stack->rsp;
    regs.rflags = 0x2; // IOPL 0: only the TSS I/O bitmap's hypercall ports are open; no interrupts
    if (auto s = vc.set_regs(regs); !s)
        return std::unexpected(s.error());

    // The clock: calibrate the TSC over at least 300 µs of set-up.
    while (clock_ns(CLOCK_MONOTONIC_RAW) - raw0 < 300000)
        ;
    if (!spec.deterministic) {
        bi.tsc_hz = m.tsc_hz();
        bi.realtime_ns = clock_ns(CLOCK_REALTIME);
        bi.monotonic_ns = clock_ns(CLOCK_MONOTONIC);
    }
    if (auto s = mem.write_obj(PSN_BOOT_INFO_ADDR, bi); !s)
        return std::unexpected(s.error());
    return std::unique_ptr<Session>(new Session(std::move(impl)));
}

} // namespace presnap::runtime
