// The snapshot writer: lays the file out in one forward pass (small sections,
// page data, page index, section table) and writes the header last, when the
// table's place and checksum are known. See docs/formats/snapshot.md.
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "internal.h"
#include "presnap/output_file.h"
#include "presnap/snapshot/image.h"
#include "temp_file.h"

namespace presnap::snapshot {
namespace {

using detail::checksum64;
using detail::write_all;

// Where the bytes go: a file (buffered, with one positioned write for the
// header) or a vector.
class Sink {
  public:
    virtual ~Sink() = default;
    virtual Status append(std::span<const std::uint8_t> bytes) = 0;
    virtual Status write_at(std::uint64_t offset, std::span<const std::uint8_t> bytes) = 0;
    std::uint64_t position() const { return position_; }

  protected:
    std::uint64_t position_ = 0;
};

class MemorySink final : public Sink {
  public:
    explicit MemorySink(std::vector<std::uint8_t>& out) : out_(out) {}
    Status append(std::span<const std::uint8_t> bytes) override {
        out_.insert(out_.end(), bytes.begin(), bytes.end());
        position_ += bytes.size();
        return {};
    }
    Status write_at(std::uint64_t offset, std::span<const std::uint8_t> bytes) override {
        std::memcpy(out_.data() + offset, bytes.data(), bytes.size());
        return {};
    }

  private:
    std::vector<std::uint8_t>& out_;
};

class FileSink final : public Sink {
  public:
    explicit FileSink(int fd) : fd_(fd) { buffer_.reserve(kBufferSize); }
    Status append(std::span<const std::uint8_t> bytes) override {
        position_ += bytes.size();
        if (buffer_.size() + bytes.size() > kBufferSize) {
            if (auto s = flush(); !s)
                return s;
            if (bytes.size() >= kBufferSize)
                return write_all(fd_, bytes.data(), bytes.size(), -1);
        }
        buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
        return {};
    }
    Status write_at(std::uint64_t offset, std::span<const std::uint8_t> bytes) override {
        if (auto s = flush(); !s)
            return s;
        return write_all(fd_, bytes.data(), bytes.size(), static_cast<std::int64_t>(offset));
    }
    Status flush() {
        auto s = write_all(fd_, buffer_.data(), buffer_.size(), -1);
        buffer_.clear();
        return s;
    }

  private:
    static constexpr std::size_t kBufferSize = 1 << 20;
    int fd_;
    std::vector<std::uint8_t> buffer_;
};

template <typename T> std::span<const std::uint8_t> as_bytes_of(const T& value) {
    return {reinterpret_cast<const std::uint8_t*>(&value), sizeof(T)};
}

template <typename T> void append_record(std::vector<std::uint8_t>& out, const T& value) {
    auto bytes = as_bytes_of(value);
    out.insert(out.end(), bytes.begin(), bytes.end());
}

std::vector<std::uint8_t> encode_msrs(const std::vector<Msr>& msrs) {
    std::vector<std::uint8_t> out;
    for (const Msr& m : msrs)
        append_record(out, MsrEntry{m.index, 0, m.value});
    return out;
}

std::vector<std::uint8_t> encode_cpu_features(const CpuFeatures& f) {
    std::vector<std::uint8_t> out;
    CpuFeaturesHeader h{};
    std::memcpy(h.vendor, f.vendor.data(), std::min<std::size_t>(f.vendor.size(), 12));
    h.word_count = static_cast<std::uint32_t>(f.words.size());
    h.xcr0 = f.xcr0;
    append_record(out, h);
    for (const CpuidWord& w : f.words)
        append_record(out,
                      CpuidWordEntry{w.leaf, w.subleaf, static_cast<std::uint32_t>(w.reg), w.bits});
    return out;
}

std::vector<std::uint8_t> encode_executable(const ExecutableInfo& e) {
    std::vector<std::uint8_t> out;
    ExecutableHeader h{};
    detail::store_hash(h.content_hash, e.content_hash);
    h.size = e.size;
    h.path_length = static_cast<std::uint32_t>(e.path.size());
    append_record(out, h);
    out.insert(out.end(), e.path.begin(), e.path.end());
    return out;
}

std::vector<std::uint8_t> encode_ranges(const std::vector<PageRange>& ranges) {
    std::vector<std::uint8_t> out;
    for (const PageRange& r : ranges)
        append_record(out, PageRangeEntry{r.first_page, r.page_count});
    return out;
}

std::vector<std::uint8_t> encode_page_store(const PageStoreRef& p) {
    std::vector<std::uint8_t> out;
    PageStoreSection h{};
    detail::store_hash(h.store_id, p.id);
    h.store_size = p.size;
    h.name_length = static_cast<std::uint32_t>(p.name.size());
    append_record(out, h);
    out.insert(out.end(), p.name.begin(), p.name.end());
    return out;
}

class Writer {
  public:
    Writer(Sink& sink, const SnapshotImage& image, const WriteOptions& options)
        : sink_(sink), image_(image), options_(options) {}

    Result<WriteSummary> run() {
        if (auto s = validate_image(image_, options_); !s)
            return std::unexpected(s.error());
        const std::uint8_t zeros[kHeaderSize] = {};
        if (auto s = sink_.append(zeros); !s)
            return std::unexpected(s.error());

        const std::uint32_t must = kSectionMustUnderstand;
        const VcpuState& v = image_.vcpu;
        Status s = section(SectionType::kRegs, must, v.regs);
        s = s ? section(SectionType::kSregs, must, v.sregs) : s;
        if (s && !v.xsave.empty())
            s = section(SectionType::kXsave, must, v.xsave);
        if (s && !v.xcrs.empty())
            s = section(SectionType::kXcrs, must, v.xcrs);
        if (s && !v.msrs.empty())
            s = section(SectionType::kMsrs, must, encode_msrs(v.msrs));
        if (s && !image_.monitor_state.empty())
            s = section(SectionType::kMonitorState, must, image_.monitor_state);
        if (s)
            s = section(SectionType::kCpuFeatures, must, encode_cpu_features(image_.cpu_features));
        if (s && image_.parent) {
            ParentSection p{};
            detail::store_hash(p.content_hash, *image_.parent);
            s = section(SectionType::kParent, must, as_bytes_of(p));
        }
        if (s && image_.executable)
            s = section(SectionType::kExecutable, 0, encode_executable(*image_.executable));
        if (s && !image_.metadata_json.empty())
            s = section(SectionType::kMetadata, 0,
                        {reinterpret_cast<const std::uint8_t*>(image_.metadata_json.data()),
                         image_.metadata_json.size()});
        if (s && !image_.working_set.empty())
            s = section(SectionType::kWorkingSet, 0, encode_ranges(image_.working_set));
        if (s && image_.page_store)
            s = section(SectionType::kPageStore, must, encode_page_store(*image_.page_store));
        if (s)
            s = page_data();
        if (s)
            s = section(SectionType::kPageIndex, must, index_);
        if (!s)
            return std::unexpected(s.error());
        return finish();
    }

  private:
    Status pad_to(std::uint64_t alignment) {
        static const std::uint8_t zeros[kPageSize] = {};
        const std::uint64_t rem = sink_.position() % alignment;
        if (rem == 0)
            return {};
        return sink_.append({zeros, static_cast<std::size_t>(alignment - rem)});
    }

    Status section(SectionType type, std::uint32_t flags, std::span<const std::uint8_t> bytes) {
        if (auto s = pad_to(kSectionAlignment); !s)
            return s;
        table_.push_back(SectionEntry{static_cast<std::uint32_t>(type), flags, sink_.position(),
                                      bytes.size(), checksum64(bytes)});
        return sink_.append(bytes);
    }

    // Page data goes through here so that padding inside the section is
    // covered by its checksum.
    Status data_append(std::span<const std::uint8_t> bytes) {
        XXH3_64bits_update(data_state_, bytes.data(), bytes.size());
        summary_.stored_bytes += bytes.size();
        return sink_.append(bytes);
    }

    Status data_align_page() {
        static const std::uint8_t zeros[kPageSize] = {};
        const std::uint64_t rem = sink_.position() % kPageSize;
        if (rem == 0)
            return {};
        const std::size_t pad = static_cast<std::size_t>(kPageSize - rem);
        summary_.stored_bytes -= pad; // padding is not page data
        return data_append({zeros, pad});
    }

    void add_run(std::uint64_t first_page, std::uint64_t count, PageEncoding encoding,
                 std::uint64_t offset, std::span<const std::uint8_t> stored) {
        PageRunEntry e{first_page,
                       static_cast<std::uint32_t>(count),
                       static_cast<std::uint32_t>(encoding),
                       offset,
                       stored.size(),
                       encoding == PageEncoding::kZero ? 0 : checksum64(stored)};
        append_record(index_, e);
        ++summary_.runs;
        if (encoding == PageEncoding::kZero) {
            summary_.zero_pages += count;
        } else {
            summary_.pages_stored += count;
            summary_.raw_bytes += count * kPageSize;
        }
    }

    Status raw_run(std::uint64_t first_page, std::uint64_t count,
                   std::span<const std::uint8_t> data) {
        if (auto s = data_align_page(); !s)
            return s;
        add_run(first_page, count, PageEncoding::kRaw, sink_.position(), data);
        return data_append(data);
    }

    Status page_data() {
        const bool raw = options_.encoding == PageEncoding::kRaw;
        // A thin file (every data run in the page store) needs no page-aligned
        // PAGE_DATA; others keep the layout 1.0 writers gave them.
        bool in_file = !image_.page_store;
        for (const MemoryRun& run : image_.memory)
            in_file = in_file || (!run.zero && !run.in_store);
        if (auto s = pad_to(raw && in_file ? kPageSize : kSectionAlignment); !s)
            return s;
        const std::uint64_t start = sink_.position();
        data_state_ = XXH3_createState();
        XXH3_64bits_reset(data_state_);
        ZSTD_CCtx* cctx = raw ? nullptr : ZSTD_createCCtx();
        std::vector<std::uint8_t> compressed;
        Status s;
        for (const MemoryRun& run : image_.memory) {
            if (!s)
                break;
            if (run.zero) {
                add_run(run.first_page, run.page_count, PageEncoding::kZero, 0, {});
                continue;
            }
            if (run.in_store) {
                add_run(run.first_page, run.page_count, PageEncoding::kStore, run.store_offset,
                        run.data);
                summary_.store_pages += run.page_count;
                continue;
            }
            if (raw) {
                s = raw_run(run.first_page, run.page_count, run.data);
                continue;
            }
            for (std::uint64_t done = 0; s && done < run.page_count;) {
                const std::uint64_t n =
                    std::min<std::uint64_t>(options_.compressed_run_pages, run.page_count - done);
                auto piece = run.data.subspan(done * kPageSize, n * kPageSize);
                compressed.resize(ZSTD_compressBound(piece.size()));
                const std::size_t size =
                    ZSTD_compressCCtx(cctx, compressed.data(), compressed.size(), piece.data(),
                                      piece.size(), options_.zstd_level);
                if (ZSTD_isError(size)) {
                    s = make_error(Errc::kInternal, "zstd compression failed: {}",
                                   ZSTD_getErrorName(size));
                } else if (size >= piece.size()) {
                    // Incompressible: store it raw, which is also mmap-able.
                    s = raw_run(run.first_page + done, n, piece);
                } else {
                    std::span<const std::uint8_t> stored{compressed.data(), size};
                    add_run(run.first_page + done, n, PageEncoding::kZstd, sink_.position(),
                            stored);
                    s = data_append(stored);
                }
                done += n;
            }
        }
        ZSTD_freeCCtx(cctx);
        const std::uint64_t checksum = XXH3_64bits_digest(data_state_);
        XXH3_freeState(data_state_);
        data_state_ = nullptr;
        if (!s)
            return s;
        table_.push_back(SectionEntry{static_cast<std::uint32_t>(SectionType::kPageData),
                                      kSectionMustUnderstand, start, sink_.position() - start,
                                      checksum});
        return {};
    }

    Result<WriteSummary> finish() {
        if (auto s = pad_to(kSectionAlignment); !s)
            return std::unexpected(s.error());
        std::vector<std::uint8_t> table;
        for (const SectionEntry& e : table_)
            append_record(table, e);
        const std::uint64_t table_offset = sink_.position();
        if (auto s = sink_.append(table); !s)
            return std::unexpected(s.error());

        FileHeader h{};
        std::memcpy(h.magic, kMagic.data(), kMagic.size());
        h.major = kMajorVersion;
        // The oldest minor that describes the file (format.h).
        h.minor = image_.page_store ? kPageStoreMinorVersion : 0;
        h.header_size = kHeaderSize;
        h.flags = image_.flags;
        h.kind = static_cast<std::uint32_t>(image_.kind);
        h.guest_memory_size = image_.guest_memory_size;
        h.page_size = kPageSize;
        h.section_count = static_cast<std::uint32_t>(table_.size());
        h.section_table_offset = table_offset;
        h.file_size = sink_.position();
        h.section_table_checksum = checksum64(table);
        auto header = as_bytes_of(h);
        h.header_checksum = checksum64(header.first(detail::kHeaderChecksummedBytes));
        if (auto s = sink_.write_at(0, header); !s)
            return std::unexpected(s.error());
        summary_.file_size = h.file_size;
        summary_.content_hash = detail::content_hash_of(header, table);
        return summary_;
    }

    Sink& sink_;
    const SnapshotImage& image_;
    const WriteOptions& options_;
    std::vector<SectionEntry> table_;
    std::vector<std::uint8_t> index_;
    XXH3_state_t* data_state_ = nullptr;
    WriteSummary summary_;
};

} // namespace

Result<std::vector<std::uint8_t>>
serialize_snapshot(const SnapshotImage& image, const WriteOptions& options, WriteSummary* summary) {
    std::vector<std::uint8_t> out;
    MemorySink sink(out);
    auto result = Writer(sink, image, options).run();
    if (!result)
        return std::unexpected(result.error());
    if (summary)
        *summary = *result;
    return out;
}

Result<WriteSummary> write_snapshot(const std::string& path, const SnapshotImage& image,
                                    const WriteOptions& options) {
    // Check first, so that a bad image never creates even a temporary file.
    if (auto s = validate_image(image, options); !s)
        return std::unexpected(s.error().with_context(path));
    if (const auto kind = output_kind(path); kind != OutputKind::kRegular) {
        // "-" (standard output), /dev/null, a FIFO ...: a rename would
        // replace the node, and a pipe cannot seek, so the file is built in
        // memory and written in order.
        WriteSummary summary;
        auto bytes = serialize_snapshot(image, options, &summary);
        if (!bytes)
            return std::unexpected(bytes.error().with_context(path));
        int fd = kind == OutputKind::kStdout ? ::fcntl(1, F_DUPFD_CLOEXEC, 0)
                                             : ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return std::unexpected(
                make_errno_error(Errc::kIo, errno, "open").error().with_context(path));
        for (size_t off = 0; off < bytes->size();) {
            ssize_t n = ::write(fd, bytes->data() + off, bytes->size() - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                int err = n < 0 ? errno : EIO;
                ::close(fd);
                return std::unexpected(
                    make_errno_error(Errc::kIo, err, "write").error().with_context(path));
            }
            off += size_t(n);
        }
        if (::close(fd) != 0)
            return std::unexpected(
                make_errno_error(Errc::kIo, errno, "close").error().with_context(path));
        return summary;
    }
    auto fail = [&](Error e) { return std::unexpected(e.with_context(path)); };
    auto tmp = detail::TempFile::create(path);
    if (!tmp)
        return fail(tmp.error());
    FileSink sink(tmp->fd());
    auto summary = Writer(sink, image, options).run();
    if (!summary)
        return fail(summary.error());
    if (auto s = sink.flush(); !s)
        return fail(s.error());
    if (auto s = tmp->commit(); !s)
        return fail(s.error());
    return summary;
}

} // namespace presnap::snapshot
