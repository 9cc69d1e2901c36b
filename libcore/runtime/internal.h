// Session::Impl: the state of one guest, shared by the runtime's files
// (session.cpp: creation, resume, the run loop; hypercalls.cpp: the
// hypercall handlers; cold_boot.cpp: booting a program). Private to the
// runtime.
#pragma once

#include "presnap/runtime/session.h"
#include "tracer.h"
#include "watchdog.h"

#include <bitset>
#include <optional>

namespace presnap::runtime {

int64_t clock_ns(clockid_t c);

// Writes a restore's generation and random seed into the boot information
// page: fresh bytes from the host, or from `seed` when deterministic.
Status reseed_boot_info(vmm::GuestMemory& mem, bool deterministic, uint64_t seed,
                        uint64_t generation);

struct Session::Impl {
    SessionOptions opt;
    vmm::Vm vm;
    std::optional<vmm::Vcpu> vcpu;
    std::optional<Watchdog> watchdog;
    uint8_t* mem_host = nullptr;
    vmm::GuestMemory mem;
    vmm::GuestLayout layout;
    RunStats stats;
    int64_t start_ns = 0;
    // TSC calibration against CLOCK_MONOTONIC_RAW.
    uint64_t tsc0 = 0;
    int64_t raw0 = 0;
    uint64_t saved_tsc_hz = 0; // from a snapshot, until calibration has a long baseline
    bool deterministic = false;
    uint64_t restore_generation = 0;
    uint64_t out_len_addr = 0; // the guest kernel's count of buffered stdout bytes

    // The request protocol.
    bool started = false;           // the first wait point was reached
    bool in_request = false;        // the last chunk delivered did not end its request
    bool at_eof = false;            // end of input was delivered to the program
    bool finished = false;          // an outcome other than kWaiting was returned
    uint64_t pending_input_gpa = 0; // at a wait point: the INPUT hypercall to answer
    uint64_t requests_base = 0;     // requests a restored snapshot had already served
    uint64_t request_no = 0;        // requests delivered by this Session
    uint64_t run_requests = 0;      // requests delivered by the current run()
    RequestInfo current;            // the request being served
    int64_t request_start_ns = 0;
    uint64_t exits_at_request_start = 0;
    long minflt_at_request_start = 0;
    std::optional<Tracer> tracer; // when SessionOptions::trace has points
    uint64_t traced_base = 0;     // request_no when tracing was (re)configured
    std::bitset<512> reported;    // syscall numbers already warned about
    bool oom_warned = false;

    // The current run().
    RequestSource* in = nullptr;
    ResponseSink* out = nullptr;
    AtEof at_eof_mode = AtEof::kDeliver;

    Impl(const SessionOptions& o, vmm::Vm v) : opt(o), vm(std::move(v)) {
        if (!opt.trace.points.empty())
            tracer.emplace(opt.trace);
    }
    ~Impl();

    Status map_memory(uint64_t size);
    // Back to the state create() leaves: zero memory, no memory slot, no
    // request history (a pooled Session about to be restored into).
    Status reset();
    bool slot_registered = false;
    bool cpuid_set = false; // KVM refuses a new CPUID once the vCPU has run
    Status create_vcpu();
    uint64_t tsc_hz() const;
    std::string where() const;
    void warn(const std::string& msg) const {
        if (opt.warn)
            opt.warn(msg);
    }

    // Outcomes. Guest stdout still buffered in the guest reaches the sink
    // when the guest is stopped (within the response limit), as it would
    // from a native process that crashed after a flush.
    RunOutcome outcome(RunOutcome::Kind k, std::string msg);
    RunOutcome guest_error(std::string msg);
    void flush_guest_stdout();

    // Hypercalls (hypercalls.cpp). Each returns an outcome when the run ends.
    using Step = Result<std::optional<RunOutcome>>;
    Step on_hypercall(uint16_t port, uint32_t gpa);
    Step on_input(uint64_t gpa, bool resuming);
    Step emit(uint64_t addr, uint64_t len, int fd);
    Status end_request();
    // Tracing: arms a sampled request's breakpoints at its delivery, and
    // takes them out (with the segments hit) at its end.
    Status trace_request_start();
    Status trace_request_end();
    // Run ends mid-request: tells the sink what is known of the request.
    void end_unfinished_request();
};

} // namespace presnap::runtime
