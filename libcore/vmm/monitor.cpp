#include "presnap/vmm/monitor.h"

#include "presnap/guest_abi.h"
#include "presnap/snapshot/cpu_features.h"
#include "presnap/snapshot/image.h"
#include "presnap/snapshot/reader.h"
#include "presnap/vmm/boot_stack.h"
#include "presnap/vmm/elf_loader.h"
#include "presnap/vmm/guest_memory.h"
#include "presnap/vmm/kvm.h"
#include "presnap/vmm/rootfs.h"
#include "presnap/vmm/x86_64.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <elf.h>
#include <fcntl.h>
#include <sched.h>
#include <set>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <utility>
#include <x86intrin.h>

extern "C" const uint8_t presnap_guest_image[];
extern "C" const uint8_t presnap_guest_image_end[];

namespace presnap::vmm {
namespace {

constexpr uint64_t kMaxProgramBytes = 1ull << 30;

int64_t clock_ns(clockid_t c) {
    timespec ts;
    clock_gettime(c, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The one timer of the process: SIGALRM stops KVM_RUN via immediate_exit.
std::atomic<kvm_run*> g_active_run{nullptr};
volatile sig_atomic_t g_alarm = 0;

void on_alarm(int) {
    g_alarm = 1;
    if (kvm_run* r = g_active_run.load())
        r->immediate_exit = 1;
}

void install_alarm_handler() {
    static bool done = false;
    if (done)
        return;
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, nullptr); // no SA_RESTART: KVM_RUN must return EINTR
    signal(SIGPIPE, SIG_IGN);
    done = true;
}

void arm_timer(double seconds) {
    g_alarm = 0;
    itimerval it{};
    it.it_value.tv_sec = time_t(seconds);
    it.it_value.tv_usec = suseconds_t((seconds - double(it.it_value.tv_sec)) * 1e6);
    if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0)
        it.it_value.tv_usec = 1;
    setitimer(ITIMER_REAL, &it, nullptr);
}

void disarm_timer() {
    itimerval it{};
    setitimer(ITIMER_REAL, &it, nullptr);
    g_alarm = 0;
}

Result<std::vector<uint8_t>> read_file(const std::string& path) {
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

Status write_all(int fd, const uint8_t* p, size_t n) {
    while (n) {
        ssize_t r = ::write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return make_errno_error(Errc::kIo, errno, "cannot write output");
        p += r;
        n -= size_t(r);
    }
    return {};
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

// Reads request lines from a descriptor in chunks of at most the guest's
// input buffer, so a long line never has to fit in host memory at once.
class LineReader {
  public:
    explicit LineReader(int fd) : fd_(fd) {}
    struct Chunk {
        uint64_t len = 0;
        bool ends_request = false; // a newline (or EOF) ended the request
        bool eof = false;          // nothing more will come
    };
    Result<Chunk> next(uint8_t* dst, uint64_t cap) {
        Chunk c;
        while (c.len < cap) {
            if (pos_ == len_) {
                if (eof_)
                    break;
                ssize_t r = ::read(fd_, buf_, sizeof buf_);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r < 0)
                    return make_errno_error(Errc::kIo, errno, "cannot read requests");
                if (r == 0) {
                    eof_ = true;
                    break;
                }
                pos_ = 0;
                len_ = size_t(r);
            }
            size_t avail = std::min<size_t>(len_ - pos_, cap - c.len);
            auto* nl = static_cast<uint8_t*>(std::memchr(buf_ + pos_, '\n', avail));
            size_t take = nl ? size_t(nl - (buf_ + pos_)) + 1 : avail;
            std::memcpy(dst + c.len, buf_ + pos_, take);
            c.len += take;
            pos_ += take;
            if (nl) {
                c.ends_request = true;
                break;
            }
        }
        if (eof_ && pos_ == len_) {
            if (c.len > 0)
                c.ends_request = true; // a last line without a newline
            else
                c.eof = true;
        }
        return c;
    }

  private:
    int fd_;
    uint8_t buf_[64 * 1024];
    size_t pos_ = 0, len_ = 0;
    bool eof_ = false;
};

const char* exception_name(uint64_t v) {
    static const char* names[] = {"divide error",
                                  "debug exception",
                                  "non-maskable interrupt",
                                  "breakpoint",
                                  "overflow",
                                  "bound range exceeded",
                                  "invalid opcode",
                                  "device not available",
                                  "double fault",
                                  "coprocessor segment overrun",
                                  "invalid TSS",
                                  "segment not present",
                                  "stack-segment fault",
                                  "general protection fault",
                                  "page fault",
                                  "reserved exception 15",
                                  "x87 floating-point exception",
                                  "alignment check",
                                  "machine check",
                                  "SIMD floating-point exception"};
    return v < std::size(names) ? names[v] : "exception";
}

int exception_signal(uint64_t v) {
    switch (v) {
    case 0:
    case 7:
    case 16:
    case 19:
        return SIGFPE;
    case 1:
    case 3:
        return SIGTRAP;
    case 6:
        return SIGILL;
    case 17:
        return SIGBUS;
    default:
        return SIGSEGV;
    }
}

// The monitor's own state, saved in a snapshot's MONITOR_STATE section.
// Fixed layout, little-endian (the host is x86-64). Changing it changes the
// snapshot format: bump kMonitorStateVersion.
struct MonitorState {
    uint32_t version;
    uint32_t flags; // kMonitorDeterministic
    uint64_t mem_size, page_tables, page_table_pages, rootfs, rootfs_size, out_buf, in_buf,
        stack_top, stack_low, mmap_top, brk_start;
    uint64_t out_len_addr;      // the guest kernel's buffered-stdout counter
    uint64_t pending_input_gpa; // the PSN_HC_INPUT struct the vCPU waits on
    uint64_t requests_served;   // requests delivered before the snapshot
    uint64_t restore_generation;
    uint64_t tsc_hz;
};
constexpr uint32_t kMonitorStateVersion = 1;
constexpr uint32_t kMonitorDeterministic = 1;
static_assert(sizeof(MonitorState) == 8 + 16 * 8, "this changes the snapshot file format");

// Programs may read the restore generation at this address (presnap-guest(7)).
static_assert(offsetof(psn_boot_info, restore_generation) == 0x70,
              "this changes the guest ABI: bump PSN_ABI_VERSION and presnap-guest(7)");

// The MSRs a snapshot carries (FS/GS bases and EFER travel in sregs).
const std::vector<uint32_t> kSavedMsrs = {0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,
                                          0xc0000102};

std::vector<uint64_t> bitmap_pages(const std::vector<uint64_t>& bits, uint64_t pages) {
    std::vector<uint64_t> out;
    for (uint64_t w = 0; w < bits.size(); w++)
        for (uint64_t b = bits[w]; b; b &= b - 1) {
            uint64_t p = w * 64 + uint64_t(__builtin_ctzll(b));
            if (p < pages)
                out.push_back(p);
        }
    return out;
}

std::vector<snapshot::PageRange> to_ranges(const std::vector<uint64_t>& pages) {
    std::vector<snapshot::PageRange> out;
    for (uint64_t p : pages) {
        if (!out.empty() && out.back().first_page + out.back().page_count == p)
            out.back().page_count++;
        else
            out.push_back({p, 1});
    }
    return out;
}

} // namespace

struct Monitor::Impl {
    MonitorConfig cfg;
    Vm vm;
    std::optional<Vcpu> vcpu;
    uint8_t* mem_host = nullptr;
    GuestMemory mem;
    GuestLayout layout;
    LineReader reader;
    int64_t start_ns = 0;
    // TSC calibration against CLOCK_MONOTONIC_RAW.
    uint64_t tsc0 = 0;
    int64_t raw0 = 0;
    uint64_t saved_tsc_hz = 0; // from the snapshot, until calibration has a long baseline
    // Request protocol.
    bool started = false;    // the first wait point was reached
    bool in_request = false; // the last chunk delivered did not end its request
    uint64_t request_no = 0;
    uint64_t requests_base = 0; // requests a restored snapshot had already served
    uint64_t request_bytes = 0, response_bytes = 0;
    int64_t request_start_ns = 0;
    uint64_t exits_at_request_start = 0;
    long minflt_at_request_start = 0;
    std::set<uint64_t> reported; // syscalls already warned about
    bool oom_warned = false;     // the guest kernel says it once; a hostile guest may not
    bool at_eof = false;
    uint64_t out_len_addr = 0; // guest kernel's count of buffered stdout bytes
    // Snapshots.
    bool deterministic = false;
    uint64_t restore_generation = 0;
    uint64_t pending_input_gpa = 0; // restored: the INPUT hypercall to complete first
    std::optional<snapshot::ExecutableInfo> executable;
    std::optional<snapshot::Hash128> parent; // restored: the last file's content hash
    std::vector<uint64_t> ws_pages;          // restored: working set to prefetch

    Impl(const MonitorConfig& c, Vm v) : cfg(c), vm(std::move(v)), reader(c.in_fd) {}
    ~Impl() {
        g_active_run.store(nullptr);
        if (mem_host)
            munmap(mem_host, layout.mem_size);
    }

    std::string where() const {
        if (request_no == 0)
            return "during start-up";
        if (at_eof)
            return "after the end of input";
        return fmt::format("request {}", request_no);
    }
    void warn(const std::string& msg) {
        if (cfg.warn)
            cfg.warn(msg);
    }
    uint64_t tsc_hz() const {
        int64_t dns = clock_ns(CLOCK_MONOTONIC_RAW) - raw0;
        uint64_t dt = __rdtsc() - tsc0;
        if (dns < 200000)
            return saved_tsc_hz;
        return uint64_t((unsigned __int128)dt * 1000000000u / uint64_t(dns));
    }
    // Guest memory: anonymous, zero, reserved lazily.
    Status map_memory(uint64_t size) {
        void* host = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (host == MAP_FAILED)
            return make_errno_error(Errc::kIo, errno, "cannot allocate guest memory");
        mem_host = static_cast<uint8_t*>(host);
        layout.mem_size = size;
        mem = GuestMemory(mem_host, size);
        return {};
    }
    Status capture(uint64_t input_gpa, RunOutcome& out);
};

Monitor::Monitor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Monitor::~Monitor() = default;

// On PVM the guest's `cpuid` is not intercepted and reports the APIC ID of
// the host core it happens to run on, which glibc keeps in memory: a
// deterministic run stays on one core so that its snapshots repeat.
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

Result<std::unique_ptr<Monitor>> Monitor::boot(const MonitorConfig& cfg) {
    if (cfg.deterministic)
        if (auto s = pin_to_one_cpu(); !s)
            return std::unexpected(s.error());
    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    uint64_t tsc0 = __rdtsc();
    int64_t raw0 = clock_ns(CLOCK_MONOTONIC_RAW);
    if (!cfg.restore.empty())
        return restore(cfg, t0, tsc0, raw0);

    auto file = read_file(cfg.program);
    if (!file)
        return std::unexpected(file.error().with_context(cfg.program));
    auto elf = parse_elf(*file, PSN_PIE_BASE);
    if (!elf)
        return std::unexpected(elf.error().with_context(cfg.program));
    if (elf->low < PSN_USER_BASE)
        return make_error(Errc::kUnsupported,
                          "{}: program is linked at 0x{:x}, below the lowest user address 0x{:x}",
                          cfg.program, elf->low, PSN_USER_BASE);
    std::vector<uint8_t> rootfs;
    if (cfg.rootfs) {
        auto r = build_rootfs_image(*cfg.rootfs);
        if (!r)
            return std::unexpected(r.error().with_context(*cfg.rootfs));
        rootfs = std::move(*r);
    }
    auto layout = compute_layout(cfg.mem_size, rootfs.size(), elf->high);
    if (!layout)
        return std::unexpected(layout.error().with_context(cfg.program));

    auto vm = Vm::create();
    if (!vm)
        return std::unexpected(vm.error());
    auto impl = std::make_unique<Impl>(cfg, std::move(*vm));
    impl->start_ns = t0;
    impl->tsc0 = tsc0;
    impl->raw0 = raw0;
    if (auto s = impl->map_memory(layout->mem_size); !s)
        return std::unexpected(s.error());
    impl->layout = *layout;
    impl->deterministic = cfg.deterministic;
    if (cfg.snapshot_at_eof) {
        auto exe = snapshot::hash_executable(cfg.program);
        if (!exe)
            return std::unexpected(exe.error().with_context(cfg.program));
        impl->executable = *exe;
    }
    // Dirty logging only when a snapshot will be taken: it costs a
    // write-protection fault on the first write to every page.
    if (auto s =
            impl->vm.set_memory(impl->mem_host, layout->mem_size, cfg.snapshot_at_eof.has_value());
        !s)
        return std::unexpected(s.error());
    GuestMemory& mem = impl->mem;

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
    impl->out_len_addr = kh.out_len_addr;
    if (auto s = mem.write(PSN_KERNEL_BASE, kimg); !s)
        return std::unexpected(s.error());
    if (auto s = write_system_tables(mem, *layout, kh.exc_table); !s)
        return std::unexpected(s.error());
    if (auto s = load_elf(*elf, *file, mem); !s)
        return std::unexpected(s.error().with_context(cfg.program));
    if (!rootfs.empty())
        if (auto s = mem.write(layout->rootfs, rootfs); !s)
            return std::unexpected(s.error());

    auto cpu = guest_cpu(impl->vm);
    if (!cpu)
        return std::unexpected(cpu.error());

    // Random bytes: from the host, or from --seed when deterministic.
    uint8_t seeds[48];
    if (cfg.deterministic)
        seed_bytes(cfg.seed, seeds, sizeof seeds);
    else if (getrandom(seeds, sizeof seeds, 0) != ssize_t(sizeof seeds))
        return make_errno_error(Errc::kIo, errno, "getrandom");

    StackSpec ss;
    ss.top = layout->stack_top;
    ss.argv.push_back(cfg.program);
    ss.argv.insert(ss.argv.end(), cfg.args.begin(), cfg.args.end());
    ss.envp = cfg.env;
    ss.execfn = cfg.program;
    std::memcpy(ss.at_random.data(), seeds + 32, 16);
    ss.auxv = {{AT_PHDR, elf->phdr},   {AT_PHENT, elf->phentsize},
               {AT_PHNUM, elf->phnum}, {AT_PAGESZ, kPageSize},
               {AT_BASE, 0},           {AT_FLAGS, 0},
               {AT_ENTRY, elf->entry}, {AT_UID, 1000},
               {AT_EUID, 1000},        {AT_GID, 1000},
               {AT_EGID, 1000},        {AT_SECURE, 0},
               {AT_HWCAP, cpu->hwcap}, {AT_HWCAP2, 2 /* FSGSBASE */},
               {AT_CLKTCK, 100}};
    auto stack = build_stack(ss);
    if (!stack)
        return std::unexpected(stack.error());
    if (auto s = mem.write(stack->rsp, stack->bytes); !s)
        return std::unexpected(s.error());

    psn_boot_info bi{};
    bi.magic = PSN_BOOT_MAGIC;
    bi.abi_version = PSN_ABI_VERSION;
    bi.flags = cfg.deterministic ? PSN_BOOT_DETERMINISTIC : 0;
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

    auto vcpu = Vcpu::create(impl->vm);
    if (!vcpu)
        return std::unexpected(vcpu.error());
    impl->vcpu.emplace(std::move(*vcpu));
    Vcpu& vc = *impl->vcpu;
    if (auto s = vc.set_cpuid(cpu->cpuid); !s)
        return std::unexpected(s.error());
    auto sregs = vc.sregs();
    if (!sregs)
        return std::unexpected(sregs.error());
    if (auto s = vc.set_sregs(long_mode_sregs(*sregs, *layout)); !s)
        return std::unexpected(s.error());
    if (auto s = vc.set_msrs(syscall_msrs(kh.syscall_entry)); !s)
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
    if (!cfg.deterministic) {
        bi.tsc_hz = impl->tsc_hz();
        bi.realtime_ns = clock_ns(CLOCK_REALTIME);
        bi.monotonic_ns = clock_ns(CLOCK_MONOTONIC);
    }
    if (auto s = mem.write_obj(PSN_BOOT_INFO_ADDR, bi); !s)
        return std::unexpected(s.error());
    install_alarm_handler();
    return std::unique_ptr<Monitor>(new Monitor(std::move(impl)));
}

// Restores the guest from snapshot files: memory mapped copy-on-write from
// the files (raw runs) or decompressed (zstd runs), vCPU state set, the
// working set prefetched. serve() then completes the INPUT hypercall the
// vCPU was waiting in with the first request.
Result<std::unique_ptr<Monitor>> Monitor::restore(const MonitorConfig& cfg, int64_t t0,
                                                  uint64_t tsc0, int64_t raw0) {
    std::vector<snapshot::SnapshotFile> files;
    for (size_t i = 0; i < cfg.restore.size(); i++) {
        snapshot::OpenOptions oo;
        oo.data_check = cfg.verify_data ? snapshot::DataCheck::kFull : snapshot::DataCheck::kNone;
        auto f = snapshot::SnapshotFile::open(cfg.restore[i], oo);
        if (!f)
            return std::unexpected(f.error());
        bool want_full = i == 0;
        if ((f->kind() == snapshot::SnapshotKind::kFull) != want_full)
            return make_error(Errc::kInvalidArgument, "{}: is a {} snapshot (expected a {} one{})",
                              cfg.restore[i], want_full ? "diff" : "full",
                              want_full ? "full" : "diff",
                              want_full ? " first" : " after the first");
        if (!want_full)
            if (auto s = f->verify_parent(files.back()); !s)
                return std::unexpected(s.error().with_context(cfg.restore[i]));
        if (auto s = f->check_host(snapshot::host_cpu_features()); !s)
            return std::unexpected(s.error().with_context(cfg.restore[i]));
        files.push_back(std::move(*f));
    }
    const snapshot::SnapshotFile& last = files.back();
    auto ms_bytes = last.monitor_state();
    MonitorState st{};
    if (ms_bytes.size() != sizeof st)
        return make_error(Errc::kFormat, "{}: monitor state has {} bytes (expected {})",
                          last.path(), ms_bytes.size(), sizeof st);
    std::memcpy(&st, ms_bytes.data(), sizeof st);
    if (st.version != kMonitorStateVersion)
        return make_error(Errc::kFormat, "{}: monitor state version {} (expected {})", last.path(),
                          st.version, kMonitorStateVersion);
    if (st.mem_size != last.guest_memory_size())
        return make_error(Errc::kFormat, "{}: monitor state says {} bytes of memory, the header {}",
                          last.path(), st.mem_size, last.guest_memory_size());
    // The layout must be the one compute_layout() gives: nothing else is trusted.
    auto layout = compute_layout(st.mem_size, st.rootfs_size, st.brk_start);
    if (!layout || layout->page_tables != st.page_tables || layout->in_buf != st.in_buf ||
        layout->out_buf != st.out_buf || layout->stack_top != st.stack_top ||
        layout->mmap_top != st.mmap_top || layout->rootfs != st.rootfs)
        return make_error(Errc::kFormat, "{}: monitor state has an inconsistent memory layout",
                          last.path());

    int64_t vm_t0 = clock_ns(CLOCK_MONOTONIC);
    auto vm = Vm::create();
    if (!vm)
        return std::unexpected(vm.error());
    int64_t vm_ns = clock_ns(CLOCK_MONOTONIC) - vm_t0;
    auto impl = std::make_unique<Impl>(cfg, std::move(*vm));
    impl->start_ns = t0;
    impl->tsc0 = tsc0;
    impl->raw0 = raw0;
    impl->saved_tsc_hz = st.tsc_hz;
    if (auto s = impl->map_memory(st.mem_size); !s)
        return std::unexpected(s.error());
    impl->layout = *layout;
    impl->out_len_addr = st.out_len_addr;
    impl->pending_input_gpa = st.pending_input_gpa;
    impl->requests_base = st.requests_served;
    impl->deterministic = (st.flags & kMonitorDeterministic) != 0;
    impl->restore_generation = st.restore_generation + 1;
    impl->executable = last.executable();
    impl->parent = last.content_hash();

    // Memory: each file's runs over the previous ones.
    for (const auto& f : files) {
        for (const auto& run : f.page_runs()) {
            uint64_t gpa = run.first_page * kPageSize;
            auto dst = impl->mem.span(gpa, run.bytes());
            if (!dst)
                return std::unexpected(dst.error().with_context(f.path()));
            if (run.encoding == snapshot::PageEncoding::kRaw) {
                void* p = mmap(dst->data(), run.bytes(), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_FIXED, f.fd(), off_t(run.file_offset));
                if (p == MAP_FAILED)
                    return std::unexpected(
                        make_errno_error(Errc::kIo, errno, "mmap of snapshot pages")
                            .error()
                            .with_context(f.path()));
            } else if (run.encoding == snapshot::PageEncoding::kZero) {
                void* p = mmap(dst->data(), run.bytes(), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
                if (p == MAP_FAILED)
                    return make_errno_error(Errc::kIo, errno, "mmap of zero pages");
            } else if (auto s = f.read_run(run, *dst); !s) {
                return std::unexpected(s.error().with_context(f.path()));
            }
        }
        for (const auto& r : f.working_set())
            for (uint64_t p = 0; p < r.page_count; p++)
                impl->ws_pages.push_back(r.first_page + p);
    }
    std::sort(impl->ws_pages.begin(), impl->ws_pages.end());
    impl->ws_pages.erase(std::unique(impl->ws_pages.begin(), impl->ws_pages.end()),
                         impl->ws_pages.end());

    // Fresh random bytes and a new generation for every restore.
    psn_boot_info bi;
    if (auto b = impl->mem.read_obj<psn_boot_info>(PSN_BOOT_INFO_ADDR); !b)
        return std::unexpected(b.error());
    else
        bi = *b;
    if (bi.magic != PSN_BOOT_MAGIC || bi.abi_version != PSN_ABI_VERSION)
        return make_error(Errc::kUnsupported,
                          "{}: made for guest ABI version {} (this snaprun has {})", last.path(),
                          bi.abi_version, PSN_ABI_VERSION);
    bi.restore_generation = impl->restore_generation;
    if (cfg.deterministic) // clones repeat only when asked to
        seed_bytes(cfg.seed ^ (impl->restore_generation * 0x9e3779b97f4a7c15ull), bi.random_seed,
                   sizeof bi.random_seed);
    else if (getrandom(bi.random_seed, sizeof bi.random_seed, 0) != ssize_t(sizeof bi.random_seed))
        return make_errno_error(Errc::kIo, errno, "getrandom");
    if (auto s = impl->mem.write_obj(PSN_BOOT_INFO_ADDR, bi); !s)
        return std::unexpected(s.error());

    // Working set: prefetched in bulk, or (when a new snapshot will record
    // its own) accessed bits cleared first.
    if (cfg.snapshot_at_eof)
        if (auto a = accessed_pages(impl->mem, impl->layout, true); !a)
            return std::unexpected(a.error());
    uint64_t prefetched = 0;
    if (cfg.prefetch) {
        for (const auto& r : to_ranges(impl->ws_pages)) {
            // Copies each page into this process's memory now, in bulk, so the
            // guest does not fault on it one page at a time.
            if (madvise(impl->mem_host + r.first_page * kPageSize, r.page_count * kPageSize,
                        MADV_POPULATE_WRITE) != 0)
                return make_errno_error(Errc::kIo, errno, "madvise(MADV_POPULATE_WRITE)");
            prefetched += r.page_count;
        }
    }
    if (auto s = impl->vm.set_memory(impl->mem_host, st.mem_size, cfg.snapshot_at_eof.has_value());
        !s)
        return std::unexpected(s.error());
    auto cpu = guest_cpu(impl->vm);
    if (!cpu)
        return std::unexpected(cpu.error());
    int64_t vcpu_t0 = clock_ns(CLOCK_MONOTONIC);
    auto vcpu = Vcpu::create(impl->vm);
    if (!vcpu)
        return std::unexpected(vcpu.error());
    vm_ns += clock_ns(CLOCK_MONOTONIC) - vcpu_t0;
    impl->vcpu.emplace(std::move(*vcpu));
    Vcpu& vc = *impl->vcpu;
    kvm_sregs sregs;
    kvm_regs regs;
    std::memcpy(&sregs, last.sregs().data(), sizeof sregs);
    std::memcpy(&regs, last.regs().data(), sizeof regs);
    std::vector<std::pair<uint32_t, uint64_t>> msrs;
    for (const auto& m : last.msrs()) {
        // Only the MSRs presnap saves: a snapshot file is untrusted input.
        if (std::find(kSavedMsrs.begin(), kSavedMsrs.end(), m.index) == kSavedMsrs.end())
            return make_error(Errc::kFormat,
                              "{}: snapshot sets MSR 0x{:x}, which presnap never saves",
                              last.path(), m.index);
        msrs.emplace_back(m.index, m.value);
    }
    Status s = vc.set_cpuid(cpu->cpuid);
    if (s)
        s = vc.set_sregs(sregs);
    if (s && !last.xcrs().empty())
        s = vc.set_xcrs(last.xcrs());
    if (s && !last.xsave().empty())
        s = vc.set_xsave(last.xsave());
    if (s)
        s = vc.set_msrs(msrs);
    if (s)
        s = vc.set_regs(regs);
    if (!s)
        return std::unexpected(s.error().with_context(last.path()));
    install_alarm_handler();
    auto mon = std::unique_ptr<Monitor>(new Monitor(std::move(impl)));
    mon->stats_.prefetched_pages = prefetched;
    mon->stats_.vm_create_us = double(vm_ns) / 1e3;
    mon->stats_.restore_us = double(clock_ns(CLOCK_MONOTONIC) - t0) / 1e3;
    return mon;
}

// Writes the snapshot at the wait point whose INPUT hypercall is at
// `input_gpa`: a full snapshot after a cold boot, a diff after a restore.
Status Monitor::Impl::capture(uint64_t input_gpa, RunOutcome& out) {
    Vcpu& vc = *vcpu;
    // KVM finishes the `out` on the next KVM_RUN: do that now, so the saved
    // registers are those after the instruction.
    if (auto s = vc.complete_pending_exit(); !s)
        return s;
    snapshot::SnapshotImage img;
    img.kind = parent ? snapshot::SnapshotKind::kDiff : snapshot::SnapshotKind::kFull;
    img.flags = deterministic ? snapshot::kFlagDeterministic : 0;
    img.guest_memory_size = layout.mem_size;
    img.parent = parent;
    img.executable = executable;
    img.cpu_features = snapshot::host_cpu_features();
    auto regs = vc.regs();
    auto sregs = vc.sregs();
    auto xsave = vc.xsave();
    auto xcrs = vc.xcrs();
    auto msrs = vc.msrs(kSavedMsrs);
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
    img.vcpu.regs = bytes_of(*regs);
    img.vcpu.sregs = bytes_of(*sregs);
    img.vcpu.xsave = std::move(*xsave);
    img.vcpu.xcrs = std::move(*xcrs);
    for (size_t i = 0; i < kSavedMsrs.size(); i++)
        img.vcpu.msrs.push_back({kSavedMsrs[i], (*msrs)[i]});

    MonitorState st{};
    st.version = kMonitorStateVersion;
    st.flags = deterministic ? kMonitorDeterministic : 0;
    st.mem_size = layout.mem_size;
    st.page_tables = layout.page_tables;
    st.page_table_pages = layout.page_table_pages;
    st.rootfs = layout.rootfs;
    st.rootfs_size = layout.rootfs_size;
    st.out_buf = layout.out_buf;
    st.in_buf = layout.in_buf;
    st.stack_top = layout.stack_top;
    st.stack_low = layout.stack_low;
    st.mmap_top = layout.mmap_top;
    st.brk_start = layout.brk_start;
    st.out_len_addr = out_len_addr;
    st.pending_input_gpa = input_gpa;
    st.requests_served = requests_base + request_no;
    st.restore_generation = restore_generation;
    st.tsc_hz = deterministic ? 0 : tsc_hz();
    img.monitor_state = bytes_of(st);

    // Pages: what the guest wrote (KVM's dirty log) and what the host wrote.
    auto log = vm.dirty_log(layout.mem_size);
    if (!log)
        return std::unexpected(log.error());
    std::vector<uint64_t> bits = *log;
    const auto& host_bits = mem.host_dirty_bitmap();
    for (size_t i = 0; i < bits.size() && i < host_bits.size(); i++)
        bits[i] |= host_bits[i];
    uint64_t pages = layout.mem_size / kPageSize;
    std::vector<uint64_t> dirty = bitmap_pages(bits, pages);
    std::span<const uint8_t> all(mem_host, layout.mem_size);
    if (auto s = snapshot::add_pages(
            img, dirty, all, parent ? snapshot::ZeroPages::kRecord : snapshot::ZeroPages::kSkip);
        !s)
        return s;
    auto touched = accessed_pages(mem, layout, false);
    if (!touched)
        return std::unexpected(touched.error());
    img.working_set = to_ranges(*touched);
    img.metadata_json = fmt::format(
        R"({{"generator":"presnap 0.1.0","requests":{},"requests_total":{},"pages_dirtied":{},"pages_touched":{},"restore_generation":{}}})",
        request_no, requests_base + request_no, dirty.size(), touched->size(), restore_generation);

    out.kind = RunOutcome::Kind::kSnapshotted;
    if (!cfg.snapshot_at_eof->path.empty()) {
        snapshot::WriteOptions wo;
        wo.encoding = cfg.snapshot_at_eof->compress ? snapshot::PageEncoding::kZstd
                                                    : snapshot::PageEncoding::kRaw;
        auto sum = snapshot::write_snapshot(cfg.snapshot_at_eof->path, img, wo);
        if (!sum)
            return std::unexpected(sum.error());
        out.snapshot_bytes = sum->file_size;
        out.snapshot_pages = sum->pages_stored;
    }
    out.touched = *touched;
    out.pages_dirtied = dirty.size();
    out.pages_touched = touched->size();
    out.requests = request_no;
    return {};
}

int exit_code_for(const RunOutcome& o) {
    switch (o.kind) {
    case RunOutcome::Kind::kExited:
        return o.status & 0xff;
    case RunOutcome::Kind::kSnapshotted:
        return 0;
    case RunOutcome::Kind::kSignaled:
        return 128 + o.signal;
    case RunOutcome::Kind::kTimeout:
        return kExitTimeout;
    case RunOutcome::Kind::kGuestError:
        return kExitGuestError;
    }
    return kExitHostError;
}

Result<RunOutcome> Monitor::serve() {
    Impl& m = *impl_;
    Vcpu& vc = *m.vcpu;
    kvm_run* run = vc.state();
    RunStats& st = stats_;
    g_active_run.store(run);
    arm_timer(m.cfg.timeout_s);
    st.setup_us = double(clock_ns(CLOCK_MONOTONIC) - m.start_ns) / 1e3;

    auto rip = [&]() -> uint64_t {
        auto r = vc.regs();
        return r ? r->rip : 0;
    };
    // Output the program had written before it was stopped still reaches
    // stdout, as it would from a native process that crashed after a flush.
    auto flush_guest_stdout = [&] {
        auto n = m.mem.read_obj<uint64_t>(m.out_len_addr);
        if (!n || *n == 0 || *n > PSN_IO_BUFFER_SIZE)
            return;
        if (auto span = m.mem.span(m.layout.out_buf, *n))
            (void)write_all(m.cfg.out_fd, span->data(), span->size());
    };
    auto outcome = [&](RunOutcome::Kind k, std::string msg) {
        disarm_timer();
        if (k != RunOutcome::Kind::kExited &&
            !(k == RunOutcome::Kind::kSignaled && msg.find("killed itself") != std::string::npos))
            flush_guest_stdout();
        RunOutcome o;
        o.kind = k;
        o.message = std::move(msg);
        o.requests = m.request_no;
        return o;
    };
    auto guest_error = [&](std::string msg) {
        return outcome(RunOutcome::Kind::kGuestError, m.where() + ": " + msg);
    };
    // Passes guest stdout bytes to the host, within the response limit.
    auto emit = [&](uint64_t addr, uint64_t len, int fd) -> Result<std::optional<RunOutcome>> {
        if (len == 0)
            return std::nullopt;
        auto span = m.mem.span(addr, len);
        if (!span)
            return guest_error("bad output buffer: " + span.error().message);
        if (fd == 1) {
            m.response_bytes += len;
            if (m.response_bytes > m.cfg.max_response)
                return guest_error(fmt::format("response is longer than the limit of {} bytes "
                                               "(--max-response)",
                                               m.cfg.max_response));
        }
        if (auto s = write_all(fd == 1 ? m.cfg.out_fd : m.cfg.err_fd, span->data(), len); !s)
            return std::unexpected(s.error());
        return std::nullopt;
    };

    // The guest needs input. At a wait point (the last request used up) this
    // ends the request's response and delivers the next request; within a
    // long request it delivers the request's next chunk. `resuming`: the
    // first call after a restore, for the INPUT the snapshot was taken in
    // (its output was passed on before the snapshot).
    auto on_input = [&](uint64_t gpa, bool resuming) -> Result<std::optional<RunOutcome>> {
        auto hc = m.mem.read_obj<psn_hc_input>(gpa);
        if (!hc)
            return guest_error("bad hypercall argument: " + hc.error().message);
        if (!resuming) {
            auto e = emit(hc->out_addr, hc->out_len, 1);
            if (!e)
                return std::unexpected(e.error());
            if (*e)
                return *e;
        }
        auto in = m.mem.span(m.layout.in_buf, PSN_IO_BUFFER_SIZE);
        if (!in)
            return std::unexpected(in.error());
        hc->request_start = 0;
        if (!m.in_request) { // the wait point
            int64_t now = clock_ns(CLOCK_MONOTONIC);
            if (!m.started) {
                m.started = true;
                st.startup_us = double(now - m.start_ns) / 1e3;
            } else if (m.request_no > 0) {
                st.request_us.push_back(double(now - m.request_start_ns) / 1e3);
                st.request_exits.push_back(st.exits - m.exits_at_request_start);
                if (m.request_no == 1) {
                    rusage ru;
                    getrusage(RUSAGE_SELF, &ru);
                    st.first_request_faults = uint64_t(ru.ru_minflt - m.minflt_at_request_start);
                }
            }
            disarm_timer();
        }
        auto chunk = m.reader.next(in->data(), PSN_IO_BUFFER_SIZE);
        if (!chunk)
            return std::unexpected(chunk.error());
        m.mem.note_host_write(m.layout.in_buf, chunk->len);
        if (!m.in_request && chunk->eof && m.cfg.snapshot_at_eof) {
            RunOutcome o;
            if (auto s = m.capture(gpa, o); !s)
                return std::unexpected(s.error());
            return o;
        }
        if (!m.in_request && chunk->eof) {
            m.at_eof = true; // the program still runs after EOF: keep a limit on it
            arm_timer(m.cfg.timeout_s);
        }
        if (!m.in_request && chunk->len > 0) {
            m.request_no++;
            m.request_bytes = 0;
            m.response_bytes = 0;
            hc->request_start = 1;
            m.request_start_ns = clock_ns(CLOCK_MONOTONIC);
            m.exits_at_request_start = st.exits;
            rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            m.minflt_at_request_start = ru.ru_minflt;
            arm_timer(m.cfg.timeout_s);
        }
        m.request_bytes += chunk->len;
        if (m.request_bytes > m.cfg.max_request)
            return guest_error(fmt::format(
                "request is longer than the limit of {} bytes (--max-request)", m.cfg.max_request));
        m.in_request = chunk->len > 0 && !chunk->ends_request;
        hc->in_len = chunk->len;
        hc->eof = chunk->eof ? 1 : 0;
        hc->request_index = m.requests_base + m.request_no;
        if (!m.deterministic) {
            hc->realtime_ns = clock_ns(CLOCK_REALTIME);
            hc->monotonic_ns = clock_ns(CLOCK_MONOTONIC);
            hc->tsc_hz = m.tsc_hz();
        }
        if (auto s = m.mem.write_obj(gpa, *hc); !s)
            return guest_error("bad hypercall argument: " + s.error().message);
        return std::nullopt;
    };
    if (m.pending_input_gpa) { // restored: answer the INPUT the snapshot waits in
        m.started = true;
        st.startup_us = double(clock_ns(CLOCK_MONOTONIC) - m.start_ns) / 1e3;
        auto r = on_input(m.pending_input_gpa, true);
        if (!r)
            return std::unexpected(r.error());
        if (*r)
            return **r;
    }

    for (;;) {
        auto r = vc.run();
        if (!r)
            return std::unexpected(r.error());
        if (!*r) { // interrupted
            run->immediate_exit = 0;
            if (g_alarm)
                return outcome(RunOutcome::Kind::kTimeout,
                               fmt::format("{}: timed out after {} s (rip 0x{:x})", m.where(),
                                           m.cfg.timeout_s, rip()));
            continue;
        }
        st.exits++;
        if (st.exits == 1)
            st.first_exit_us = double(clock_ns(CLOCK_MONOTONIC) - m.start_ns) / 1e3;
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint16_t port = run->io.port;
            if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1 ||
                port <= PSN_HC_PORT_BASE || port >= PSN_HC_PORT_BASE + PSN_HC_COUNT)
                return guest_error(fmt::format("I/O to port 0x{:x} (rip 0x{:x})", port, rip()));
            uint32_t gpa;
            std::memcpy(&gpa, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, 4);
            switch (port - PSN_HC_PORT_BASE) {
            case PSN_HC_INPUT: {
                auto r = on_input(gpa, false);
                if (!r)
                    return std::unexpected(r.error());
                if (*r)
                    return **r;
                break;
            }
            case PSN_HC_WRITE: {
                auto hc = m.mem.read_obj<psn_hc_write>(gpa);
                if (!hc)
                    return guest_error("bad hypercall argument: " + hc.error().message);
                if (hc->fd != 1 && hc->fd != 2)
                    return guest_error(fmt::format("write hypercall for fd {}", hc->fd));
                auto e = emit(hc->addr, hc->len, int(hc->fd));
                if (!e)
                    return std::unexpected(e.error());
                if (*e)
                    return **e;
                break;
            }
            case PSN_HC_EXIT: {
                auto hc = m.mem.read_obj<psn_hc_exit>(gpa);
                if (!hc)
                    return guest_error("bad hypercall argument: " + hc.error().message);
                auto e = emit(hc->out_addr, hc->out_len, 1);
                if (!e)
                    return std::unexpected(e.error());
                if (*e)
                    return **e;
                if (hc->signal) {
                    auto o =
                        outcome(RunOutcome::Kind::kSignaled,
                                fmt::format("{}: program killed itself with signal {} ({})",
                                            m.where(), hc->signal, strsignal(int(hc->signal))));
                    o.signal = int(hc->signal);
                    return o;
                }
                auto o = outcome(RunOutcome::Kind::kExited, "");
                o.status = hc->status & 0xff;
                return o;
            }
            case PSN_HC_FAULT: {
                auto hc = m.mem.read_obj<psn_hc_fault>(gpa);
                if (!hc)
                    return guest_error("bad hypercall argument: " + hc.error().message);
                std::string msg =
                    fmt::format("{}: guest {}", m.where(), exception_name(hc->vector));
                if (hc->vector == 14)
                    msg += fmt::format(" at address 0x{:x} ({} by {} code)", hc->cr2,
                                       (hc->error_code & 2) ? "write" : "read",
                                       (hc->error_code & 4) ? "user" : "kernel");
                else if (hc->error_code)
                    msg += fmt::format(" (error code 0x{:x})", hc->error_code);
                msg += fmt::format(", rip 0x{:x}, rsp 0x{:x}", hc->rip, hc->rsp);
                auto o = outcome(RunOutcome::Kind::kSignaled, msg);
                o.signal = exception_signal(hc->vector);
                return o;
            }
            case PSN_HC_NOTICE: {
                auto hc = m.mem.read_obj<psn_hc_notice>(gpa);
                if (!hc)
                    return guest_error("bad hypercall argument: " + hc.error().message);
                switch (hc->kind) {
                case PSN_NOTICE_UNSUPPORTED_SYSCALL:
                case PSN_NOTICE_REFUSED_SYSCALL:
                    if (m.reported.insert(hc->arg0).second)
                        m.warn(fmt::format("{}: {} syscall {} ({}) returned ENOSYS{}", m.where(),
                                           hc->kind == PSN_NOTICE_REFUSED_SYSCALL ? "refused"
                                                                                  : "unsupported",
                                           hc->arg0, syscall_name(hc->arg0),
                                           hc->kind == PSN_NOTICE_REFUSED_SYSCALL
                                               ? ": a presnap guest is one process with no network"
                                               : ""));
                    break;
                case PSN_NOTICE_OUT_OF_MEMORY:
                    if (std::exchange(m.oom_warned, true))
                        break;
                    m.warn(fmt::format("{}: guest out of memory: {} of {} bytes refused (--mem is "
                                       "{} MiB)",
                                       m.where(), syscall_name(hc->arg1), hc->arg0,
                                       m.layout.mem_size >> 20));
                    break;
                case PSN_NOTICE_DEADLOCK:
                    return guest_error(fmt::format(
                        "program waits forever on futex 0x{:x} (a single thread cannot be woken)",
                        hc->arg0));
                case PSN_NOTICE_KERNEL_PANIC: {
                    auto s = m.mem.span(hc->arg0, std::min<uint64_t>(hc->arg1, 200));
                    return guest_error("guest kernel panic: " +
                                       (s ? std::string(s->begin(), s->end()) : "(bad message)"));
                }
                default:
                    return guest_error(fmt::format("unknown notice {}", hc->kind));
                }
                break;
            }
            case PSN_HC_SLEEP: {
                auto hc = m.mem.read_obj<psn_hc_sleep>(gpa);
                if (!hc)
                    return guest_error("bad hypercall argument: " + hc.error().message);
                // Sleep, but never past the request's deadline: SIGALRM ends it.
                timespec ts{time_t(hc->ns / 1000000000), long(hc->ns % 1000000000)};
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !g_alarm)
                    ;
                if (g_alarm)
                    return outcome(RunOutcome::Kind::kTimeout,
                                   fmt::format("{}: timed out after {} s (sleeping)", m.where(),
                                               m.cfg.timeout_s));
                break;
            }
            default:
                return guest_error(fmt::format("reserved hypercall port 0x{:x}", port));
            }
            break;
        }
        case KVM_EXIT_SHUTDOWN:
            return guest_error(fmt::format("triple fault (rip 0x{:x})", rip()));
        case KVM_EXIT_HLT:
            return guest_error(fmt::format("guest halted (rip 0x{:x})", rip()));
        case KVM_EXIT_MMIO:
            return guest_error(fmt::format("access to unbacked address 0x{:x} (rip 0x{:x})",
                                           run->mmio.phys_addr, rip()));
        case KVM_EXIT_INTERNAL_ERROR:
            return guest_error(fmt::format("KVM internal error, suberror {}{} (rip 0x{:x})",
                                           run->internal.suberror,
                                           run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                                               ? " (instruction emulation failed)"
                                               : "",
                                           rip()));
        case KVM_EXIT_FAIL_ENTRY:
            return make_error(Errc::kKvm, "KVM_RUN failed to enter the guest (reason 0x{:x})",
                              uint64_t(run->fail_entry.hardware_entry_failure_reason));
        default:
            return guest_error(
                fmt::format("unexpected exit reason {} (rip 0x{:x})", run->exit_reason, rip()));
        }
    }
}

} // namespace presnap::vmm
