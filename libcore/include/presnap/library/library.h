// Reading a snapshot library (docs/formats/library.md): the manifest, checked
// field by field, and the paths of its snapshot files. Everything that uses a
// library (snapselect, snapmerge, snaprun --serve) reads it through here, so a
// hostile manifest is refused in one place: file names are plain `sNNN.snap`
// names inside the directory (no path, no `..`), numbers are in range,
// segment ids are 16 hex digits, and the manifest's size is bounded.
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace presnap::library {

inline constexpr uint64_t kMaxManifestBytes = 64ull << 20;
inline constexpr size_t kMaxLibrarySnapshots = 65536;

struct Entry {
    std::string id;                 // the file's stem: "s001"
    std::string file;               // "s001.snap"
    std::string path;               // absolute: DIR/s001.snap
    std::vector<uint64_t> segments; // warmable segment ids its warm-up ran, map order
    std::vector<std::string> names; // their names, same order
    double weight = 0;
    double base_us = 0, snapshot_us = 0, benefit_us = 0;
    uint64_t pages = 0, bytes = 0, route_requests = 0;
    uint64_t pages_dirtied = 0, pages_touched = 0, warmup_exits = 0;
    double warmup_us = 0;
    uint64_t segments_saved = 0; // traced segments the held-out request no longer ran from it
    // The guest kernel's counters over the warm-up (absent: counted false).
    bool counted = false;
    int64_t brk_growth = 0, mmap_growth = 0;
    std::vector<std::pair<std::string, uint64_t>> syscalls; // by name, sorted
    std::string warmup;          // the request the snapshot was made after
    std::string held_out;        // the request its benefit was measured on
    std::string warmup_response; // the warm-up's response, byte for byte
};

struct Library {
    std::string dir;       // absolute, no trailing slash
    std::string program;   // as given to snapgen
    std::string base_path; // absolute: DIR/base.snap
    std::string map_path;  // absolute: DIR/map.pmap, the map it was built from ("" if absent)
    uint64_t base_bytes = 0, requests = 0, failed = 0;
    // Built with --deterministic: the timings (base_us ... warmup_exits) come
    // from DIR/timings.jsonl, the one file that is not byte-stable.
    bool deterministic = false;
    std::vector<Entry> snapshots; // manifest (rank) order

    // By id ("s001") or file name ("s001.snap"); nullptr when absent.
    const Entry* find(std::string_view id) const;
};

// Reads and checks DIR/manifest.jsonl. Errors name the manifest and line.
Result<Library> open_library(const std::string& dir);

} // namespace presnap::library
