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
#include <string>
#include <vector>

namespace presnap::library {

struct BuildOptions {
    runtime::ProgramSpec program;
    runtime::SessionOptions session;
    std::string map_path;              // pea-analyze --elf of program.program
    std::vector<std::string> requests; // sample requests, one per line
    std::vector<std::string> warmup;   // run before the base snapshot
    size_t max_snapshots = 64;
    uint64_t max_bytes = 0;                           // page bytes of all diffs; 0: no limit
    int benefit_runs = 5;                             // runs from base and from snapshot, each
    std::string error_prefix = "error";               // a response starting so failed
    std::function<void(const std::string&)> progress; // one line per step
};

struct SnapshotEntry {
    std::string file;               // in the library directory
    std::string warmup;             // the request the snapshot was made after
    std::string held_out;           // the request its benefit was measured on
    std::vector<uint32_t> segments; // warmable segments the warm-up ran (map indices)
    double weight = 0;              // the largest weight among them
    double base_us = 0;             // held-out request from the base (median)
    double snapshot_us = 0;         // held-out request from base + this snapshot (median)
    uint64_t pages = 0;             // pages stored
    uint64_t bytes = 0;             // file size
    uint64_t requests_in_route = 0;
};

struct BuildReport {
    std::vector<SnapshotEntry> snapshots;
    std::vector<std::string> dropped; // routes with no snapshot, and why
    uint64_t requests_traced = 0, requests_failed = 0;
    uint64_t base_bytes = 0;
};

// Builds the library in `dir`: written beside it and swapped in at the end
// (renameat2 RENAME_EXCHANGE), so an interrupted build leaves the previous
// library intact; a second build of the same directory at the same time
// fails with a clear error (a lock on DIR.lock).
Result<BuildReport> build_library(const BuildOptions& options, const std::string& dir);

} // namespace presnap::library
