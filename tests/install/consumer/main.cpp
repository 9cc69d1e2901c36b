// A program outside the presnap tree, built against an installed presnap
// (find_package or pkg-config) by tests/install/install_test.sh. It calls one
// function from each installed library so that a missing library, header or
// dependency of the static link fails the build, and prints what it got.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <presnap/analysis/pmap.h>              // presnap::pmap
#include <presnap/guest_abi.h>                  // header only, shared with the guest
#include <presnap/runtime/session.h>            // presnap::runtime
#include <presnap/size.h>                       // presnap::core
#include <presnap/snapshot/reader.h>            // presnap::snapshot
#include <presnap/snapshot/session_snapshots.h> // presnap::persist
#include <presnap/version.h>                    // generated

int main() {
    auto mem = presnap::parse_size("64M");
    // Eight bytes are too short for a snapshot: parsing must fail cleanly
    // (this links the reader, hence zstd and xxhash).
    auto snap = presnap::snapshot::SnapshotFile::parse(std::vector<std::uint8_t>(8, 0));
    auto map = presnap::analysis::parse_pmap_text("", "empty.pmap");
    presnap::runtime::RunOutcome outcome;
    outcome.kind = presnap::runtime::RunOutcome::Kind::kTimeout;

    std::uint64_t pages[] = {3, 4, 9};
    auto ranges = presnap::snapshot::to_ranges(pages);

    std::printf("version %s\n", presnap::kVersion);
    std::printf("abi %u\n", PSN_ABI_VERSION);
    std::printf("page runs %zu\n", ranges.size());
    std::printf("size %llu\n", static_cast<unsigned long long>(mem.value_or(0)));
    std::printf("8-byte snapshot %s\n", snap ? "accepted" : "rejected");
    std::printf("empty pmap %s\n", map ? "parsed" : "rejected");
    std::printf("timeout exit %d\n", presnap::runtime::exit_code_for(outcome));
    return mem == 64u << 20 && !snap ? 0 : 1;
}
