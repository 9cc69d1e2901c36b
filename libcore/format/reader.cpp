// The snapshot reader. Validation runs in the order docs/formats/snapshot.md
// gives ("Validation order"); each step trusts only what the steps before it
// checked, and each failure is its own message carrying the value found.
#include "presnap/snapshot/reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "internal.h"
#include "presnap/snapshot/describe.h"
#include "presnap/snapshot/page_store.h"

namespace presnap::snapshot {

using detail::checksum64;

struct SnapshotFile::Storage {
    int fd = -1;
    void* map = nullptr;
    std::size_t map_size = 0;
    std::vector<std::uint8_t> owned;
    // The page store (PAGE_STORE): its descriptor and read-only mapping.
    int store_fd = -1;
    void* store_map = nullptr;
    std::size_t store_map_size = 0;

    Storage() = default;
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage() {
        if (map)
            ::munmap(map, map_size);
        if (fd >= 0)
            ::close(fd);
        if (store_map)
            ::munmap(store_map, store_map_size);
        if (store_fd >= 0)
            ::close(store_fd);
    }
};

namespace {

// Fuzzing builds accept wrong checksums so that the fuzzer gets past them to
// the structure behind; everything else is validated as usual.
bool checksum_matches(std::uint64_t stored, std::uint64_t computed) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    (void)stored;
    (void)computed;
    return true;
#else
    return stored == computed;
#endif
}

std::string hex_bytes(std::span<const std::uint8_t> bytes) {
    std::string out;
    for (std::size_t i = 0; i < bytes.size(); ++i)
        out += fmt::format("{}{:02x}", i ? " " : "", bytes[i]);
    return out;
}

std::string section_label(const SectionInfo& s) {
    return fmt::format("section {} ({})", s.index, section_name(s.type));
}

// Whether [offset, offset + size) lies inside [0, limit), without overflow.
bool within(std::uint64_t offset, std::uint64_t size, std::uint64_t limit) {
    return offset <= limit && size <= limit - offset;
}

// "page 5" or "pages 5 to 9".
std::string pages_label(std::uint64_t first, std::uint64_t count) {
    if (count == 1)
        return fmt::format("page {}", first);
    return fmt::format("pages {} to {}", first, first + count - 1);
}

bool is_known_type(std::uint32_t type) {
    return type >= 1 && type <= kLastKnownSection;
}

std::string directory_of(const std::string& path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    if (slash == 0)
        return "/";
    return path.substr(0, slash);
}

// The directory a page store named by a snapshot is looked up in: that of
// the file `fd` (opened by `path`) is, symbolic links followed. It is read
// back from /proc/self/fd, so it names the file that was opened even if the
// links have changed since; `path` is used where /proc is not mounted.
std::string store_directory(int fd, const std::string& path) {
    char link[4096];
    const std::string proc = fmt::format("/proc/self/fd/{}", fd);
    const ssize_t n = ::readlink(proc.c_str(), link, sizeof link);
    if (n > 0 && static_cast<std::size_t>(n) < sizeof link && link[0] == '/')
        return directory_of(std::string(link, static_cast<std::size_t>(n)));
    return directory_of(path);
}

// A PAGE_STORE name: a plain file name, printable, no path.
bool is_plain_name(std::string_view name) {
    if (name.empty() || name == "." || name == "..")
        return false;
    for (char c : name)
        if (c == '/' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return false;
    return true;
}

} // namespace

SnapshotFile::SnapshotFile(SnapshotFile&&) noexcept = default;
SnapshotFile& SnapshotFile::operator=(SnapshotFile&&) noexcept = default;
SnapshotFile::~SnapshotFile() = default;

Result<SnapshotFile> SnapshotFile::open(const std::string& path, const OpenOptions& options) {
    auto storage = std::make_unique<Storage>();
    storage->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (storage->fd < 0)
        return std::unexpected(
            make_errno_error(Errc::kIo, errno, "open").error().with_context(path));
    struct stat st {};
    if (::fstat(storage->fd, &st) != 0)
        return std::unexpected(
            make_errno_error(Errc::kIo, errno, "stat").error().with_context(path));
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISSOCK(st.st_mode)) {
        // A pipe (`<(cat x.snap)`, a FIFO) cannot be mapped: read it whole
        // into memory. Raw runs are then copied at restore, not mapped.
        std::vector<std::uint8_t> bytes;
        std::uint8_t buf[1 << 16];
        for (;;) {
            ssize_t n = ::read(storage->fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return std::unexpected(
                    make_errno_error(Errc::kIo, errno, "read").error().with_context(path));
            if (n == 0)
                break;
            bytes.insert(bytes.end(), buf, buf + n);
        }
        auto owned = std::make_unique<Storage>();
        owned->owned = std::move(bytes);
        auto span = std::span<const std::uint8_t>(owned->owned);
        // A stream has no directory: a thin file read from one is refused.
        auto file = validate(std::move(owned), span, options, nullptr);
        if (!file)
            return std::unexpected(file.error().with_context(path));
        file->path_ = path;
        return file;
    }
    if (!S_ISREG(st.st_mode))
        return std::unexpected(
            Error{Errc::kIo, "not a regular file (expected a snapshot file)", path});
    if (st.st_size > 0) {
        storage->map_size = static_cast<std::size_t>(st.st_size);
        void* map = ::mmap(nullptr, storage->map_size, PROT_READ, MAP_PRIVATE, storage->fd, 0);
        if (map == MAP_FAILED)
            return std::unexpected(
                make_errno_error(Errc::kIo, errno, "mmap").error().with_context(path));
        storage->map = map;
    }
    auto span = std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(storage->map),
                                              storage->map_size);
    const int fd = storage->fd;
    const std::string dir = store_directory(fd, path);
    auto file = validate(std::move(storage), span, options, &dir);
    if (!file)
        return std::unexpected(file.error().with_context(path));
    file->path_ = path;
    file->fd_ = fd;
    return file;
}

Result<SnapshotFile> SnapshotFile::parse(std::vector<std::uint8_t> bytes,
                                         const OpenOptions& options) {
    auto storage = std::make_unique<Storage>();
    storage->owned = std::move(bytes);
    auto span = std::span<const std::uint8_t>(storage->owned);
    return validate(std::move(storage), span, options, nullptr);
}

Result<SnapshotFile> SnapshotFile::parse_view(std::span<const std::uint8_t> bytes,
                                              const OpenOptions& options) {
    return validate(nullptr, bytes, options, nullptr);
}

Result<SnapshotFile> SnapshotFile::validate(std::unique_ptr<Storage> storage,
                                            std::span<const std::uint8_t> bytes,
                                            const OpenOptions& options, const std::string* dir) {
    SnapshotFile file;
    file.storage_ = std::move(storage);
    file.bytes_ = bytes;
    if (auto s = file.validate_header(); !s)
        return std::unexpected(s.error());
    if (auto s = file.validate_section_table(); !s)
        return std::unexpected(s.error());
    if (auto s = file.validate_sections(options); !s)
        return std::unexpected(s.error());
    if (auto s = file.validate_page_index(options); !s)
        return std::unexpected(s.error());
    if (file.store_) {
        if (!dir)
            return make_error(Errc::kFormat,
                              "page store {} cannot be found (the snapshot was read from memory "
                              "or a pipe, which has no directory: open the library's file)",
                              file.store_->name);
        if (!file.storage_)
            file.storage_ = std::make_unique<Storage>();
        if (auto s = file.open_page_store(*dir); !s)
            return std::unexpected(s.error());
    }
    if (options.data_check == DataCheck::kFull) {
        if (auto s = file.verify_page_data(); !s)
            return std::unexpected(s.error());
    } else if (options.data_check == DataCheck::kSection && file.store_) {
        // The pages this file uses from the store: what the PAGE_DATA
        // section's checksum covers in a self-contained file.
        for (const PageRun& run : file.runs_)
            if (run.encoding == PageEncoding::kStore)
                if (auto s = file.check_run(run); !s)
                    return std::unexpected(s.error());
    }
    file.content_hash_ = detail::content_hash_of(
        file.bytes_.first(kHeaderSize),
        file.bytes_.subspan(file.header_.section_table_offset,
                            std::size_t{file.header_.section_count} * sizeof(SectionEntry)));
    return file;
}

// Steps 1-5: length, magic, version, header checksum, header fields.
Status SnapshotFile::validate_header() {
    if (bytes_.size() < kHeaderSize)
        return make_error(Errc::kFormat,
                          "file too short for a snapshot header (expected at least {} bytes, "
                          "found {})",
                          kHeaderSize, bytes_.size());
    if (std::equal(kStoreMagic.begin(), kStoreMagic.end(), bytes_.begin()))
        return make_error(Errc::kFormat,
                          "a page store, not a snapshot (expected magic {}, found the page store's "
                          "{}: a library's snapshots map their pages from it)",
                          hex_bytes(kMagic), hex_bytes(kStoreMagic));
    if (!std::equal(kMagic.begin(), kMagic.end(), bytes_.begin()))
        return make_error(Errc::kFormat, "bad magic (expected {}, found {})", hex_bytes(kMagic),
                          hex_bytes(bytes_.first(kMagic.size())));
    header_ = detail::load<FileHeader>(bytes_);
    if (header_.major != kMajorVersion)
        return make_error(Errc::kFormat, "unsupported major version (expected {}, found {}.{})",
                          kMajorVersion, header_.major, header_.minor);
    const std::uint64_t computed = checksum64(bytes_.first(detail::kHeaderChecksummedBytes));
    if (!checksum_matches(header_.header_checksum, computed))
        return make_error(Errc::kFormat,
                          "header checksum mismatch (stored {:016x}, computed {:016x})",
                          header_.header_checksum, computed);
    if (header_.file_size != bytes_.size())
        return make_error(Errc::kFormat,
                          "file size mismatch (expected {} bytes from the header, found {})",
                          header_.file_size, bytes_.size());
    if (header_.header_size != kHeaderSize)
        return make_error(Errc::kFormat, "bad header size (expected {}, found {})", kHeaderSize,
                          header_.header_size);
    if (header_.page_size != kPageSize)
        return make_error(Errc::kFormat, "unsupported page size (expected {}, found {})", kPageSize,
                          header_.page_size);
    if (header_.kind != static_cast<std::uint32_t>(SnapshotKind::kFull) &&
        header_.kind != static_cast<std::uint32_t>(SnapshotKind::kDiff))
        return make_error(Errc::kFormat,
                          "unknown snapshot kind (expected 1 (full) or 2 (diff), found {})",
                          header_.kind);
    if (header_.guest_memory_size == 0 || header_.guest_memory_size % kPageSize != 0 ||
        header_.guest_memory_size > kMaxGuestMemory)
        return make_error(Errc::kFormat,
                          "bad guest memory size (expected a non-zero multiple of {} up to {}, "
                          "found {})",
                          kPageSize, kMaxGuestMemory, header_.guest_memory_size);
    // A newer minor version may give meaning to flags and reserved bytes that
    // older readers can safely ignore; in files of our minor or older they
    // must be zero.
    if (header_.minor <= kMinorVersion) {
        if ((header_.flags & ~kKnownHeaderFlags) != 0)
            return make_error(Errc::kFormat,
                              "unknown header flags (expected bits of {:#x}, found {:#x})",
                              kKnownHeaderFlags, header_.flags);
        for (std::size_t i = 0; i < sizeof(header_.reserved); ++i)
            if (header_.reserved[i] != 0)
                return make_error(Errc::kFormat,
                                  "reserved header byte not zero (expected 0 at offset {}, found "
                                  "{:#04x})",
                                  offsetof(FileHeader, reserved) + i, header_.reserved[i]);
    }
    return {};
}

// Steps 6-9: table bounds, table checksum, entries (flags, types, bounds,
// alignment, overlap), required sections.
Status SnapshotFile::validate_section_table() {
    const std::uint64_t count = header_.section_count;
    const std::uint64_t offset = header_.section_table_offset;
    if (count > kMaxSections)
        return make_error(Errc::kFormat, "too many sections (expected at most {}, found {})",
                          kMaxSections, count);
    const std::uint64_t table_size = count * sizeof(SectionEntry);
    if (offset < kHeaderSize || offset % kSectionAlignment != 0 ||
        !within(offset, table_size, bytes_.size()))
        return make_error(Errc::kFormat,
                          "section table out of bounds (expected {} entries of {} bytes at an "
                          "8-aligned offset between {} and the end of the file at {}, found "
                          "offset {})",
                          count, sizeof(SectionEntry), kHeaderSize, bytes_.size(), offset);
    auto table = bytes_.subspan(offset, table_size);
    const std::uint64_t computed = checksum64(table);
    if (!checksum_matches(header_.section_table_checksum, computed))
        return make_error(Errc::kFormat,
                          "section table checksum mismatch (stored {:016x}, computed {:016x})",
                          header_.section_table_checksum, computed);

    by_type_.assign(kLastKnownSection + 1, -1);
    for (std::uint32_t i = 0; i < count; ++i) {
        auto e = detail::load<SectionEntry>(table, i * sizeof(SectionEntry));
        SectionInfo s{i, e.type, e.flags, e.offset, e.size, e.checksum};
        sections_.push_back(s);
        if (header_.minor <= kMinorVersion && (e.flags & ~kKnownSectionFlags) != 0)
            return make_error(Errc::kFormat,
                              "{} has unknown flags (expected bits of {:#x}, found {:#x})",
                              section_label(s), kKnownSectionFlags, e.flags);
        if (!is_known_type(e.type)) {
            if (e.flags & kSectionMustUnderstand)
                return make_error(Errc::kFormat,
                                  "section {} has unknown type marked must-understand (expected "
                                  "a type from 1 to {}, found {})",
                                  i, kLastKnownSection, e.type);
        } else if (by_type_[e.type] >= 0) {
            return make_error(Errc::kFormat, "duplicate {} (expected one, found section {} too)",
                              section_label(s), by_type_[e.type]);
        } else {
            by_type_[e.type] = static_cast<std::int32_t>(i);
        }
        if (e.offset < kHeaderSize || !within(e.offset, e.size, bytes_.size()))
            return make_error(Errc::kFormat,
                              "{} out of bounds (expected within bytes {} to {}, found offset "
                              "{} size {})",
                              section_label(s), kHeaderSize, bytes_.size(), e.offset, e.size);
        if (e.offset % kSectionAlignment != 0)
            return make_error(Errc::kFormat,
                              "{} misaligned (expected a multiple of {}, found offset {})",
                              section_label(s), kSectionAlignment, e.offset);
    }

    // Overlap: sort the non-empty ranges (the table included) by offset.
    struct Range {
        std::uint64_t offset, end;
        std::int64_t index; // -1: the section table
    };
    std::vector<Range> ranges;
    if (table_size > 0)
        ranges.push_back({offset, offset + table_size, -1});
    for (const SectionInfo& s : sections_)
        if (s.size > 0)
            ranges.push_back({s.offset, s.offset + s.size, s.index});
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
        return a.offset != b.offset ? a.offset < b.offset : a.index < b.index;
    });
    auto label = [&](std::int64_t index) {
        return index < 0 ? std::string("the section table") : section_label(sections_[index]);
    };
    for (std::size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i - 1].end > ranges[i].offset) {
            auto a = ranges[i - 1].index < ranges[i].index ? ranges[i - 1] : ranges[i];
            auto b = ranges[i - 1].index < ranges[i].index ? ranges[i] : ranges[i - 1];
            return make_error(Errc::kFormat, "{} overlaps {} (bytes {} to {} and {} to {})",
                              label(b.index), label(a.index), b.offset, b.end, a.offset, a.end);
        }

    for (SectionType required : {SectionType::kRegs, SectionType::kSregs, SectionType::kCpuFeatures,
                                 SectionType::kPageIndex, SectionType::kPageData})
        if (by_type_[static_cast<std::uint32_t>(required)] < 0)
            return make_error(Errc::kFormat,
                              "missing required section {} (expected one, found none)",
                              section_name(static_cast<std::uint32_t>(required)));
    const bool has_parent = by_type_[static_cast<std::uint32_t>(SectionType::kParent)] >= 0;
    if (kind() == SnapshotKind::kDiff && !has_parent)
        return make_error(Errc::kFormat,
                          "diff snapshot without a parent (expected a PARENT section, found none)");
    if (kind() == SnapshotKind::kFull && has_parent)
        return make_error(Errc::kFormat,
                          "full snapshot with a parent (expected no PARENT section, found section "
                          "{})",
                          by_type_[static_cast<std::uint32_t>(SectionType::kParent)]);
    return {};
}

std::span<const std::uint8_t> SnapshotFile::span_of(SectionType type) const {
    const std::int32_t i = by_type_[static_cast<std::uint32_t>(type)];
    if (i < 0)
        return {};
    return bytes_.subspan(sections_[i].offset, sections_[i].size);
}

std::optional<std::span<const std::uint8_t>> SnapshotFile::section(SectionType type) const {
    const auto t = static_cast<std::uint32_t>(type);
    if (t == 0 || t > kLastKnownSection || by_type_[t] < 0)
        return std::nullopt;
    return span_of(type);
}

// Steps 10-11: section checksums, then each known section's contents.
Status SnapshotFile::validate_sections(const OpenOptions& options) {
    for (const SectionInfo& s : sections_) {
        if (s.type == static_cast<std::uint32_t>(SectionType::kPageData) &&
            options.data_check == DataCheck::kNone)
            continue;
        const std::uint64_t computed = checksum64(bytes_.subspan(s.offset, s.size));
        if (!checksum_matches(s.checksum, computed))
            return make_error(Errc::kFormat,
                              "{} checksum mismatch (stored {:016x}, computed {:016x})",
                              section_label(s), s.checksum, computed);
    }

    auto fixed_size = [&](SectionType type, std::uint64_t expect) -> Status {
        auto bytes = section(type);
        if (bytes && bytes->size() != expect)
            return make_error(Errc::kFormat, "bad {} section size (expected {}, found {})",
                              section_name(static_cast<std::uint32_t>(type)), expect,
                              bytes->size());
        return {};
    };
    if (auto s = fixed_size(SectionType::kRegs, kRegsSize); !s)
        return s;
    if (auto s = fixed_size(SectionType::kSregs, kSregsSize); !s)
        return s;
    if (auto s = fixed_size(SectionType::kXcrs, kXcrsSize); !s)
        return s;
    if (auto s = fixed_size(SectionType::kParent, sizeof(ParentSection)); !s)
        return s;
    if (auto x = section(SectionType::kXsave);
        x && (x->size() < kXsaveMinSize || x->size() % 4 != 0))
        return make_error(Errc::kFormat,
                          "bad XSAVE section size (expected a multiple of 4 of at least {}, found "
                          "{})",
                          kXsaveMinSize, x->size());

    if (auto m = section(SectionType::kMsrs)) {
        if (m->size() % sizeof(MsrEntry) != 0)
            return make_error(Errc::kFormat,
                              "bad MSRS section size (expected a multiple of {}, found {})",
                              sizeof(MsrEntry), m->size());
        for (std::size_t off = 0; off < m->size(); off += sizeof(MsrEntry)) {
            auto e = detail::load<MsrEntry>(*m, off);
            if (e.reserved != 0 && header_.minor <= kMinorVersion)
                return make_error(Errc::kFormat,
                                  "MSRS entry {} reserved field not zero (expected 0, found {:#x})",
                                  off / sizeof(MsrEntry), e.reserved);
            msrs_.push_back({e.index, e.value});
        }
    }

    {
        auto f = span_of(SectionType::kCpuFeatures);
        if (f.size() < sizeof(CpuFeaturesHeader))
            return make_error(Errc::kFormat,
                              "bad CPU_FEATURES section size (expected at least {}, found {})",
                              sizeof(CpuFeaturesHeader), f.size());
        auto h = detail::load<CpuFeaturesHeader>(f);
        const std::uint64_t expect =
            sizeof(CpuFeaturesHeader) + std::uint64_t{h.word_count} * sizeof(CpuidWordEntry);
        if (f.size() != expect)
            return make_error(Errc::kFormat,
                              "bad CPU_FEATURES section size (expected {} for {} words, found {})",
                              expect, h.word_count, f.size());
        cpu_features_.vendor.assign(h.vendor, strnlen(h.vendor, sizeof(h.vendor)));
        cpu_features_.xcr0 = h.xcr0;
        for (std::uint32_t i = 0; i < h.word_count; ++i) {
            auto w = detail::load<CpuidWordEntry>(f, sizeof(CpuFeaturesHeader) +
                                                         i * sizeof(CpuidWordEntry));
            if (w.reg > static_cast<std::uint32_t>(CpuidReg::kEdx))
                return make_error(Errc::kFormat,
                                  "CPU_FEATURES word {} has an unknown register (expected 0 to 3, "
                                  "found {})",
                                  i, w.reg);
            cpu_features_.words.push_back(
                {w.leaf, w.subleaf, static_cast<CpuidReg>(w.reg), w.bits});
        }
    }

    if (auto p = section(SectionType::kParent)) {
        auto ps = detail::load<ParentSection>(*p);
        parent_ = detail::load_hash(ps.content_hash);
    }

    if (auto e = section(SectionType::kExecutable)) {
        if (e->size() < sizeof(ExecutableHeader))
            return make_error(Errc::kFormat,
                              "bad EXECUTABLE section size (expected at least {}, found {})",
                              sizeof(ExecutableHeader), e->size());
        auto h = detail::load<ExecutableHeader>(*e);
        if (h.path_length > kMaxPathLength ||
            e->size() != sizeof(ExecutableHeader) + std::uint64_t{h.path_length})
            return make_error(Errc::kFormat,
                              "bad EXECUTABLE section size (expected {} for a path of {} bytes, "
                              "found {})",
                              sizeof(ExecutableHeader) + std::uint64_t{h.path_length},
                              h.path_length, e->size());
        ExecutableInfo info;
        info.content_hash = detail::load_hash(h.content_hash);
        info.size = h.size;
        info.path.assign(reinterpret_cast<const char*>(e->data()) + sizeof(ExecutableHeader),
                         h.path_length);
        executable_ = std::move(info);
    }

    if (auto m = section(SectionType::kMetadata)) {
        if (m->size() > kMaxMetadataBytes)
            return make_error(Errc::kFormat, "METADATA section is {} bytes (at most {})", m->size(),
                              kMaxMetadataBytes);
        std::size_t at = 0;
        if (!is_valid_json(metadata_json(), &at))
            return make_error(Errc::kFormat,
                              "METADATA section is not valid json (error at byte {} of {})", at,
                              m->size());
    }

    if (auto w = section(SectionType::kWorkingSet)) {
        if (w->size() % sizeof(PageRangeEntry) != 0)
            return make_error(Errc::kFormat,
                              "bad WORKING_SET section size (expected a multiple of {}, found {})",
                              sizeof(PageRangeEntry), w->size());
        const std::uint64_t pages = guest_pages();
        std::uint64_t floor = 0;
        for (std::size_t off = 0; off < w->size(); off += sizeof(PageRangeEntry)) {
            auto r = detail::load<PageRangeEntry>(*w, off);
            const std::size_t i = off / sizeof(PageRangeEntry);
            if (r.page_count == 0 || !within(r.first_page, r.page_count, pages))
                return make_error(Errc::kFormat,
                                  "working set range {} out of range (expected pages below {}, "
                                  "found {} +{})",
                                  i, pages, r.first_page, r.page_count);
            if (r.first_page < floor)
                return make_error(Errc::kFormat,
                                  "working set range {} not sorted or overlapping (expected page "
                                  "{} or above, found {})",
                                  i, floor, r.first_page);
            floor = r.first_page + r.page_count;
            working_set_.push_back({r.first_page, r.page_count});
        }
    }

    if (auto p = section(SectionType::kPageStore)) {
        if (p->size() < sizeof(PageStoreSection))
            return make_error(Errc::kFormat,
                              "bad PAGE_STORE section size (expected at least {}, found {})",
                              sizeof(PageStoreSection), p->size());
        auto h = detail::load<PageStoreSection>(*p);
        if (h.name_length == 0 || h.name_length > kMaxStoreNameLength)
            return make_error(Errc::kFormat,
                              "PAGE_STORE name_length out of range (expected 1 to {}, found {})",
                              kMaxStoreNameLength, h.name_length);
        if (p->size() != sizeof(PageStoreSection) + std::uint64_t{h.name_length})
            return make_error(Errc::kFormat,
                              "bad PAGE_STORE section size (expected {} for a name of {} bytes, "
                              "found {})",
                              sizeof(PageStoreSection) + std::uint64_t{h.name_length},
                              h.name_length, p->size());
        if (h.reserved != 0 && header_.minor <= kMinorVersion)
            return make_error(Errc::kFormat,
                              "PAGE_STORE reserved field not zero (expected 0, found {:#x})",
                              h.reserved);
        std::string name(reinterpret_cast<const char*>(p->data()) + sizeof(PageStoreSection),
                         h.name_length);
        if (!is_plain_name(name))
            return make_error(Errc::kFormat,
                              "PAGE_STORE name is not a plain file name (expected no '/', no "
                              "control bytes, not . or .., found {})",
                              json_quote(name));
        if (h.store_size < kStoreDataOffset || h.store_size % kPageSize != 0)
            return make_error(Errc::kFormat,
                              "PAGE_STORE store_size out of range (expected a multiple of {} of "
                              "at least {}, found {})",
                              kPageSize, kStoreDataOffset, h.store_size);
        PageStoreInfo info;
        info.name = std::move(name);
        info.id = detail::load_hash(h.store_id);
        info.size = h.store_size;
        store_ = std::move(info);
    }

    const auto index_size = span_of(SectionType::kPageIndex).size();
    if (index_size % sizeof(PageRunEntry) != 0)
        return make_error(Errc::kFormat,
                          "bad PAGE_INDEX section size (expected a multiple of {}, found {})",
                          sizeof(PageRunEntry), index_size);
    return {};
}

// Step 12: the page index, run by run.
Status SnapshotFile::validate_page_index(const OpenOptions& options) {
    const auto index = span_of(SectionType::kPageIndex);
    const SectionInfo& data =
        sections_[by_type_[static_cast<std::uint32_t>(SectionType::kPageData)]];
    const std::uint64_t data_end = data.offset + data.size;
    const std::uint64_t pages = guest_pages();
    const std::size_t count = index.size() / sizeof(PageRunEntry);
    runs_.reserve(count);
    std::uint64_t prev_first = 0, prev_end = 0, prev_data_end = data.offset;
    for (std::size_t i = 0; i < count; ++i) {
        auto e = detail::load<PageRunEntry>(index, i * sizeof(PageRunEntry));
        if (e.page_count == 0)
            return make_error(Errc::kFormat,
                              "page run {} is empty (expected at least 1 page, found 0)", i);
        if (!within(e.first_page, e.page_count, pages))
            return make_error(Errc::kFormat,
                              "page run {} out of guest memory (expected pages below {}, found {})",
                              i, pages, pages_label(e.first_page, e.page_count));
        if (i > 0 && e.first_page < prev_first)
            return make_error(Errc::kFormat,
                              "page index not sorted (expected run {} to start at page {} or "
                              "above, found {})",
                              i, prev_end, e.first_page);
        if (i > 0 && e.first_page < prev_end)
            return make_error(
                Errc::kFormat, "overlapping pages (run {} covers {}, run {} starts at page {})",
                i - 1, pages_label(prev_first, prev_end - prev_first), i, e.first_page);
        prev_first = e.first_page;
        prev_end = e.first_page + e.page_count;
        const std::uint64_t bytes = std::uint64_t{e.page_count} * kPageSize;
        switch (static_cast<PageEncoding>(e.encoding)) {
        case PageEncoding::kZero:
            if (header_.kind == static_cast<std::uint32_t>(SnapshotKind::kFull))
                return make_error(Errc::kFormat,
                                  "zero page run {} in a full snapshot (absent pages are zero "
                                  "already; only diffs have zero runs)",
                                  i);
            if (e.file_offset != 0 || e.stored_size != 0 || e.checksum != 0)
                return make_error(Errc::kFormat,
                                  "zero page run {} has data (expected offset, size and checksum "
                                  "0, found {}, {}, {:016x})",
                                  i, e.file_offset, e.stored_size, e.checksum);
            break;
        case PageEncoding::kRaw:
            if (e.stored_size != bytes)
                return make_error(Errc::kFormat, "raw page run {} size (expected {}, found {})", i,
                                  bytes, e.stored_size);
            if (e.file_offset % kPageSize != 0)
                return make_error(Errc::kFormat,
                                  "raw page run {} not page-aligned (expected a multiple of {}, "
                                  "found offset {})",
                                  i, kPageSize, e.file_offset);
            break;
        case PageEncoding::kStore:
            if (!store_)
                return make_error(Errc::kFormat,
                                  "store page run {} in a file without a page store (expected a "
                                  "PAGE_STORE section, found none)",
                                  i);
            if (e.stored_size != bytes)
                return make_error(Errc::kFormat, "store page run {} size (expected {}, found {})",
                                  i, bytes, e.stored_size);
            if (e.file_offset % kPageSize != 0)
                return make_error(Errc::kFormat,
                                  "store page run {} not page-aligned (expected a multiple of {}, "
                                  "found offset {})",
                                  i, kPageSize, e.file_offset);
            if (e.file_offset < kStoreDataOffset || !within(e.file_offset, bytes, store_->size))
                return make_error(Errc::kFormat,
                                  "store page run {} out of the page store (expected within bytes "
                                  "{} to {} of {}, found offset {} size {})",
                                  i, kStoreDataOffset, store_->size, store_->name, e.file_offset,
                                  e.stored_size);
            break;
        case PageEncoding::kZstd:
            if (e.page_count > kMaxCompressedRunPages)
                return make_error(Errc::kFormat,
                                  "zstd page run {} too long (expected at most {} pages, found {})",
                                  i, kMaxCompressedRunPages, e.page_count);
            if (e.stored_size == 0)
                return make_error(Errc::kFormat,
                                  "zstd page run {} is empty (expected a zstd frame, found 0 "
                                  "bytes)",
                                  i);
            break;
        default:
            return make_error(Errc::kFormat,
                              "page run {} has an unknown encoding (expected 0 to 3, found {})", i,
                              e.encoding);
        }
        if (e.encoding != static_cast<std::uint32_t>(PageEncoding::kZero) &&
            e.encoding != static_cast<std::uint32_t>(PageEncoding::kStore)) {
            if (e.file_offset < data.offset || !within(e.file_offset, e.stored_size, data_end))
                return make_error(Errc::kFormat,
                                  "page run {} data out of bounds (expected within PAGE_DATA "
                                  "bytes {} to {}, found offset {} size {})",
                                  i, data.offset, data_end, e.file_offset, e.stored_size);
            if (e.file_offset < prev_data_end)
                return make_error(Errc::kFormat,
                                  "page run {} data overlaps the previous run's (expected offset "
                                  "{} or above, found {})",
                                  i, prev_data_end, e.file_offset);
            prev_data_end = e.file_offset + e.stored_size;
        }
        PageRun run{e.first_page,  e.page_count,  static_cast<PageEncoding>(e.encoding),
                    e.file_offset, e.stored_size, e.checksum};
        if (run.encoding == PageEncoding::kZstd && options.data_check != DataCheck::kNone) {
            auto frame = stored_bytes(run);
            const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
            if (size != bytes) {
                std::string found = size == ZSTD_CONTENTSIZE_UNKNOWN ? "unknown"
                                    : size == ZSTD_CONTENTSIZE_ERROR ? "not a zstd frame"
                                                                     : fmt::format("{}", size);
                return make_error(Errc::kFormat,
                                  "zstd page run {} content size (expected {}, found {})", i, bytes,
                                  found);
            }
        }
        runs_.push_back(run);
    }
    return {};
}

// Step 13: the page store the PAGE_STORE section names, in the snapshot's
// directory: a regular file of the recorded size whose header is valid and
// carries the recorded store_id.
Status SnapshotFile::open_page_store(const std::string& dir) {
    PageStoreInfo& info = *store_;
    info.path = dir == "/" ? "/" + info.name : dir + "/" + info.name;
    const std::string label = fmt::format("page store {}", info.path);
    // O_NONBLOCK: a FIFO in the store's place must not hang the open (it
    // is refused below, as anything but a regular file is).
    int fd = ::open(info.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        const int err = errno;
        return make_error(Errc::kFormat, "cannot open {} (named by PAGE_STORE): {}", label,
                          std::strerror(err));
    }
    storage_->store_fd = fd;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        return make_error(Errc::kIo, "cannot stat {}: {}", label, std::strerror(err));
    }
    if (!S_ISREG(st.st_mode))
        return make_error(Errc::kFormat, "{} is not a regular file", label);
    if (static_cast<std::uint64_t>(st.st_size) != info.size)
        return make_error(Errc::kFormat,
                          "{} size mismatch (expected {} bytes from PAGE_STORE store_size, found "
                          "{})",
                          label, info.size, st.st_size);
    void* map = ::mmap(nullptr, info.size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        const int err = errno;
        return make_error(Errc::kIo, "cannot map {}: {}", label, std::strerror(err));
    }
    storage_->store_map = map;
    storage_->store_map_size = info.size;
    store_bytes_ = {static_cast<const std::uint8_t*>(map), static_cast<std::size_t>(info.size)};
    auto header = parse_store_header(store_bytes_);
    if (!header)
        return make_error(Errc::kFormat, "{}: {}", label, header.error().message);
    if (header->id != info.id)
        return make_error(Errc::kFormat,
                          "{} identity mismatch (expected store_id {} from PAGE_STORE, found {}): "
                          "a page store of another library?",
                          label, info.id.hex(), header->id.hex());
    return {};
}

Status SnapshotFile::check_run(const PageRun& run) const {
    const std::uint64_t computed = checksum64(stored_bytes(run));
    if (checksum_matches(run.checksum, computed))
        return {};
    if (run.encoding == PageEncoding::kStore)
        return make_error(Errc::kFormat,
                          "page run at {} checksum mismatch in page store {} (stored {:016x}, "
                          "computed {:016x})",
                          pages_label(run.first_page, run.page_count), store_->path, run.checksum,
                          computed);
    return make_error(Errc::kFormat,
                      "page run at {} checksum mismatch (stored {:016x}, computed {:016x})",
                      pages_label(run.first_page, run.page_count), run.checksum, computed);
}

int SnapshotFile::run_fd(const PageRun& run) const {
    if (run.encoding == PageEncoding::kStore)
        return storage_ ? storage_->store_fd : -1;
    return fd_;
}

std::span<const std::uint8_t> SnapshotFile::regs() const {
    return span_of(SectionType::kRegs);
}
std::span<const std::uint8_t> SnapshotFile::sregs() const {
    return span_of(SectionType::kSregs);
}
std::span<const std::uint8_t> SnapshotFile::xsave() const {
    return span_of(SectionType::kXsave);
}
std::span<const std::uint8_t> SnapshotFile::xcrs() const {
    return span_of(SectionType::kXcrs);
}
std::span<const std::uint8_t> SnapshotFile::monitor_state() const {
    return span_of(SectionType::kMonitorState);
}

std::string_view SnapshotFile::metadata_json() const {
    auto m = span_of(SectionType::kMetadata);
    return {reinterpret_cast<const char*>(m.data()), m.size()};
}

VcpuState SnapshotFile::vcpu_state() const {
    auto copy = [](std::span<const std::uint8_t> s) {
        return std::vector<std::uint8_t>(s.begin(), s.end());
    };
    return VcpuState{copy(regs()), copy(sregs()), copy(xsave()), copy(xcrs()), msrs_};
}

MemoryStats SnapshotFile::memory_stats() const {
    MemoryStats m;
    for (const PageRun& r : runs_) {
        ++m.runs;
        switch (r.encoding) {
        case PageEncoding::kRaw:
            ++m.raw_runs;
            break;
        case PageEncoding::kZstd:
            ++m.zstd_runs;
            break;
        case PageEncoding::kZero:
            ++m.zero_runs;
            break;
        case PageEncoding::kStore:
            ++m.store_runs;
            m.store_pages += r.page_count;
            break;
        }
        if (r.encoding == PageEncoding::kZero) {
            m.zero_pages += r.page_count;
        } else if (r.encoding == PageEncoding::kStore) {
            m.pages_stored += r.page_count;
            m.raw_bytes += r.bytes();
        } else {
            m.pages_stored += r.page_count;
            m.raw_bytes += r.bytes();
            m.stored_bytes += r.stored_size;
        }
    }
    return m;
}

std::span<const std::uint8_t> SnapshotFile::stored_bytes(const PageRun& run) const {
    if (run.encoding == PageEncoding::kStore)
        return store_bytes_.subspan(run.file_offset, run.stored_size);
    return bytes_.subspan(run.file_offset, run.stored_size);
}

Status SnapshotFile::read_run(const PageRun& run, std::span<std::uint8_t> out) const {
    if (out.size() != run.bytes())
        return make_error(
            Errc::kInvalidArgument,
            "buffer for page run at page {} has the wrong size (expected {}, found {})",
            run.first_page, run.bytes(), out.size());
    if (run.encoding == PageEncoding::kZero) {
        std::memset(out.data(), 0, out.size());
        return {};
    }
    auto stored = stored_bytes(run);
    if (auto s = check_run(run); !s)
        return s;
    if (run.raw()) {
        std::memcpy(out.data(), stored.data(), stored.size());
        return {};
    }
    const std::size_t n = ZSTD_decompress(out.data(), out.size(), stored.data(), stored.size());
    if (ZSTD_isError(n))
        return make_error(Errc::kFormat, "page run at {} does not decompress: {}",
                          pages_label(run.first_page, run.page_count), ZSTD_getErrorName(n));
    if (n != out.size())
        return make_error(Errc::kFormat, "page run at {} decompressed size (expected {}, found {})",
                          pages_label(run.first_page, run.page_count), out.size(), n);
    return {};
}

Status SnapshotFile::verify_page_data() const {
    std::vector<std::uint8_t> scratch;
    for (const PageRun& run : runs_) {
        if (run.encoding == PageEncoding::kZero)
            continue;
        if (run.raw()) {
            if (auto s = check_run(run); !s)
                return s;
            continue;
        }
        scratch.resize(run.bytes());
        if (auto s = read_run(run, scratch); !s)
            return s;
    }
    if (store_) {
        // The whole store, against the identity its header and PAGE_STORE
        // carry (a full pass over every page of it, those of other
        // snapshots too).
        const Hash128 computed = store_content_id(store_bytes_.subspan(kStoreDataOffset));
        if (!(computed == store_->id))
            return make_error(Errc::kFormat,
                              "page store {} content does not match its store_id (stored {}, "
                              "computed {})",
                              store_->path, store_->id.hex(), computed.hex());
    }
    return {};
}

Status SnapshotFile::verify_parent(const Hash128& parent_hash) const {
    if (kind() != SnapshotKind::kDiff || !parent_)
        return make_error(Errc::kInvalidArgument,
                          "not a diff snapshot (expected kind diff, found {})",
                          kind_name(header_.kind));
    if (*parent_ != parent_hash)
        return make_error(Errc::kFormat, "parent mismatch (expected {}, found {})", parent_->hex(),
                          parent_hash.hex());
    return {};
}

Status SnapshotFile::verify_parent(const SnapshotFile& parent) const {
    if (auto s = verify_parent(parent.content_hash()); !s)
        return s;
    if (parent.guest_memory_size() != guest_memory_size())
        return make_error(Errc::kFormat,
                          "parent guest memory size mismatch (expected {}, found {})",
                          guest_memory_size(), parent.guest_memory_size());
    return {};
}

Status SnapshotFile::check_host(const CpuFeatures& host) const {
    return check_cpu_features(cpu_features_, host);
}

} // namespace presnap::snapshot
