// The snapshot file's on-disk layout: constants, the fixed-size records and
// the enums stored in them. docs/formats/snapshot.md is the specification; this
// header is its mirror in code, and the static_asserts at the bottom are the
// one place where sizes and offsets are pinned. Use it to read or patch raw
// bytes (the reader, the fixture generator, the fuzz target); the monitor
// should use image.h and reader.h instead.
//
// All integers are little-endian. The structs below have no padding, so on a
// little-endian host they are copied to and from the file with memcpy.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <linux/kvm.h>

namespace presnap::snapshot {

// "\x89PSNP\r\n\x1a": the high-bit first byte marks the file as binary and
// catches 7-bit transfers, "PSNP" is readable in a hex dump, CR LF catches
// line-ending conversion and ^Z stops `type` on DOS (the PNG recipe).
inline constexpr std::array<std::uint8_t, 8> kMagic = {0x89, 'P', 'S', 'N', 'P', '\r', '\n', 0x1a};

inline constexpr std::uint16_t kMajorVersion = 1;
// The newest minor version this reader knows. Writers write the oldest minor
// that describes the file: 1 only for a file with a PAGE_STORE section (its
// pages live in a page store beside it), 0 otherwise, so that self-contained
// files stay byte-identical to what 1.0 writers made.
inline constexpr std::uint16_t kMinorVersion = 1;
inline constexpr std::uint16_t kPageStoreMinorVersion = 1;

inline constexpr std::uint32_t kHeaderSize = 128;
inline constexpr std::uint32_t kPageSize = 4096;
inline constexpr std::uint64_t kMaxGuestMemory = std::uint64_t{1} << 40; // 1 TiB
inline constexpr std::uint32_t kMaxSections = 64;
// A zstd run is decompressed as one unit into a caller's buffer: bound it.
inline constexpr std::uint32_t kMaxCompressedRunPages = 1024;
// Writers split zstd runs at this many pages (1 MiB).
inline constexpr std::uint32_t kDefaultCompressedRunPages = 256;
inline constexpr std::uint32_t kSectionAlignment = 8;
inline constexpr std::uint64_t kMaxPathLength = 4096;
inline constexpr std::uint64_t kMaxMetadataBytes = 1u << 20; // METADATA section

enum class SnapshotKind : std::uint32_t {
    kFull = 1, // all non-zero guest pages; absent pages are zero
    kDiff = 2, // pages changed since the parent; absent pages are the parent's
};

// Header flags. A reader ignores bits it does not know only in files whose
// minor version is newer than its own (see the compatibility promise).
inline constexpr std::uint32_t kFlagDeterministic = 1u << 0; // fixed clock and random seed
inline constexpr std::uint32_t kKnownHeaderFlags = kFlagDeterministic;

enum class SectionType : std::uint32_t {
    kRegs = 1,         // struct kvm_regs
    kSregs = 2,        // struct kvm_sregs
    kXsave = 3,        // struct kvm_xsave (KVM_GET_XSAVE or KVM_GET_XSAVE2 size)
    kXcrs = 4,         // struct kvm_xcrs
    kMsrs = 5,         // MsrEntry[]
    kMonitorState = 6, // opaque, versioned by the monitor
    kCpuFeatures = 7,  // CpuFeaturesHeader + CpuidWordEntry[]
    kParent = 8,       // ParentSection (diff snapshots only)
    kExecutable = 9,   // ExecutableHeader + path bytes
    kMetadata = 10,    // JSON text, UTF-8, one object
    kWorkingSet = 11,  // PageRangeEntry[], sorted, disjoint
    kPageIndex = 12,   // PageRunEntry[], sorted, disjoint
    kPageData = 13,    // run data addressed by the page index
    kPageStore = 14,   // PageStoreSection + name: the page store file STORE runs map (1.1)
};
inline constexpr std::uint32_t kLastKnownSection = 14;

// Section flags.
inline constexpr std::uint32_t kSectionMustUnderstand = 1u << 0; // unknown type: reject the file
inline constexpr std::uint32_t kKnownSectionFlags = kSectionMustUnderstand;

enum class PageEncoding : std::uint32_t {
    kRaw = 0,  // page_count * 4096 bytes at a 4096-aligned file offset (mmap-able)
    kZstd = 1, // one zstd frame whose content is page_count * 4096 bytes
    kZero = 2, // no data: the pages are zero (diffs: a page that became zero)
    // page_count * 4096 bytes at a 4096-aligned offset of the page store file
    // the PAGE_STORE section names (mmap-able from it); files of minor >= 1.
    kStore = 3,
};

// CPUID output registers, as stored in CpuidWordEntry::reg.
enum class CpuidReg : std::uint32_t { kEax = 0, kEbx = 1, kEcx = 2, kEdx = 3 };

struct FileHeader {
    std::uint8_t magic[8];
    std::uint16_t major;
    std::uint16_t minor;
    std::uint32_t header_size; // kHeaderSize
    std::uint32_t flags;
    std::uint32_t kind; // SnapshotKind
    std::uint64_t guest_memory_size;
    std::uint32_t page_size; // kPageSize
    std::uint32_t section_count;
    std::uint64_t section_table_offset;
    std::uint64_t file_size;
    std::uint64_t section_table_checksum; // XXH3-64 of the section table
    std::uint8_t reserved[56];
    std::uint64_t header_checksum; // XXH3-64 of bytes [0, 120)
};

struct SectionEntry {
    std::uint32_t type; // SectionType
    std::uint32_t flags;
    std::uint64_t offset;
    std::uint64_t size;
    std::uint64_t checksum; // XXH3-64 of the section's bytes
};

struct PageRunEntry {
    std::uint64_t first_page; // guest physical page number
    std::uint32_t page_count;
    std::uint32_t encoding; // PageEncoding
    std::uint64_t file_offset;
    std::uint64_t stored_size;
    std::uint64_t checksum; // XXH3-64 of the stored bytes; 0 for zero runs
};

struct MsrEntry {
    std::uint32_t index;
    std::uint32_t reserved;
    std::uint64_t value;
};

struct PageRangeEntry {
    std::uint64_t first_page;
    std::uint64_t page_count;
};

struct CpuFeaturesHeader {
    char vendor[12]; // CPUID leaf 0 ebx, edx, ecx
    std::uint32_t word_count;
    std::uint64_t xcr0; // XCR0 bits the snapshot relies on
};

struct CpuidWordEntry {
    std::uint32_t leaf;
    std::uint32_t subleaf;
    std::uint32_t reg; // CpuidReg
    std::uint32_t bits;
};

struct ParentSection {
    std::uint8_t content_hash[16]; // the parent's content hash, low 64 bits first
};

// PAGE_STORE: the page store file that the file's STORE runs point into.
// Followed by name_length bytes of file name (no NUL, no '/').
struct PageStoreSection {
    std::uint8_t store_id[16]; // the store header's store_id, low 64 bits first
    std::uint64_t store_size;  // the store file's size in bytes
    std::uint32_t name_length; // 1..kMaxStoreNameLength
    std::uint32_t reserved;    // zero
};
inline constexpr std::uint32_t kMaxStoreNameLength = 255;

// A page store file: a 4096-byte header page (these 128 bytes, then zeros),
// then pages of 4096 bytes. Several snapshots of one library map their raw
// pages from it; each distinct page content is stored once.
// "\x89PSPS\r\n\x1a": the snapshot magic's recipe, "PSPS" for presnap page store.
inline constexpr std::array<std::uint8_t, 8> kStoreMagic = {0x89, 'P',  'S',  'P',
                                                            'S',  '\r', '\n', 0x1a};
inline constexpr std::uint16_t kStoreMajorVersion = 1;
inline constexpr std::uint16_t kStoreMinorVersion = 0;
inline constexpr std::uint32_t kStoreHeaderSize = 128;
inline constexpr std::uint64_t kStoreDataOffset = kPageSize; // the first page
struct StoreHeader {
    std::uint8_t magic[8];
    std::uint16_t major;
    std::uint16_t minor;
    std::uint32_t header_size; // kStoreHeaderSize
    std::uint64_t page_count;  // pages after the header page
    std::uint64_t file_size;   // kStoreDataOffset + page_count * kPageSize
    std::uint8_t store_id[16]; // XXH3-128 of the page bytes [kStoreDataOffset, file_size)
    std::uint8_t reserved[72];
    std::uint64_t header_checksum; // XXH3-64 of bytes [0, 120)
};

struct ExecutableHeader {
    std::uint8_t content_hash[16]; // XXH3-128 of the executable's bytes, low 64 bits first
    std::uint64_t size;
    std::uint32_t path_length; // followed by that many bytes of path, no NUL
    std::uint32_t reserved;
};

// Sizes of the vCPU blobs the monitor hands over (x86-64 KVM ABI).
inline constexpr std::uint32_t kRegsSize = 144;
inline constexpr std::uint32_t kSregsSize = 312;
inline constexpr std::uint32_t kXcrsSize = 392;
inline constexpr std::uint32_t kXsaveMinSize = 4096;

// ---- The tripwires: every line here changes the snapshot file format. ----
#define PRESNAP_FORMAT_PIN(cond) static_assert(cond, "this changes the snapshot file format")
PRESNAP_FORMAT_PIN(std::endian::native == std::endian::little);
PRESNAP_FORMAT_PIN(sizeof(FileHeader) == kHeaderSize);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, major) == 8);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, minor) == 10);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, header_size) == 12);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, flags) == 16);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, kind) == 20);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, guest_memory_size) == 24);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, page_size) == 32);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, section_count) == 36);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, section_table_offset) == 40);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, file_size) == 48);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, section_table_checksum) == 56);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, reserved) == 64);
PRESNAP_FORMAT_PIN(offsetof(FileHeader, header_checksum) == 120);
PRESNAP_FORMAT_PIN(sizeof(SectionEntry) == 32);
PRESNAP_FORMAT_PIN(offsetof(SectionEntry, offset) == 8);
PRESNAP_FORMAT_PIN(offsetof(SectionEntry, size) == 16);
PRESNAP_FORMAT_PIN(offsetof(SectionEntry, checksum) == 24);
PRESNAP_FORMAT_PIN(sizeof(PageRunEntry) == 40);
PRESNAP_FORMAT_PIN(offsetof(PageRunEntry, page_count) == 8);
PRESNAP_FORMAT_PIN(offsetof(PageRunEntry, encoding) == 12);
PRESNAP_FORMAT_PIN(offsetof(PageRunEntry, file_offset) == 16);
PRESNAP_FORMAT_PIN(offsetof(PageRunEntry, stored_size) == 24);
PRESNAP_FORMAT_PIN(offsetof(PageRunEntry, checksum) == 32);
PRESNAP_FORMAT_PIN(sizeof(MsrEntry) == 16);
PRESNAP_FORMAT_PIN(sizeof(PageRangeEntry) == 16);
PRESNAP_FORMAT_PIN(sizeof(CpuFeaturesHeader) == 24);
PRESNAP_FORMAT_PIN(offsetof(CpuFeaturesHeader, word_count) == 12);
PRESNAP_FORMAT_PIN(offsetof(CpuFeaturesHeader, xcr0) == 16);
PRESNAP_FORMAT_PIN(sizeof(CpuidWordEntry) == 16);
PRESNAP_FORMAT_PIN(sizeof(ParentSection) == 16);
PRESNAP_FORMAT_PIN(sizeof(ExecutableHeader) == 32);
PRESNAP_FORMAT_PIN(offsetof(ExecutableHeader, size) == 16);
PRESNAP_FORMAT_PIN(offsetof(ExecutableHeader, path_length) == 24);
PRESNAP_FORMAT_PIN(sizeof(PageStoreSection) == 32);
PRESNAP_FORMAT_PIN(offsetof(PageStoreSection, store_size) == 16);
PRESNAP_FORMAT_PIN(offsetof(PageStoreSection, name_length) == 24);
PRESNAP_FORMAT_PIN(sizeof(StoreHeader) == kStoreHeaderSize);
PRESNAP_FORMAT_PIN(offsetof(StoreHeader, header_size) == 12);
PRESNAP_FORMAT_PIN(offsetof(StoreHeader, page_count) == 16);
PRESNAP_FORMAT_PIN(offsetof(StoreHeader, file_size) == 24);
PRESNAP_FORMAT_PIN(offsetof(StoreHeader, store_id) == 32);
PRESNAP_FORMAT_PIN(offsetof(StoreHeader, reserved) == 48);
PRESNAP_FORMAT_PIN(offsetof(StoreHeader, header_checksum) == 120);
PRESNAP_FORMAT_PIN(kStoreDataOffset == 4096);
PRESNAP_FORMAT_PIN(sizeof(kvm_regs) == kRegsSize);
PRESNAP_FORMAT_PIN(sizeof(kvm_sregs) == kSregsSize);
PRESNAP_FORMAT_PIN(sizeof(kvm_xcrs) == kXcrsSize);
PRESNAP_FORMAT_PIN(static_cast<std::uint32_t>(SectionType::kPageStore) == kLastKnownSection);
PRESNAP_FORMAT_PIN(kPageSize == 4096);
#undef PRESNAP_FORMAT_PIN

// "REGS", "PAGE_INDEX", ...; "UNKNOWN" for types this reader does not know.
std::string_view section_name(std::uint32_t type);
std::string_view encoding_name(std::uint32_t encoding);
std::string_view kind_name(std::uint32_t kind);

} // namespace presnap::snapshot
