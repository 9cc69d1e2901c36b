// The page store of a snapshot library (docs/formats/snapshot.md, "Page
// store files"): one file of pages beside the library's diff snapshots, in
// which each distinct page content is stored once. pack_snapshots() turns
// self-contained snapshots into thin ones (format 1.1: a PAGE_STORE section
// and STORE runs) plus the store; SnapshotFile::open() finds the store again
// and restores still map its pages MAP_PRIVATE, copy-on-write.
//
// self_contained_bytes() undoes a pack for one file: what a tool that copies
// a snapshot out of its library (snapmerge -o) must write.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "presnap/error.h"
#include "presnap/snapshot/image.h"

namespace presnap::snapshot {

class SnapshotFile;

// A store file's header, validated (magic, version, checksum, sizes,
// reserved bytes): its identity and how many pages follow it.
struct StoreHeaderInfo {
    Hash128 id;
    std::uint64_t page_count = 0;
    std::uint16_t minor = 0;
};
Result<StoreHeaderInfo> parse_store_header(std::span<const std::uint8_t> store);

// A store's identity: XXH3-128 of its page bytes (everything after the
// header page).
Hash128 store_content_id(std::span<const std::uint8_t> pages);

struct PackedFile {
    std::string file;                   // its name in the directory
    std::uint64_t standalone_bytes = 0; // its size before packing
    std::uint64_t bytes = 0;            // its size after: a thin file
    std::uint64_t pages = 0;            // its data pages, all now in the store
    std::uint64_t new_pages = 0;        // those it added to the store (the others were there)
};

struct PackReport {
    std::string store;             // the store's file name
    std::uint64_t store_bytes = 0; // its size
    std::uint64_t store_pages = 0; // distinct pages stored
    std::uint64_t pages = 0;       // data pages of all files (store_pages + duplicates)
    std::vector<PackedFile> files; // in the order given
};

// Packs the self-contained snapshots `files` (plain names in `dir`) into
// `dir/store` plus one thin file each, replaced in place (temporary name,
// fsync, rename). Pages go to the store in the order given, each file's in
// guest page order; a page whose bytes are already in the store (at any
// guest address, from any file) is stored once. The same inputs give the
// same bytes. Each thin file is checked to give back its input exactly
// (self_contained_bytes) before it replaces it. Files that already use a
// page store are refused.
Result<PackReport> pack_snapshots(const std::string& dir, std::span<const std::string> files,
                                  const std::string& store);

// The snapshot as a self-contained file: its own bytes when it uses no page
// store, otherwise the file re-serialized with its pages read from the store
// (byte for byte the file it was before pack_snapshots).
Result<std::vector<std::uint8_t>> self_contained_bytes(const SnapshotFile& f);

} // namespace presnap::snapshot
