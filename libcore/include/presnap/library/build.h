// snapgen's library mode: from a program, its probability map and sample
// requests to a library of specialised snapshots (docs/formats/library.md).
//
// The base snapshot is taken at the program's first wait point (after
// optional warm-up requests). Every sample request is then traced from the
// base, each in a fresh restore, to learn which warmable segments it runs,
// whether it succeeded and how long it takes from the base. Requests that
// ran the same set of warmable segments form a route; routes are ranked by
// expected saving (weight x measured cost) and, within the budget, each gets
// one diff snapshot made after its cheapest successful request. Each
// snapshot's benefit is measured on a held-out request of the same route,
// from the base and from the snapshot (medians); one that does not help is
// dropped and said so. A warm-up is chosen because the trace shows it ran the
// segments, never by its first word: a malformed request that took the error
// path warms nothing.
#pragma once

#include "presnap/error.h"
#include "presnap/runtime/session.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace presnap::library {

// Where a build is, for a progress bar: the phase, its items done of total,
// and the snapshots kept so far.
struct BuildProgress {
    enum class Phase { kBase, kTrace, kSnapshots, kWrite } phase = Phase::kBase;
    size_t done = 0, total = 0;
    size_t snapshots = 0;
};

struct BuildOptions {
    runtime::ProgramSpec program;
    runtime::SessionOptions session;
    std::string map_path;              // pea-analyze --elf of program.program
    std::vector<std::string> requests; // sample requests, one per line
    std::vector<std::string> warmup;   // run before the base snapshot
    size_t max_snapshots = 64;
    uint64_t max_bytes = 0;                           // page bytes of all diffs; 0: no limit
    int benefit_runs = 5;                             // runs from base and from snapshot, each
    int jobs = 1;                                     // Sessions run in parallel threads
    std::string error_prefix = "error";               // a response starting so failed
    std::function<void(const std::string&)> progress; // one line per step
    std::function<void(const BuildProgress&)> on_progress;
    // Every choice without host timings: routes ranked by weight and segment
    // set, the warm-up is the route's first successful sample in file order,
    // and a snapshot is kept when the held-out request, traced from it, no
    // longer runs some of the segments it runs from the base. Timings go to
    // DIR/timings.jsonl, which is not byte-stable; every other file is, given
    // a deterministic guest (program.deterministic and a restore seed).
    bool deterministic = false;
    // Build one shard: the routes of rank k with k % shards == shard - 1
    // (1-based shard). 0 shards: the whole library. A shard directory holds
    // base.snap, map.pmap, route-K.snap and shard.jsonl, and is input to
    // combine_shards only. Needs `deterministic`.
    unsigned shard = 0, shards = 0;
    // Read the sample requests and their traces from this history file
    // (docs/formats/history.md) instead of tracing `requests` from the base.
    std::string history_path;
};

struct SnapshotEntry {
    std::string file;                  // in the library directory
    std::vector<uint64_t> segment_ids; // the map's ids of `segments`
    std::vector<std::string> names;    // and their names
    std::string warmup;                // the request the snapshot was made after
    std::string held_out;              // the request its benefit was measured on
    std::vector<uint32_t> segments;    // warmable segments the warm-up ran (map indices)
    double weight = 0;                 // the largest weight among them
    double base_us = 0;                // held-out request from the base (median)
    double snapshot_us = 0;            // held-out request from base + this snapshot (median)
    uint64_t pages = 0;                // pages stored
    uint64_t bytes = 0;                // its size as a standalone file (what --max-bytes counts)
    // In a library (packed, its pages in the page store): the thin file's
    // size, and the store bytes its pages added (pages an earlier snapshot
    // stored already not counted). 0 in a shard.
    uint64_t file_bytes = 0;
    uint64_t store_added_bytes = 0;
    uint64_t requests_in_route = 0;
    // Monitored while it was made: the warm-up's response (for later
    // verification), latency and exits, pages it dirtied, pages the
    // held-out request touched (the recorded working set).
    std::string warmup_response;
    double warmup_us = 0;
    uint64_t warmup_exits = 0;
    uint64_t pages_dirtied = 0;
    uint64_t pages_touched = 0;
    // The held-out request traced from the base and from the snapshot: how
    // many traced segments it ran from the base and no longer ran from the
    // snapshot (the deterministic benefit).
    uint64_t segments_saved = 0;
    // The guest kernel's counters (guest_abi.h, psn_stats) over the
    // warm-up: how far the program break moved, the bytes mmap'd less those
    // munmap'd, and the syscalls by name, in number order. `counted` is
    // false for a guest kernel without counters.
    bool counted = false;
    int64_t brk_growth = 0, mmap_growth = 0;
    std::vector<std::pair<std::string, uint64_t>> syscalls;
};

struct BuildReport {
    std::vector<SnapshotEntry> snapshots;
    std::vector<std::string> dropped; // routes with no snapshot, and why
    uint64_t requests_traced = 0, requests_failed = 0;
    uint64_t base_bytes = 0;
    uint64_t routes = 0;          // distinct routes among the successful samples
    uint64_t history_skipped = 0; // history records that could not be used
    bool shard = false;           // a shard was written, not a library
    // A library's page store (kStoreName; empty without snapshots or in a
    // shard), and the library's size against its snapshots as standalone
    // files: base + snapshots' `bytes` against base + thin files + store.
    std::string store;
    uint64_t store_bytes = 0, store_pages = 0;
    uint64_t standalone_bytes = 0, library_bytes = 0;
};

// The page store of a library (docs/formats/library.md).
inline constexpr const char* kStoreName = "pages.store";

// Builds the library in `dir`: written beside it and swapped in at the end
// (renameat2 RENAME_EXCHANGE), so an interrupted build leaves the previous
// library intact; a second build of the same directory at the same time
// fails with a clear error (a lock on DIR.lock).
Result<BuildReport> build_library(const BuildOptions& options, const std::string& dir);

// Joins the shards of a deterministic sharded build (build_library with
// shard 1..n of n) into the library `dir`, byte-identical to the one a
// single deterministic build writes (timings.jsonl aside). The shards must
// be of one program, map, base snapshot, plan and budget, each 1..n present
// once. Written under the same lock and swapped in the same way as a build.
Result<BuildReport> combine_shards(std::span<const std::string> shards, const std::string& dir,
                                   const std::function<void(const std::string&)>& progress = {});

} // namespace presnap::library
