// A Session is one guest: a KVM VM, its vCPU and its memory, with its own
// deadline, limits and statistics. Many Sessions may live and run in one
// process at the same time, each on its own thread: nothing here uses
// process-wide state, installs a signal handler or changes a signal
// disposition. (A running vCPU is interrupted with a thread-directed signal
// that is blocked outside KVM_RUN and unblocked inside it through
// KVM_SET_SIGNAL_MASK, so it is never delivered to a handler.)
//
// A Session serves the request protocol of DESIGN.md section 3: run() hands
// requests from a RequestSource to the guest's read(0) and passes what the
// guest writes to a ResponseSink; when a request is used up and the guest
// reads again (the wait point), the response is complete. run() returns when
// the program exits or fails, or, with AtEof::kStop, at the wait point where
// the source runs dry: the Session then waits there and can be captured
// (snapshot/capture.h) or given more requests by another run().
//
// Guest failures (faults, timeouts, limits) are outcomes; an Error means the
// host could not do its part (no KVM, unreadable program ...).
#pragma once

#include "presnap/error.h"
#include "presnap/guest_abi.h"
#include "presnap/runtime/io.h"
#include "presnap/runtime/trace.h"
#include "presnap/snapshot/image.h"
#include "presnap/snapshot/monitor_state.h"
#include "presnap/vmm/guest_memory.h"
#include "presnap/vmm/kvm.h"
#include "presnap/vmm/x86_64.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace presnap::runtime {

struct Limits {
    double timeout_s = 10.0;             // per request, for start-up, and after end of input
    uint64_t max_request = 64ull << 20;  // bytes in one request line
    uint64_t max_response = 64ull << 20; // bytes in one response
};

// What a cold boot runs.
struct ProgramSpec {
    std::string program;           // host path of the static executable
    std::vector<std::string> args; // argv[1..]
    std::vector<std::string> env;
    std::optional<std::string> rootfs;
    uint64_t mem_size = 256ull << 20;
    bool deterministic = false; // virtual clock and fixed random seed
    uint64_t seed = 0;          // random seed with `deterministic`
};

struct SessionOptions {
    Limits limits;
    // KVM dirty logging, for a capture later. It costs a write-protection
    // fault on the first write to every page, so only when asked.
    bool track_dirty = false;
    // Restores only: random bytes from this seed instead of fresh ones from
    // the host, so that a restore repeats exactly (--deterministic). Clones
    // of one snapshot must otherwise never share random state.
    std::optional<uint64_t> restore_seed;
    // Receives warnings (unsupported syscalls, out of memory ...), one line each.
    std::function<void(const std::string&)> warn;
    // Which segments each request runs (runtime/trace.h): reported in
    // RequestInfo::segments of the traced requests.
    TraceOptions trace;
};

// What run() does when the source has no more requests.
enum class AtEof {
    kDeliver, // tell the program (read returns 0) and run it to its exit
    kStop,    // stop at the wait point; the Session stays there
};

struct RunOutcome {
    enum class Kind {
        kExited,     // the program exited: `status`
        kSignaled,   // killed (by itself, or a CPU exception): `signal`
        kTimeout,    // a request, the start-up or the run after EOF took too long
        kGuestError, // the guest broke a limit or the ABI (triple fault, bad pointer ...)
        kWaiting,    // AtEof::kStop: at the wait point after the last request
    };
    Kind kind = Kind::kExited;
    int status = 0;
    int signal = 0;
    std::string message;   // for everything but a plain exit or waiting: what happened, where
    uint64_t requests = 0; // requests delivered by this run()
};

// Exit status snaprun uses for an outcome (documented in snaprun(1)).
int exit_code_for(const RunOutcome& o);
inline constexpr int kExitGuestError = 123;
inline constexpr int kExitTimeout = 124;
inline constexpr int kExitHostError = 125;

// Timings and counters of a Session (microseconds). Bounded: nothing here
// grows with the number of requests; per-request figures go to the sink.
struct RunStats {
    double setup_us = 0;           // creation to the first KVM_RUN
    double first_exit_us = 0;      // creation to the first exit of any kind
    double startup_us = 0;         // creation to the first wait point
    double restore_us = 0;         // creation to ready (restores only)
    double vm_create_us = 0;       // of which creating the VM and its vCPU (a pool would save it)
    uint64_t prefetched_pages = 0; // pages brought in before the first request
    uint64_t requests = 0;         // requests completed (wait point reached after them)
    double first_request_us = 0;
    uint64_t first_request_faults = 0; // host minor faults during the first request
    uint64_t max_request_exits = 0;    // most exits in one request (1 = the wait point only)
    uint64_t exits = 0;
};

// Checks a snapshot's monitor state against the layout rules and the guest
// kernel header found in its memory, and returns the layout; a refusal
// names the field and its value. (Session::resume calls it; it is pure, so
// it can be fuzzed.)
Result<vmm::GuestLayout> validate_monitor_state(const snapshot::MonitorState& state,
                                                const psn_kernel_header& kernel);

class Session {
  public:
    // Boots `spec` cold; the first run() runs it to its first wait point.
    static Result<std::unique_ptr<Session>> boot(const ProgramSpec& spec,
                                                 const SessionOptions& options);
    // For the snapshot layer: a VM with `mem_size` bytes of zero memory and
    // a vCPU. Fill memory (memory().host_base() may be remapped), then
    // resume().
    static Result<std::unique_ptr<Session>> create(uint64_t mem_size,
                                                   const SessionOptions& options);
    ~Session();
    // Makes a used Session like a fresh create(): zero memory, no memory
    // slot, no requests, same VM and vCPU. A pool restores into it instead
    // of creating a VM (snapshot::restore_into()).
    Status reset();
    uint64_t memory_size() const;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Checks `state` and `vcpu` against the layout rules and the guest
    // kernel in memory, then makes the Session wait at the snapshot's wait
    // point: the next run() answers it with the first request. A refusal
    // names the field and its value.
    Status resume(const snapshot::MonitorState& state, const snapshot::VcpuState& vcpu);

    // Serves requests from `in` until the program exits or fails, or (kStop)
    // until `in` runs dry at a wait point. May be called again after
    // kWaiting; not after any other outcome.
    Result<RunOutcome> run(RequestSource& in, ResponseSink& out, AtEof at_eof);

    // Replaces the tracing options (before the first run() or at a wait
    // point); request sampling counts from the next request.
    Status set_trace(const TraceOptions& trace);

    // True between a kWaiting run() (or resume()) and the next run().
    bool at_wait_point() const;
    // The monitor's state at the current wait point (for capture).
    Result<snapshot::MonitorState> monitor_state() const;

    vmm::GuestMemory& memory();
    const vmm::GuestLayout& layout() const;
    vmm::Vm& vm();
    vmm::Vcpu& vcpu();
    const SessionOptions& options() const;
    bool deterministic() const;
    uint64_t restore_generation() const;
    uint64_t requests_served() const; // since the cold boot, over every snapshot

    // Snapshot lineage, kept by the snapshot layer: the executable, and the
    // content hash of the snapshot this Session's memory is a diff over
    // (none after a cold boot).
    std::optional<snapshot::ExecutableInfo> executable;
    std::optional<snapshot::Hash128> parent;

    const RunStats& stats() const;
    RunStats& stats();

    struct Impl;

  private:
    explicit Session(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace presnap::runtime
