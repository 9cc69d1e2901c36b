// The monitor: boots a static Linux program in a KVM guest and serves the
// request protocol of DESIGN.md section 3 over file descriptors. Requests are
// lines on `in_fd`; the guest's read(0) gets the current request; when the
// request is used up and the guest reads again (the wait point), what it wrote
// to fd 1 since is the response, written to `out_fd`. fd 2 passes through.
//
// Guest failures (faults, timeouts, limits) are outcomes, not Errors: an Error
// means the host could not do its part (no KVM, unreadable program ...).
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace presnap::vmm {

// Where and how to write a snapshot when the requests run out (see
// MonitorConfig::snapshot_at_eof).
struct SnapshotPlan {
    std::string path;      // empty: write nothing, only report the pages touched
    bool compress = false; // zstd page data (smaller) instead of raw (mmap-able)
};

struct MonitorConfig {
    // What to run: a program booted cold, or snapshot files restored (the
    // first a full snapshot, each next one a diff over the one before).
    std::string program; // host path of the static executable
    std::vector<std::string> restore;
    std::vector<std::string> args; // argv[1..]
    std::vector<std::string> env;
    std::optional<std::string> rootfs;
    uint64_t mem_size = 256ull << 20;
    double timeout_s = 10.0;             // per request (and for start-up), wall time
    uint64_t max_request = 64ull << 20;  // bytes in one request line
    uint64_t max_response = 64ull << 20; // bytes in one response
    bool deterministic = false;          // virtual clock and fixed random seed
    uint64_t seed = 0;                   // random seed with `deterministic`
    int in_fd = 0, out_fd = 1, err_fd = 2;
    // When set, the run does not deliver end of input to the program: at the
    // wait point where the requests run out it writes a snapshot (a full one
    // after a cold boot, a diff over the last restored file otherwise) and
    // stops with RunOutcome::Kind::kSnapshotted.
    std::optional<SnapshotPlan> snapshot_at_eof;
    // On restore, bring the snapshots' recorded working set into memory in
    // bulk before the first request (MADV_POPULATE_WRITE). Off by default:
    // it saves about as much in the request as it costs in the restore
    // (docs/measurements.md).
    bool prefetch = false;
    // On restore, also check every page-data checksum (a pass over the whole
    // file). The structure is always validated; page data is guest memory,
    // which cannot harm the host, so this checks integrity, not safety.
    bool verify_data = false;
    // Receives warnings (unsupported syscalls, out of memory ...), one line each.
    std::function<void(const std::string&)> warn;
};

// How a run ended.
struct RunOutcome {
    enum class Kind {
        kExited,      // the program exited: `status`
        kSignaled,    // the program was killed (by itself, or a CPU exception): `signal`
        kTimeout,     // a request ran longer than the timeout
        kGuestError,  // the guest broke a limit or the ABI (triple fault, bad pointer ...)
        kSnapshotted, // snapshot_at_eof: the snapshot was written
    };
    Kind kind = Kind::kExited;
    int status = 0;
    int signal = 0;
    std::string message;   // for everything but a plain exit: what happened, where
    uint64_t requests = 0; // requests delivered
    // kSnapshotted: what was written.
    uint64_t snapshot_bytes = 0;
    uint64_t snapshot_pages = 0;   // pages with data in the file
    uint64_t pages_dirtied = 0;    // since boot or restore (guest and host writes)
    uint64_t pages_touched = 0;    // the working set recorded in the file
    std::vector<uint64_t> touched; // those pages, sorted
};

// Timings of one run, for --stats and the benchmarks (microseconds).
struct RunStats {
    double setup_us = 0;                 // monitor start to the first KVM_RUN
    double first_exit_us = 0;            // monitor start to the first exit of any kind
    double startup_us = 0;               // monitor start to the first wait point
    std::vector<double> request_us;      // delivery to wait point, per request
    std::vector<uint64_t> request_exits; // exits per request (1 = just the wait point)
    uint64_t exits = 0;
    double restore_us = 0;         // monitor start to ready (restores only)
    double vm_create_us = 0;       // of which creating the VM and its vCPU (a pool would save it)
    uint64_t prefetched_pages = 0; // pages brought in before the first request
    uint64_t first_request_faults = 0; // host minor faults during the first request
};

class Monitor {
  public:
    static Result<std::unique_ptr<Monitor>> boot(const MonitorConfig& cfg);
    ~Monitor();

    // Serves requests until EOF, exit, or a guest failure.
    Result<RunOutcome> serve();
    const RunStats& stats() const { return stats_; }

  private:
    struct Impl;
    explicit Monitor(std::unique_ptr<Impl> impl);
    static Result<std::unique_ptr<Monitor>> restore(const MonitorConfig& cfg, int64_t t0,
                                                    uint64_t tsc0, int64_t raw0);
    std::unique_ptr<Impl> impl_;
    RunStats stats_;
};

// Exit status snaprun uses for an outcome (documented in snaprun(1)).
int exit_code_for(const RunOutcome& o);
inline constexpr int kExitGuestError = 123;
inline constexpr int kExitTimeout = 124;
inline constexpr int kExitHostError = 125;

// Name of an x86-64 Linux syscall number ("syscall_N" when unknown).
std::string syscall_name(uint64_t nr);

} // namespace presnap::vmm
