// The hypercalls a guest kernel makes (guest_abi.h): each handler checks
// every guest address through GuestMemory and turns what the guest did into
// output, a delivered request, or an outcome. A guest can issue any
// hypercall with any argument from CPL3: nothing here trusts it.
#include "internal.h"

#include "presnap/guest_abi.h"
#include "presnap/vmm/syscall_names.h"

#include <csignal>
#include <cstring>
#include <sys/resource.h>

namespace presnap::runtime {
namespace {

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

long thread_minflt() {
    rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt;
}

// Guest text quoted in a message: printable ASCII only, so that a guest
// cannot forge lines of the tool's own output.
std::string quote_guest_text(std::span<const uint8_t> bytes) {
    std::string s;
    for (uint8_t c : bytes)
        s += (c >= 0x20 && c < 0x7f) ? char(c) : '?';
    return "\"" + s + "\"";
}

} // namespace

Session::Impl::Step Session::Impl::emit(uint64_t addr, uint64_t len, int fd) {
    if (len == 0)
        return std::nullopt;
    auto span = mem.span(addr, len);
    if (!span)
        return guest_error("bad output buffer: " + span.error().message);
    if (fd == 1) {
        // Refuse the whole chunk before any of it goes out.
        if (len >
            opt.limits.max_response - std::min(current.response_bytes, opt.limits.max_response)) {
            RunOutcome o = outcome(RunOutcome::Kind::kGuestError,
                                   fmt::format("{}: response is longer than the limit of {} "
                                               "bytes (--max-response)",
                                               where(), opt.limits.max_response));
            return o;
        }
        current.response_bytes += len;
    }
    if (auto s = out->write(fd, *span); !s)
        return std::unexpected(s.error());
    return std::nullopt;
}

// The wait point after a request: its response is complete.
Status Session::Impl::end_request() {
    if (auto s = trace_request_end(); !s)
        return s;
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    current.us = double(now - request_start_ns) / 1e3;
    current.exits = stats.exits - exits_at_request_start;
    current.host_faults = uint64_t(thread_minflt() - minflt_at_request_start);
    stats.requests++;
    if (stats.requests == 1) {
        stats.first_request_us = current.us;
        stats.first_request_faults = current.host_faults;
    }
    stats.max_request_exits = std::max(stats.max_request_exits, current.exits);
    return out->end_response(current);
}

// The guest needs input. At a wait point (the last request used up) this
// ends the request's response and delivers the next request; within a long
// request it delivers the request's next chunk. `resuming`: the INPUT the
// Session was waiting in (after a restore or a kWaiting run), whose output
// and wait-point bookkeeping were done before.
Session::Impl::Step Session::Impl::on_input(uint64_t gpa, bool resuming) {
    auto hc = mem.read_obj<psn_hc_input>(gpa);
    if (!hc)
        return guest_error("bad hypercall argument: " + hc.error().message);
    if (!resuming) {
        auto e = emit(hc->out_addr, hc->out_len, 1);
        if (!e || *e)
            return e;
    }
    if (at_eof) {
        // End of input was delivered: a well-behaved guest kernel never asks
        // again. Answer EOF again, and never re-arm the deadline for it.
        hc->in_len = 0;
        hc->eof = 1;
        hc->request_start = 0;
        if (auto s = mem.write_obj(gpa, *hc); !s)
            return guest_error("bad hypercall argument: " + s.error().message);
        return std::nullopt;
    }
    if (!in_request && !resuming) { // the wait point
        watchdog->disarm();
        if (!started) {
            started = true;
            stats.startup_us = double(clock_ns(CLOCK_MONOTONIC) - start_ns) / 1e3;
            RequestInfo startup;
            startup.response_bytes = current.response_bytes;
            if (auto s = out->end_response(startup); !s)
                return std::unexpected(s.error());
        } else if (request_no > 0) {
            if (auto s = end_request(); !s)
                return std::unexpected(s.error());
        }
        current = {};
    }
    auto in_span = mem.span(layout.in_buf, PSN_IO_BUFFER_SIZE);
    if (!in_span)
        return std::unexpected(in_span.error());
    auto chunk = in->next(*in_span);
    if (!chunk)
        return std::unexpected(chunk.error());
    // Only the bytes written count as dirty: a snapshot keeps no more of
    // the buffer than the requests used.
    mem.note_host_write(layout.in_buf, std::min<uint64_t>(chunk->len, PSN_IO_BUFFER_SIZE));
    if (!in_request && chunk->eof && at_eof_mode == AtEof::kStop) {
        pending_input_gpa = gpa;
        watchdog->disarm();
        RunOutcome o;
        o.kind = RunOutcome::Kind::kWaiting;
        o.requests = run_requests;
        return o;
    }
    hc->request_start = 0;
    if (!in_request && chunk->eof) {
        at_eof = true; // the program still runs after EOF: one deadline for all of it
        watchdog->arm(opt.limits.timeout_s);
    }
    if (!in_request && chunk->len > 0) {
        request_no++;
        run_requests++;
        current = {};
        current.index = requests_base + request_no;
        hc->request_start = 1;
        request_start_ns = clock_ns(CLOCK_MONOTONIC);
        exits_at_request_start = stats.exits;
        minflt_at_request_start = thread_minflt();
        if (auto s = trace_request_start(); !s)
            return std::unexpected(s.error());
        watchdog->arm(opt.limits.timeout_s);
    }
    current.request_bytes += chunk->len;
    if (current.request_bytes > opt.limits.max_request)
        return guest_error(fmt::format("request is longer than the limit of {} bytes "
                                       "(--max-request)",
                                       opt.limits.max_request));
    in_request = chunk->len > 0 && !chunk->ends_request;
    hc->in_len = chunk->len;
    hc->eof = chunk->eof ? 1 : 0;
    hc->request_index = requests_base + request_no;
    if (!deterministic) {
        hc->realtime_ns = clock_ns(CLOCK_REALTIME);
        hc->monotonic_ns = clock_ns(CLOCK_MONOTONIC);
        hc->tsc_hz = tsc_hz();
    }
    if (auto s = mem.write_obj(gpa, *hc); !s)
        return guest_error("bad hypercall argument: " + s.error().message);
    return std::nullopt;
}

Session::Impl::Step Session::Impl::on_hypercall(uint16_t port, uint32_t gpa) {
    if (port <= PSN_HC_PORT_BASE || port >= PSN_HC_PORT_BASE + PSN_HC_COUNT)
        return guest_error(fmt::format("I/O to port 0x{:x}", port));
    switch (port - PSN_HC_PORT_BASE) {
    case PSN_HC_INPUT:
        return on_input(gpa, false);
    case PSN_HC_WRITE: {
        auto hc = mem.read_obj<psn_hc_write>(gpa);
        if (!hc)
            return guest_error("bad hypercall argument: " + hc.error().message);
        if (hc->fd != 1 && hc->fd != 2)
            return guest_error(fmt::format("write hypercall for fd {}", hc->fd));
        return emit(hc->addr, hc->len, int(hc->fd));
    }
    case PSN_HC_EXIT: {
        auto hc = mem.read_obj<psn_hc_exit>(gpa);
        if (!hc)
            return guest_error("bad hypercall argument: " + hc.error().message);
        auto e = emit(hc->out_addr, hc->out_len, 1);
        if (!e || *e)
            return e;
        if (hc->signal) {
            if (hc->signal > 64)
                return guest_error(fmt::format("exit hypercall with signal {}", hc->signal));
            auto o = outcome(RunOutcome::Kind::kSignaled,
                             fmt::format("{}: program killed itself with signal {} ({})", where(),
                                         hc->signal, strsignal(int(hc->signal))));
            o.signal = int(hc->signal);
            return o;
        }
        auto o = outcome(RunOutcome::Kind::kExited, "");
        o.status = hc->status & 0xff;
        return o;
    }
    case PSN_HC_FAULT: {
        auto hc = mem.read_obj<psn_hc_fault>(gpa);
        if (!hc)
            return guest_error("bad hypercall argument: " + hc.error().message);
        if (hc->vector == 3 && tracer && tracer->armed()) { // maybe a trace point
            auto ours = tracer->hit(mem, gpa, hc->rip - 1);
            if (!ours)
                return guest_error("bad hypercall argument: " + ours.error().message);
            if (*ours)
                return std::nullopt; // the guest continues at the traced instruction
        }
        std::string msg = fmt::format("{}: guest {}", where(), exception_name(hc->vector));
        if (hc->vector == 14)
            msg += fmt::format(" at address 0x{:x} ({} by {} code)", hc->cr2,
                               (hc->error_code & 2) ? "write" : "read",
                               (hc->error_code & 4) ? "user" : "kernel");
        else if (hc->error_code)
            msg += fmt::format(" (error code 0x{:x})", hc->error_code);
        msg += fmt::format(", rip 0x{:x}, rsp 0x{:x}", hc->rip, hc->rsp);
        flush_guest_stdout();
        auto o = outcome(RunOutcome::Kind::kSignaled, msg);
        o.signal = exception_signal(hc->vector);
        return o;
    }
    case PSN_HC_NOTICE: {
        auto hc = mem.read_obj<psn_hc_notice>(gpa);
        if (!hc)
            return guest_error("bad hypercall argument: " + hc.error().message);
        switch (hc->kind) {
        case PSN_NOTICE_UNSUPPORTED_SYSCALL:
        case PSN_NOTICE_REFUSED_SYSCALL: {
            // The syscall number space is small and fixed: anything past it is
            // a forged notice, and the set of reported numbers stays bounded.
            if (hc->arg0 >= reported.size())
                return guest_error(fmt::format("notice for syscall number {}, which does not "
                                               "exist",
                                               hc->arg0));
            if (reported.test(hc->arg0))
                break;
            reported.set(hc->arg0);
            bool refused = hc->kind == PSN_NOTICE_REFUSED_SYSCALL;
            warn(fmt::format("{}: {} syscall {} ({}) returned ENOSYS{}", where(),
                             refused ? "refused" : "unsupported", hc->arg0,
                             vmm::syscall_name(hc->arg0),
                             refused ? ": a presnap guest is one process with no network" : ""));
            break;
        }
        case PSN_NOTICE_OUT_OF_MEMORY:
            if (std::exchange(oom_warned, true))
                break;
            warn(fmt::format("{}: guest out of memory: {} of {} bytes refused (--mem is {} MiB)",
                             where(), vmm::syscall_name(hc->arg1 & 0x1ff), hc->arg0,
                             layout.mem_size >> 20));
            break;
        case PSN_NOTICE_DEADLOCK:
            return guest_error(fmt::format(
                "program waits forever on futex 0x{:x} (a single thread cannot be woken)",
                hc->arg0));
        case PSN_NOTICE_KERNEL_PANIC: {
            auto s = mem.span(hc->arg0, std::min<uint64_t>(hc->arg1, 200));
            return guest_error("guest kernel panic: " +
                               (s ? quote_guest_text(*s) : std::string("(bad message)")));
        }
        default:
            return guest_error(fmt::format("unknown notice {}", hc->kind));
        }
        return std::nullopt;
    }
    case PSN_HC_SLEEP: {
        auto hc = mem.read_obj<psn_hc_sleep>(gpa);
        if (!hc)
            return guest_error("bad hypercall argument: " + hc.error().message);
        // Sleep, but never past the deadline.
        if (!watchdog->sleep_for_ns(hc->ns)) {
            flush_guest_stdout();
            return outcome(
                RunOutcome::Kind::kTimeout,
                fmt::format("{}: timed out after {} s (sleeping)", where(), opt.limits.timeout_s));
        }
        return std::nullopt;
    }
    }
    return guest_error(fmt::format("reserved hypercall port 0x{:x}", port));
}

} // namespace presnap::runtime
