// The in-memory model of a snapshot and the writer. The monitor fills a
// SnapshotImage at a wait point (vCPU blobs from KVM, its own state, the CPU
// features, the pages) and calls write_snapshot(), which writes the file
// atomically. Page data is borrowed, not copied: MemoryRun::data points into
// guest memory and must stay valid and unchanged until the write returns.
//
// Use reader.h to read a file back.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "presnap/error.h"
#include "presnap/snapshot/cpu_features.h"
#include "presnap/snapshot/format.h"

namespace presnap::snapshot {

// A 128-bit XXH3 hash. Stored in files low half first, both halves
// little-endian; printed as 32 hex digits, high half first.
struct Hash128 {
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    friend bool operator==(const Hash128&, const Hash128&) = default;
    std::string hex() const;
};

struct Msr {
    std::uint32_t index = 0;
    std::uint64_t value = 0;
    friend bool operator==(const Msr&, const Msr&) = default;
};

// The vCPU state at the wait point, as KVM hands it out. The bytes are opaque
// to the format; only their sizes are checked (kRegsSize, kSregsSize ...).
struct VcpuState {
    std::vector<std::uint8_t> regs;  // struct kvm_regs (KVM_GET_REGS), required
    std::vector<std::uint8_t> sregs; // struct kvm_sregs (KVM_GET_SREGS), required
    std::vector<std::uint8_t> xsave; // KVM_GET_XSAVE(2) bytes; empty: not saved
    std::vector<std::uint8_t> xcrs;  // struct kvm_xcrs (KVM_GET_XCRS); empty: not saved
    std::vector<Msr> msrs;           // EFER, FS/GS base, STAR/LSTAR/SFMASK, TSC ...
};

struct ExecutableInfo {
    Hash128 content_hash; // XXH3-128 of the file's bytes
    std::uint64_t size = 0;
    std::string path; // as the user named it; informational
    friend bool operator==(const ExecutableInfo&, const ExecutableInfo&) = default;
};

// Hashes an executable for ExecutableInfo (reads the whole file).
Result<ExecutableInfo> hash_executable(const std::string& path);

// Guest pages [first_page, first_page + page_count). A data run's bytes are
// `data` (page_count * kPageSize of them); a zero run (`zero`, diff snapshots)
// has no data and says the pages became zero.
//
// A run `in_store` (packed library snapshots, page_store.h) keeps its pages
// in the image's page store at `store_offset` instead of in the file; `data`
// still holds their bytes, for the run's checksum.
struct MemoryRun {
    std::uint64_t first_page = 0;
    std::uint64_t page_count = 0;
    bool zero = false;
    std::span<const std::uint8_t> data;
    bool in_store = false;
    std::uint64_t store_offset = 0;
};

// The page store an image's in_store runs point into (the PAGE_STORE section).
struct PageStoreRef {
    std::string name; // a plain file name in the snapshot's directory
    Hash128 id;       // its store_id
    std::uint64_t size = 0;
    friend bool operator==(const PageStoreRef&, const PageStoreRef&) = default;
};

struct PageRange {
    std::uint64_t first_page = 0;
    std::uint64_t page_count = 0;
    friend bool operator==(const PageRange&, const PageRange&) = default;
};

struct SnapshotImage {
    SnapshotKind kind = SnapshotKind::kFull;
    std::uint32_t flags = 0; // kFlagDeterministic ...
    std::uint64_t guest_memory_size = 0;
    VcpuState vcpu;
    std::vector<std::uint8_t> monitor_state; // opaque, owned and versioned by the monitor
    CpuFeatures cpu_features;                // what the snapshot relies on (host_cpu_features())
    std::optional<Hash128> parent;           // diff snapshots: the parent's content hash
    std::optional<ExecutableInfo> executable;
    std::string metadata_json;              // one JSON object, or empty
    std::vector<PageRange> working_set;     // pages touched, sorted and disjoint
    std::vector<MemoryRun> memory;          // sorted and disjoint; see add_memory()
    std::optional<PageStoreRef> page_store; // set when some runs are in_store
};

// What to do with all-zero pages when adding memory.
enum class ZeroPages {
    kSkip,   // full snapshots: absent pages are zero anyway
    kRecord, // diff snapshots: a dirtied page that is now zero must override the parent
};

// Appends the pages of `bytes` (guest memory starting at page `first_page`,
// a multiple of kPageSize long) to image.memory as runs of contiguous pages,
// splitting at zero pages. Runs must be added in ascending page order.
Status add_memory(SnapshotImage& image, std::uint64_t first_page,
                  std::span<const std::uint8_t> bytes, ZeroPages zero_pages);

// Appends the listed pages (sorted, unique page numbers, e.g. from the dirty
// log) of `guest_memory` (all of guest memory, from page 0), merging adjacent
// pages into runs.
Status add_pages(SnapshotImage& image, std::span<const std::uint64_t> pages,
                 std::span<const std::uint8_t> guest_memory, ZeroPages zero_pages);

struct WriteOptions {
    PageEncoding encoding = PageEncoding::kRaw; // kRaw (mmap-able) or kZstd (small)
    int zstd_level = 3;
    // zstd: runs are compressed in pieces of at most this many pages
    // (1..kMaxCompressedRunPages). Raw runs are never split.
    std::uint32_t compressed_run_pages = kDefaultCompressedRunPages;
};

struct WriteSummary {
    std::uint64_t file_size = 0;
    Hash128 content_hash; // what a diff made on top of this file records as its parent
    std::uint64_t runs = 0;
    std::uint64_t pages_stored = 0; // pages with data
    std::uint64_t zero_pages = 0;   // pages in zero runs
    std::uint64_t raw_bytes = 0;    // pages_stored * kPageSize
    std::uint64_t stored_bytes = 0; // bytes of page data in the file
    std::uint64_t store_pages = 0;  // pages in the page store (in pages_stored too)
};

// Checks the image for what the format forbids (kInvalidArgument).
Status validate_image(const SnapshotImage& image, const WriteOptions& options = {});

// Writes the snapshot to `path` atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory. On any error the temporary
// file is removed and `path` is untouched. The same image and options always
// give the same bytes. "-" is standard output, and an existing special file
// (/dev/null, a FIFO) is written in place: both get the bytes built in
// memory, in order.
Result<WriteSummary> write_snapshot(const std::string& path, const SnapshotImage& image,
                                    const WriteOptions& options = {});

// The same bytes, in memory (tests, fixtures, fuzz seeds).
Result<std::vector<std::uint8_t>> serialize_snapshot(const SnapshotImage& image,
                                                     const WriteOptions& options = {},
                                                     WriteSummary* summary = nullptr);

} // namespace presnap::snapshot
