// The serving mode (snaprun --serve, docs/serving.md): one process keeps a
// pool of VMs made in advance and answers every request from a fresh
// restore of a composite chosen for it.
//
// Per request: choose the library snapshots (a Chooser: a policy, or the
// library's model), take their composite from an in-memory cache (built on
// first use), take a VM from the pool (already restored with that
// composite and its working set prefetched when one is ready, otherwise
// restored now), deliver the request, return the response at the wait
// point, and give the VM back to be wiped off the request path. No state
// from one request reaches the next (every request gets a fresh restore,
// with fresh random bytes); a request that faults, times out or breaks a
// limit gets one error line (kErrorPrefix) and the server goes on. Memory is
// bounded: at most `pool` VMs and `cache_entries` composites, nothing per
// request.
#pragma once

#include "presnap/error.h"
#include "presnap/library/library.h"
#include "presnap/runtime/session.h"
#include "presnap/snapshot/reader.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace presnap::serve {

// The first bytes of every error response: `presnap-error: KIND: MESSAGE\n`,
// one line, KIND one of fault, timeout, limit, host (docs/serving.md).
inline constexpr std::string_view kErrorPrefix = "presnap-error: ";

// What a policy chose for a request.
struct Choice {
    std::vector<std::string> ids; // library ids, manifest order; empty: the base alone
    bool warm_all = false;        // the warm-all composite (every warm-up chained)
    // What serves the request while the composite of `ids` is not built yet
    // (merging can take a second): one library id ("" for the base), as
    // base + that snapshot, which costs nothing to make. None: the request
    // waits for the composite.
    std::optional<std::string> fallback;
};

// Chooses the snapshots of a request. Thread-safe (const).
class Chooser {
  public:
    virtual ~Chooser() = default;
    virtual Result<Choice> choose(std::string_view request) const = 0;
    // Choices whose composites are worth building before any request asks
    // (a choice that does not depend on the request, such as warm-all): the
    // server builds them behind the requests when it starts and after a
    // reload.
    virtual std::vector<Choice> likely() const { return {}; }
};

// Policies:
//   base       the base snapshot alone
//   all        the warm-all composite
//   fixed      the snapshots `ids` (comma or space separated) for every request
//   oracle     the snapshot whose warm-up has the request's route (its first
//              word), else the base: the benchmark's upper bound
//   predicted  the library's model (snapselect) and composites (snapmerge)
// `arg` is fixed's list. Errors: an unknown policy or id.
Result<std::unique_ptr<Chooser>> make_chooser(const library::Library& lib, std::string_view policy,
                                              std::string_view arg);

// How the pool's VMs are restored.
enum class Prefetch {
    kNone,   // restore on the request's path, pages fault in as the guest touches them
    kInline, // restore on the request's path and prefetch the working set there
    kAhead,  // restore and prefetch while waiting: a ready VM per recent composite
};

struct ServerOptions {
    std::string library_dir;
    std::string policy = "predicted";
    std::string policy_arg;
    size_t pool = 4;           // VMs (at most this many exist)
    size_t cache_entries = 64; // composites kept in memory
    // A composite that is not cached is built off the requests' path, and
    // requests that want it meanwhile are served from their choice's
    // fallback; false: the first request that wants it builds it and waits.
    bool build_behind = true;
    Prefetch prefetch = Prefetch::kAhead;
    runtime::SessionOptions session; // limits (timeout per request, sizes), warnings
    // Watch DIR/manifest.jsonl and reload when it changes (checked at most
    // every `watch_ms`); reload() can be called at any time too.
    bool watch = true;
    unsigned watch_ms = 200;
    // Receives what guests write to their standard error (default: dropped).
    std::function<void(std::string_view)> on_stderr;
    // History for the adaptive loop (docs/formats/history.md): requests 1,
    // N+1, 2N+1 ... of the server (N = trace_every, 0: none) are traced
    // against the map (default: the library's map.pmap) and each one's
    // record is handed to `history`, one line at a time, never two at once.
    uint64_t trace_every = 0;
    std::string map_path;
    bool trace_all = false;
    std::string error_prefix = "error"; // a response starting with it counts as failed
    std::function<void(const std::string&)> history;
};

// Per request, for --stats/--json and the benchmark.
struct RequestReport {
    uint64_t seq = 0;               // 1-based, over the server's life
    std::vector<std::string> ids;   // the composite's snapshots ("all" for warm-all)
    bool fallback = false;          // ids is the choice's fallback: its composite was not built
    bool cache_hit = false;         // the composite was in the cache
    bool ready = false;             // a VM already restored with it was taken
    double choose_us = 0;           // choice
    double composite_us = 0;        // cache lookup, or building the composite
    double wait_us = 0;             // waiting for a VM of the pool (all busy)
    double restore_us = 0;          // restore on the request's path (0 when ready)
    double prepared_restore_us = 0; // the restore done ahead, off the path (when ready)
    double request_us = 0;          // delivery to wait point
    double run_us = 0;              // the whole run of the VM for it (request_us and resuming)
    double total_us = 0;            // request received to response ready
    uint64_t prefetched_pages = 0;  // pages the restore prefetched
    uint64_t faults = 0;            // host page faults during the request
    uint64_t generation = 0;        // library version that served it (1, 2 ... per reload)
    std::string error;              // empty, or the error line's KIND
};

class Server {
  public:
    static Result<std::unique_ptr<Server>> open(const ServerOptions& options);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Answers one request (the line, without its newline): `response` gets
    // the response bytes, or one error line. Thread-safe: clients call it
    // from their own threads; at most `pool` requests run at once, the others
    // wait for a VM. An Error means the server itself cannot go on.
    Status handle(std::string_view request, std::string& response, RequestReport& report);
    // An error response for a request the server refused before running it
    // (e.g. a line over the request limit).
    static std::string error_line(std::string_view kind, std::string_view message);

    // Re-reads the library directory (it is replaced whole by snapgen) now;
    // requests in flight finish on the version they started with, requests
    // after it use the new one. On error the server keeps the version it
    // has and says why through options.session.warn.
    void reload();
    // The same, done by the refill thread within `watch_ms`: safe to call
    // from a signal handler (SIGHUP).
    void request_reload();
    uint64_t generation() const;
    // The history's first lines (header, segment declarations) when tracing.
    std::string history_preamble() const;
    const library::Library& library() const; // the current version (not thread-safe vs reload)

    struct Totals {
        uint64_t requests = 0, errors = 0, ready_hits = 0, cache_hits = 0, composites_built = 0,
                 vms_created = 0, reloads = 0, fallbacks = 0;
    };
    Totals totals() const;

    struct Impl;

  private:
    explicit Server(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace presnap::serve
