// Reading a snapshot file. SnapshotFile::open() maps the file read-only and
// validates it in the fixed order of docs/formats/snapshot.md, returning the
// first problem with the value it found. After that every accessor is plain
// data: sections, the vCPU blobs, the page runs. The monitor restores memory
// run by run: a raw run is mmap'ed MAP_PRIVATE from fd() at file_offset
// straight into guest memory; a zstd run is decompressed with read_run().
// A file may mix raw, zstd and zero runs: handle each run by its encoding.
// A file with a PAGE_STORE section (format 1.1, a library snapshot packed by
// snapgen) keeps its raw pages in a page store file in its own directory:
// its STORE runs are raw runs mapped from store_fd() instead; open() finds
// and validates the store, and stored_bytes()/read_run()/run_fd() hide the
// difference, so consumers that handle raw runs by PageRun::raw() and
// run_fd() need not know.
//
// A SnapshotFile is immutable after open(): its const methods may be called
// from several threads. It maps the whole file read-only; files are replaced
// by rename, never rewritten in place, so the mapping stays valid.
// A file truncated in place by someone else while open raises SIGBUS on
// access (presnap's writers never do that): snaprun turns it into an error
// of its own; a long-running server should hold sealed in-memory copies.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "presnap/error.h"
#include "presnap/snapshot/cpu_features.h"
#include "presnap/snapshot/format.h"
#include "presnap/snapshot/image.h"

namespace presnap::snapshot {

// How much of the page data open() checks. The header, the section table and
// every other section are always checked.
enum class DataCheck {
    kNone,    // trusted file on the restore path: do not touch the page data
    kSection, // the PAGE_DATA section checksum (one linear pass) and the
              // checksum of every STORE run (the store pages the file uses);
              // the default
    kFull,    // also every run's checksum, every zstd run decompressed, and
              // the page store's identity (a hash of all its pages)
};

struct OpenOptions {
    DataCheck data_check = DataCheck::kSection;
};

struct SectionInfo {
    std::uint32_t index = 0; // position in the section table
    std::uint32_t type = 0;  // SectionType, or a type this reader does not know
    std::uint32_t flags = 0;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
    std::uint64_t checksum = 0;
};

// One entry of the page index, decoded.
struct PageRun {
    std::uint64_t first_page = 0;
    std::uint32_t page_count = 0;
    PageEncoding encoding = PageEncoding::kRaw;
    std::uint64_t file_offset = 0; // raw: page-aligned, mmap-able from fd()
    std::uint64_t stored_size = 0;
    std::uint64_t checksum = 0;
    std::uint64_t bytes() const { return std::uint64_t{page_count} * kPageSize; }
    // Raw page bytes, mmap-able (from the file, or for kStore from the page
    // store): run_fd() at file_offset.
    bool raw() const { return encoding == PageEncoding::kRaw || encoding == PageEncoding::kStore; }
};

// The page store a file's STORE runs point into (the PAGE_STORE section).
struct PageStoreInfo {
    std::string name; // a file name in the snapshot's directory
    std::string path; // where it was opened: the snapshot's directory + name
    Hash128 id;       // its store_id
    std::uint64_t size = 0;
};

struct MemoryStats {
    std::uint64_t runs = 0;
    std::uint64_t raw_runs = 0;
    std::uint64_t zstd_runs = 0;
    std::uint64_t zero_runs = 0;
    std::uint64_t pages_stored = 0; // pages with data (raw or zstd)
    std::uint64_t zero_pages = 0;   // pages of zero runs
    std::uint64_t raw_bytes = 0;    // pages_stored * kPageSize
    std::uint64_t stored_bytes = 0; // bytes of page data in the file
    std::uint64_t store_runs = 0;   // runs in the page store
    std::uint64_t store_pages = 0;  // their pages (counted in pages_stored too)
};

class SnapshotFile {
  public:
    // Opens and validates `path`, and the page store it names, if any, in
    // the directory of `path`. Errors carry the path as their context.
    static Result<SnapshotFile> open(const std::string& path, const OpenOptions& options = {});
    // Validates bytes already in memory; the result owns them. A file with a
    // PAGE_STORE section is refused (no directory to find its store in).
    static Result<SnapshotFile> parse(std::vector<std::uint8_t> bytes,
                                      const OpenOptions& options = {});
    // Validates borrowed bytes, which must outlive the result (fuzzing).
    static Result<SnapshotFile> parse_view(std::span<const std::uint8_t> bytes,
                                           const OpenOptions& options = {});

    SnapshotFile(SnapshotFile&&) noexcept;
    SnapshotFile& operator=(SnapshotFile&&) noexcept;
    ~SnapshotFile();

    const std::string& path() const { return path_; }
    // The open file, for mmap of raw runs; -1 when parsed from memory. Owned
    // by this object.
    int fd() const { return fd_; }
    std::span<const std::uint8_t> bytes() const { return bytes_; }

    std::uint16_t major_version() const { return header_.major; }
    std::uint16_t minor_version() const { return header_.minor; }
    std::uint32_t flags() const { return header_.flags; }
    SnapshotKind kind() const { return static_cast<SnapshotKind>(header_.kind); }
    std::uint64_t guest_memory_size() const { return header_.guest_memory_size; }
    std::uint64_t guest_pages() const { return header_.guest_memory_size / kPageSize; }
    std::uint64_t file_size() const { return header_.file_size; }
    const FileHeader& header() const { return header_; }

    // Every entry of the section table, in table order (unknown types too).
    const std::vector<SectionInfo>& sections() const { return sections_; }
    // The bytes of the section of `type`, or nullopt when the file has none.
    std::optional<std::span<const std::uint8_t>> section(SectionType type) const;

    std::span<const std::uint8_t> regs() const;          // kRegsSize bytes
    std::span<const std::uint8_t> sregs() const;         // kSregsSize bytes
    std::span<const std::uint8_t> xsave() const;         // empty when not saved
    std::span<const std::uint8_t> xcrs() const;          // empty when not saved
    std::span<const std::uint8_t> monitor_state() const; // empty when not saved
    const std::vector<Msr>& msrs() const { return msrs_; }
    VcpuState vcpu_state() const; // copies of the above
    const CpuFeatures& cpu_features() const { return cpu_features_; }
    const std::optional<Hash128>& parent() const { return parent_; }
    const std::optional<ExecutableInfo>& executable() const { return executable_; }
    std::string_view metadata_json() const; // empty when not saved
    const std::vector<PageRange>& working_set() const { return working_set_; }

    const std::vector<PageRun>& page_runs() const { return runs_; }
    MemoryStats memory_stats() const;
    // The page store of a packed library snapshot; nullopt for a
    // self-contained file.
    const std::optional<PageStoreInfo>& page_store() const { return store_; }
    // The descriptor a raw run is mapped from: fd() for kRaw, the page
    // store's for kStore; -1 when there is none (parsed from memory).
    int run_fd(const PageRun& run) const;

    // The stored bytes of a run (raw or zstd inside bytes(); store runs
    // inside the page store's mapping).
    std::span<const std::uint8_t> stored_bytes(const PageRun& run) const;
    // Copies (raw) or decompresses (zstd) the run into `out`, which must be
    // exactly run.bytes() long, after checking the run's checksum; zero runs
    // fill `out` with zeros.
    Status read_run(const PageRun& run, std::span<std::uint8_t> out) const;
    // Checks every run's checksum and decompresses every zstd run.
    Status verify_page_data() const;

    // The file's identity: XXH3-128 of the header and the section table (which
    // hold the checksums of every section and every run). A diff records its
    // parent's content hash. Not a cryptographic hash.
    Hash128 content_hash() const { return content_hash_; }

    // A diff's parent must be `parent` (compare hashes, guest memory size).
    Status verify_parent(const SnapshotFile& parent) const;
    Status verify_parent(const Hash128& parent_hash) const;

    // check_cpu_features(cpu_features(), host).
    Status check_host(const CpuFeatures& host) const;

  private:
    struct Storage;
    SnapshotFile() = default;
    static Result<SnapshotFile> validate(std::unique_ptr<Storage> storage,
                                         std::span<const std::uint8_t> bytes,
                                         const OpenOptions& options, const std::string* dir);
    Status validate_header();
    Status validate_section_table();
    Status validate_sections(const OpenOptions& options);
    Status validate_page_index(const OpenOptions& options);
    Status open_page_store(const std::string& dir);
    Status check_run(const PageRun& run) const; // its checksum
    std::span<const std::uint8_t> span_of(SectionType type) const;

    std::unique_ptr<Storage> storage_;
    std::span<const std::uint8_t> bytes_;
    std::string path_;
    int fd_ = -1;
    FileHeader header_{};
    std::vector<SectionInfo> sections_;
    std::vector<std::int32_t> by_type_; // SectionType -> index in sections_, -1 if absent
    std::vector<Msr> msrs_;
    CpuFeatures cpu_features_;
    std::optional<Hash128> parent_;
    std::optional<ExecutableInfo> executable_;
    std::vector<PageRange> working_set_;
    std::vector<PageRun> runs_;
    std::optional<PageStoreInfo> store_;
    std::span<const std::uint8_t> store_bytes_; // the store's mapping
    Hash128 content_hash_;
};

} // namespace presnap::snapshot
