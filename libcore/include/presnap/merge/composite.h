// Composites (DESIGN.md section 7, docs/formats/composites.md): the base of
// a library plus a set of its specialized snapshots, as one diff snapshot
// over the base that snaprun restores like any other (its raw pages are
// mapped copy-on-write).
//
// make_composite() returns the base alone (no ids), the snapshot itself (one
// id), or, for several, a composite it merged page by page (page_merge.h)
// when every page merges and the vCPU and monitor states agree by rule, and
// otherwise a chain: the base restored, every input's warm-up request
// replayed in manifest order, the result captured. Merged and chained
// composites are kept in DIR/composites/ under a name derived from the
// base's content hash and the ids, and reused. A snapshot is merged whole
// or not at all.
//
// Use this from tools and servers; merge_snapshots() is the merge alone
// (no chain, no cache), for measurements and tests.
#pragma once

#include "presnap/error.h"
#include "presnap/library/library.h"
#include "presnap/library/scoped.h"
#include "presnap/runtime/session.h"
#include "presnap/snapshot/reader.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace presnap::merge {

// Which rules the merge applies (all by default; turned off one by one to
// measure what each rule buys).
struct MergeRules {
    bool presnap_state = true; // (a) boot page, guest kernel data, monitor state by rule
    bool dead_stack = true;    // (b) the stack below the saved stack pointer is dead
    bool scoped = true;        // (c) request-scoped bytes (sNNN.scoped) resolve to the base
    // Find every conflict (reports, --explain, measurements); false: stop
    // at the first page that conflicts, since the set is chained anyway.
    bool all_conflicts = false;
};

// Where a conflicting byte lives.
struct Conflict {
    uint64_t address = 0; // guest address of the first conflicting byte of a run
    uint64_t bytes = 0;   // conflicting bytes in the run (within one page)
    std::string region;   // "guest kernel", "boot info", "heap", "mmap", "stack", "elf:.data", ...
    std::string symbol;   // the ELF symbol holding it, "" if none (symbol+offset)
    std::string sides;    // the ids whose changes disagree, comma-separated
};

struct MergeReport {
    bool merged = false;
    std::string refusal;             // why not (state), "" when merged or page conflicts only
    std::vector<Conflict> conflicts; // page conflicts, address order
    uint64_t pages = 0;              // pages in the composite
    uint64_t pages_shared = 0;       // pages several inputs changed
    uint64_t input_bytes = 0;        // page bytes of the inputs read
    uint64_t dead_bytes = 0, scoped_bytes = 0, state_bytes = 0; // bytes a rule decided
    double us = 0;
};

struct CompositeOptions {
    bool verify =
        false; // replay each input's warm-up on the result; responses must equal the manifest's
    bool store = true;       // keep merged/chained composites in DIR/composites/ for reuse
    bool use_cache = true;   // reuse a stored composite when one exists
    bool allow_merge = true; // false: always chain (several ids)
    MergeRules rules;
    runtime::SessionOptions session; // for chains and verification
    // How much of the files' page data open() checks (reader.h): the base
    // is large, so a server that keeps the library trusted may pass kNone.
    snapshot::DataCheck data_check = snapshot::DataCheck::kSection;
};

struct Composite {
    std::vector<std::string> ids; // as in the library, manifest order
    enum class How { kBase, kSingle, kMerged, kChained } how = How::kBase;
    bool from_cache = false;
    std::vector<snapshot::SnapshotFile> chain; // base first; restore with snapshot::links_of(chain)
    std::string path;           // the composite's file in DIR/composites/ ("" for kBase/kSingle)
    MergeReport merge;          // the merge attempt (several ids, not from the cache)
    std::string verify_problem; // a merged composite that failed --verify, and why (then chained)
    double chain_us = 0;        // time to build the chain, when one was built
    double us = 0;              // the whole call
};

const char* how_name(Composite::How how);

// Checks a list of ids against the library: each known, no duplicates; the
// result is in manifest order. Errors name the offending id.
Result<std::vector<std::string>> resolve_ids(const library::Library& lib,
                                             std::span<const std::string> ids);

Result<Composite> make_composite(const library::Library& lib, std::span<const std::string> ids,
                                 const CompositeOptions& options);

// The merge alone: `inputs` (diffs over `base`, with their library ids and
// optional request-scoped masks) into a diff image's bytes over the base.
// Fails with an error only for invalid inputs (wrong parent ...); a merge
// that conflicts returns merged = false with the conflicts.
struct MergeInput {
    std::string id;
    const snapshot::SnapshotFile* file = nullptr;
    std::vector<std::pair<uint64_t, uint64_t>>
        scoped;                    // request-scoped [address, address+len) ranges
    uint32_t scoped_registers = 0; // request-scoped registers (library/scoped.h)
};
struct MergeOutput {
    MergeReport report;
    std::vector<uint8_t> snapshot; // the composite's file bytes when merged
};
Result<MergeOutput> merge_snapshots(const snapshot::SnapshotFile& base,
                                    std::span<const MergeInput> inputs, const MergeRules& rules);

// Writes the composite as one diff snapshot over the library's base, so that
// `snaprun DIR/base.snap PATH` restores it: the composite's file, the
// snapshot's own file (one id), or a diff without pages (no ids). Atomic
// for regular files; "-" is standard output.
Status write_composite(const Composite& composite, const std::string& path);

// Request-scoped bytes and registers of a library snapshot
// (docs/formats/composites.md, DIR/sNNN.scoped); empty when the file is absent.
Result<library::Scoped> read_scoped(const library::Entry& entry);

} // namespace presnap::merge
