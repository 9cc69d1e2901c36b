// The Session: creation, resume at a snapshot's wait point, and the run
// loop, one switch on the exit reason. Hypercalls are in hypercalls.cpp,
// cold boot in cold_boot.cpp.
#include "internal.h"

#include "presnap/guest_abi.h"
#include "presnap/vmm/vcpu_state.h"

#include <cstring>
#include <ctime>
#include <sys/mman.h>
#include <x86intrin.h>

namespace presnap::runtime {

int64_t clock_ns(clockid_t c) {
    timespec ts;
    clock_gettime(c, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Session::Impl::~Impl() {
    watchdog.reset();
    vcpu.reset();
    if (mem_host)
        munmap(mem_host, layout.mem_size);
}

// Guest memory: anonymous, zero, reserved lazily.
Status Session::Impl::map_memory(uint64_t size) {
    void* host = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED)
        return make_errno_error(Errc::kIo, errno, "cannot allocate guest memory");
    mem_host = static_cast<uint8_t*>(host);
    layout.mem_size = size;
    mem = vmm::GuestMemory(mem_host, size);
    return {};
}

Status Session::Impl::reset() {
    // Complete an exit KVM left pending (the `out` of a hypercall): on the
    // next KVM_RUN it would otherwise skip an instruction of the new state
    // if the new rip happened to equal the old one.
    if (auto s = vcpu->complete_pending_exit(); !s)
        return s;
    watchdog->disarm();
    // The memory slot stays registered over the same host range when no
    // dirty log has to restart: remapping the range below (and the restore
    // that follows) reaches KVM through its MMU notifiers, and deleting and
    // adding a slot costs a synchronisation of the whole VM each time
    // (milliseconds on a busy host). resume() registers it again with the
    // same values, which KVM takes as no change.
    if (slot_registered && opt.track_dirty) {
        if (auto s = vm.clear_memory(); !s)
            return s;
        slot_registered = false;
    }
    // Fresh zero memory over the old mappings (file runs included).
    void* p = mmap(mem_host, layout.mem_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        return make_errno_error(Errc::kIo, errno, "cannot reset guest memory");
    mem.clear_host_dirty();
    vmm::GuestLayout fresh;
    fresh.mem_size = layout.mem_size;
    layout = fresh;
    stats = {};
    start_ns = clock_ns(CLOCK_MONOTONIC);
    tsc0 = __rdtsc();
    raw0 = clock_ns(CLOCK_MONOTONIC_RAW);
    saved_tsc_hz = 0;
    deterministic = false;
    restore_generation = 0;
    out_len_addr = 0;
    started = in_request = at_eof = finished = false;
    pending_input_gpa = requests_base = request_no = run_requests = 0;
    current = {};
    request_start_ns = 0;
    exits_at_request_start = 0;
    minflt_at_request_start = 0;
    reported.reset();
    oom_warned = false;
    // A run that ended inside a traced request leaves breakpoints counted as
    // armed over memory that is gone: start the tracer afresh.
    tracer.reset();
    if (!opt.trace.points.empty())
        tracer.emplace(opt.trace);
    traced_base = 0;
    return {};
}

Status Session::reset() {
    executable.reset();
    parent.reset();
    return impl_->reset();
}

uint64_t Session::memory_size() const {
    return impl_->layout.mem_size;
}

Status Session::Impl::create_vcpu() {
    auto v = vmm::Vcpu::create(vm);
    if (!v)
        return std::unexpected(v.error());
    vcpu.emplace(std::move(*v));
    watchdog.emplace();
    return {};
}

uint64_t Session::Impl::tsc_hz() const {
    int64_t dns = clock_ns(CLOCK_MONOTONIC_RAW) - raw0;
    uint64_t dt = __rdtsc() - tsc0;
    if (dns < 200000)
        return saved_tsc_hz;
    return uint64_t((unsigned __int128)dt * 1000000000u / uint64_t(dns));
}

std::string Session::Impl::where() const {
    if (!started)
        return "during start-up";
    if (at_eof)
        return "after the end of input";
    return fmt::format("request {}", request_no); // counted per Session, from 1
}

void Session::Impl::flush_guest_stdout() {
    auto n = mem.read_obj<uint64_t>(out_len_addr);
    if (!n || *n == 0 || *n > PSN_IO_BUFFER_SIZE)
        return;
    uint64_t room = current.response_bytes < opt.limits.max_response
                        ? opt.limits.max_response - current.response_bytes
                        : 0;
    uint64_t len = std::min(*n, room);
    if (len == 0)
        return;
    if (auto span = mem.span(layout.out_buf, len)) {
        current.response_bytes += len;
        (void)out->write(1, *span);
    }
}

RunOutcome Session::Impl::outcome(RunOutcome::Kind k, std::string msg) {
    watchdog->disarm();
    end_unfinished_request();
    finished = true;
    RunOutcome o;
    o.kind = k;
    o.message = std::move(msg);
    o.requests = run_requests;
    return o;
}

RunOutcome Session::Impl::guest_error(std::string msg) {
    flush_guest_stdout();
    return outcome(RunOutcome::Kind::kGuestError, where() + ": " + msg);
}

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::create(uint64_t mem_size, const SessionOptions& options) {
    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    uint64_t tsc0 = __rdtsc();
    int64_t raw0 = clock_ns(CLOCK_MONOTONIC_RAW);
    if (mem_size < vmm::kMinMemory || mem_size > vmm::kMaxMemory || mem_size % (2ull << 20))
        return make_error(Errc::kFormat,
                          "guest memory size {} is not a multiple of 2 MiB "
                          "between {} MiB and {} GiB",
                          mem_size, vmm::kMinMemory >> 20, vmm::kMaxMemory >> 30);
    auto vm = vmm::Vm::create();
    if (!vm)
        return std::unexpected(vm.error());
    auto impl = std::make_unique<Impl>(options, std::move(*vm));
    impl->start_ns = t0;
    impl->tsc0 = tsc0;
    impl->raw0 = raw0;
    if (auto s = impl->map_memory(mem_size); !s)
        return std::unexpected(s.error());
    if (auto s = impl->create_vcpu(); !s)
        return std::unexpected(s.error());
    impl->stats.vm_create_us = double(clock_ns(CLOCK_MONOTONIC) - t0) / 1e3;
    return std::unique_ptr<Session>(new Session(std::move(impl)));
}

Status Session::resume(const snapshot::MonitorState& st, const snapshot::VcpuState& vcpu_state) {
    Impl& m = *impl_;
    if (st.mem_size != m.layout.mem_size)
        return make_error(Errc::kFormat,
                          "monitor state says {} bytes of memory, the session has {}", st.mem_size,
                          m.layout.mem_size);
    auto kh = m.mem.read_obj<psn_kernel_header>(PSN_KERNEL_BASE);
    if (!kh)
        return std::unexpected(kh.error());
    auto layout = validate_monitor_state(st, *kh);
    if (!layout)
        return std::unexpected(layout.error());
    auto cpu = vmm::guest_cpu(m.vm);
    if (!cpu)
        return std::unexpected(cpu.error());
    vmm::VcpuExpectations ex{*layout, kh->syscall_entry, cpu->xcr0};
    if (auto s = vmm::restore_vcpu(*m.vcpu, vcpu_state, ex, m.cpuid_set ? nullptr : &*cpu); !s)
        return s;
    m.cpuid_set = true;
    if (auto s = reseed_boot_info(m.mem, m.opt.restore_seed.has_value(),
                                  m.opt.restore_seed.value_or(0), st.restore_generation + 1);
        !s)
        return s;
    if (auto s = m.vm.set_memory(m.mem_host, st.mem_size, m.opt.track_dirty); !s)
        return s;
    m.slot_registered = true;
    m.layout = *layout;
    m.out_len_addr = st.out_len_addr;
    m.pending_input_gpa = st.pending_input_gpa;
    m.requests_base = st.requests_served;
    m.deterministic = (st.flags & snapshot::kMonitorDeterministic) != 0;
    m.restore_generation = st.restore_generation + 1;
    m.saved_tsc_hz = st.tsc_hz;
    m.started = true;
    return {};
}

Result<snapshot::MonitorState> Session::monitor_state() const {
    const Impl& m = *impl_;
    if (!at_wait_point())
        return make_error(Errc::kInvalidArgument, "the session is not at a wait point");
    snapshot::MonitorState st;
    st.version = snapshot::kMonitorStateVersion;
    st.flags = m.deterministic ? snapshot::kMonitorDeterministic : 0;
    st.mem_size = m.layout.mem_size;
    st.page_tables = m.layout.page_tables;
    st.page_table_pages = m.layout.page_table_pages;
    st.rootfs = m.layout.rootfs;
    st.rootfs_size = m.layout.rootfs_size;
    st.out_buf = m.layout.out_buf;
    st.in_buf = m.layout.in_buf;
    st.stack_top = m.layout.stack_top;
    st.stack_low = m.layout.stack_low;
    st.mmap_top = m.layout.mmap_top;
    st.brk_start = m.layout.brk_start;
    st.out_len_addr = m.out_len_addr;
    st.pending_input_gpa = m.pending_input_gpa;
    st.requests_served = m.requests_base + m.request_no;
    st.restore_generation = m.restore_generation;
    st.tsc_hz = m.deterministic ? 0 : m.tsc_hz();
    return st;
}

bool Session::at_wait_point() const {
    return impl_->pending_input_gpa != 0 && !impl_->finished;
}
vmm::GuestMemory& Session::memory() {
    return impl_->mem;
}
const vmm::GuestLayout& Session::layout() const {
    return impl_->layout;
}
vmm::Vm& Session::vm() {
    return impl_->vm;
}
vmm::Vcpu& Session::vcpu() {
    return *impl_->vcpu;
}
const SessionOptions& Session::options() const {
    return impl_->opt;
}
bool Session::deterministic() const {
    return impl_->deterministic;
}
uint64_t Session::restore_generation() const {
    return impl_->restore_generation;
}
uint64_t Session::requests_served() const {
    return impl_->requests_base + impl_->request_no;
}
const RunStats& Session::stats() const {
    return impl_->stats;
}
RunStats& Session::stats() {
    return impl_->stats;
}

namespace {

const char* exit_reason_text(uint32_t reason) {
    switch (reason) {
    case KVM_EXIT_SHUTDOWN:
        return "triple fault";
    case KVM_EXIT_HLT:
        return "guest halted";
    default:
        return nullptr;
    }
}

} // namespace

Result<RunOutcome> Session::run(RequestSource& in, ResponseSink& out, AtEof at_eof) {
    Impl& m = *impl_;
    if (m.finished)
        return make_error(Errc::kInvalidArgument, "the session has ended; it cannot run again");
    vmm::Vcpu& vc = *m.vcpu;
    kvm_run* run = vc.state();
    m.in = &in;
    m.out = &out;
    m.at_eof_mode = at_eof;
    m.run_requests = 0;
    if (auto s = m.watchdog->enter(vc.fd()); !s)
        return std::unexpected(s.error());
    struct Leave {
        Watchdog& w;
        ~Leave() { w.leave(); }
    } leave{*m.watchdog};

    auto rip = [&]() -> uint64_t {
        auto r = vc.regs();
        return r ? r->rip : 0;
    };
    if (m.stats.setup_us == 0)
        m.stats.setup_us = double(clock_ns(CLOCK_MONOTONIC) - m.start_ns) / 1e3;
    if (m.pending_input_gpa) { // at a wait point: answer the INPUT the vCPU waits in
        uint64_t gpa = std::exchange(m.pending_input_gpa, 0);
        if (m.stats.startup_us == 0)
            m.stats.startup_us = double(clock_ns(CLOCK_MONOTONIC) - m.start_ns) / 1e3;
        auto r = m.on_input(gpa, true);
        if (!r)
            return std::unexpected(r.error());
        if (*r)
            return **r;
    } else {
        m.watchdog->arm(m.opt.limits.timeout_s); // start-up
    }

    for (;;) {
        auto r = vc.run();
        if (!r)
            return std::unexpected(r.error());
        if (!*r) { // interrupted: the deadline, or a stray signal
            if (m.watchdog->expired()) {
                m.flush_guest_stdout();
                return m.outcome(RunOutcome::Kind::kTimeout,
                                 fmt::format("{}: timed out after {} s (rip 0x{:x})", m.where(),
                                             m.opt.limits.timeout_s, rip()));
            }
            m.watchdog->drain(); // a kick for a deadline that has since moved
            continue;
        }
        if (m.stats.exits++ == 0)
            m.stats.first_exit_us = double(clock_ns(CLOCK_MONOTONIC) - m.start_ns) / 1e3;
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint16_t port = run->io.port;
            if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1)
                return m.guest_error(fmt::format("I/O to port 0x{:x} (rip 0x{:x})", port, rip()));
            uint32_t gpa;
            std::memcpy(&gpa, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, 4);
            auto step = m.on_hypercall(port, gpa);
            if (!step)
                return std::unexpected(step.error());
            if (*step)
                return **step;
            break;
        }
        case KVM_EXIT_SHUTDOWN:
        case KVM_EXIT_HLT:
            return m.guest_error(
                fmt::format("{} (rip 0x{:x})", exit_reason_text(run->exit_reason), rip()));
        case KVM_EXIT_MMIO:
            return m.guest_error(fmt::format("access to unbacked address 0x{:x} (rip 0x{:x})",
                                             run->mmio.phys_addr, rip()));
        case KVM_EXIT_INTERNAL_ERROR:
            return m.guest_error(fmt::format("KVM internal error, suberror {}{} (rip 0x{:x})",
                                             run->internal.suberror,
                                             run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                                                 ? " (instruction emulation failed)"
                                                 : "",
                                             rip()));
        case KVM_EXIT_FAIL_ENTRY:
            return make_error(Errc::kKvm, "KVM_RUN failed to enter the guest (reason 0x{:x})",
                              uint64_t(run->fail_entry.hardware_entry_failure_reason));
        default:
            return m.guest_error(
                fmt::format("unexpected exit reason {} (rip 0x{:x})", run->exit_reason, rip()));
        }
    }
}

int exit_code_for(const RunOutcome& o) {
    switch (o.kind) {
    case RunOutcome::Kind::kExited:
        return o.status & 0xff;
    case RunOutcome::Kind::kWaiting:
        return 0;
    case RunOutcome::Kind::kSignaled:
        return 128 + (o.signal & 0x7f);
    case RunOutcome::Kind::kTimeout:
        return kExitTimeout;
    case RunOutcome::Kind::kGuestError:
        return kExitGuestError;
    }
    return kExitHostError;
}

} // namespace presnap::runtime
