#include "presnap/snapshot/image.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "presnap/snapshot/describe.h"

namespace presnap::snapshot {
namespace {

bool is_zero_page(const std::uint8_t* page) {
    // Word-wise; the compiler vectorises it.
    const auto* words = reinterpret_cast<const std::uint64_t*>(page);
    std::uint64_t acc = 0;
    for (std::size_t i = 0; i < kPageSize / 8; ++i)
        acc |= words[i];
    return acc == 0;
}

std::uint64_t run_end(const MemoryRun& run) {
    return run.first_page + run.page_count;
}

// Adds one page to the image, extending the last run when it is adjacent,
// of the same kind and, for data, contiguous in memory.
void push_page(SnapshotImage& image, std::uint64_t page, const std::uint8_t* data, bool zero) {
    if (!image.memory.empty()) {
        MemoryRun& last = image.memory.back();
        if (run_end(last) == page && last.zero == zero &&
            (zero || last.data.data() + last.data.size() == data)) {
            ++last.page_count;
            if (!zero)
                last.data = {last.data.data(), last.data.size() + kPageSize};
            return;
        }
    }
    MemoryRun run;
    run.first_page = page;
    run.page_count = 1;
    run.zero = zero;
    if (!zero)
        run.data = {data, kPageSize};
    image.memory.push_back(run);
}

} // namespace

Status add_memory(SnapshotImage& image, std::uint64_t first_page,
                  std::span<const std::uint8_t> bytes, ZeroPages zero_pages) {
    if (bytes.size() % kPageSize != 0)
        return make_error(Errc::kInvalidArgument,
                          "memory length is not a multiple of the page size (expected a "
                          "multiple of {}, found {})",
                          kPageSize, bytes.size());
    if (!image.memory.empty() && run_end(image.memory.back()) > first_page)
        return make_error(Errc::kInvalidArgument,
                          "memory added out of order (expected page {} or above, found {})",
                          run_end(image.memory.back()), first_page);
    const std::uint64_t pages = bytes.size() / kPageSize;
    for (std::uint64_t i = 0; i < pages; ++i) {
        const std::uint8_t* page = bytes.data() + i * kPageSize;
        const bool zero = is_zero_page(page);
        if (zero && zero_pages == ZeroPages::kSkip)
            continue;
        push_page(image, first_page + i, page, zero);
    }
    return {};
}

Status add_pages(SnapshotImage& image, std::span<const std::uint64_t> pages,
                 std::span<const std::uint8_t> guest_memory, ZeroPages zero_pages) {
    const std::uint64_t guest_pages = guest_memory.size() / kPageSize;
    std::uint64_t floor = image.memory.empty() ? 0 : run_end(image.memory.back());
    for (std::uint64_t page : pages) {
        if (page >= guest_pages)
            return make_error(Errc::kInvalidArgument,
                              "page out of range (expected below {}, found {})", guest_pages, page);
        if (page < floor)
            return make_error(Errc::kInvalidArgument,
                              "pages not sorted and unique (expected page {} or above, found {})",
                              floor, page);
        const std::uint8_t* data = guest_memory.data() + page * kPageSize;
        const bool zero = is_zero_page(data);
        floor = page + 1;
        if (zero && zero_pages == ZeroPages::kSkip)
            continue;
        push_page(image, page, data, zero);
    }
    return {};
}

Result<ExecutableInfo> hash_executable(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return std::unexpected(
            make_errno_error(Errc::kIo, errno, "open").error().with_context(path));
    XXH3_state_t* state = XXH3_createState();
    XXH3_128bits_reset(state);
    std::vector<std::uint8_t> buffer(1 << 20);
    ExecutableInfo info;
    info.path = path;
    for (;;) {
        ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            XXH3_freeState(state);
            ::close(fd);
            return std::unexpected(
                make_errno_error(Errc::kIo, err, "read").error().with_context(path));
        }
        if (n == 0)
            break;
        XXH3_128bits_update(state, buffer.data(), static_cast<std::size_t>(n));
        info.size += static_cast<std::uint64_t>(n);
    }
    info.content_hash = detail::to_hash128(XXH3_128bits_digest(state));
    XXH3_freeState(state);
    ::close(fd);
    return info;
}

Status validate_image(const SnapshotImage& image, const WriteOptions& options) {
    if (image.kind != SnapshotKind::kFull && image.kind != SnapshotKind::kDiff)
        return make_error(Errc::kInvalidArgument,
                          "unknown snapshot kind (expected 1 or 2, found {})",
                          static_cast<std::uint32_t>(image.kind));
    if ((image.flags & ~kKnownHeaderFlags) != 0)
        return make_error(Errc::kInvalidArgument,
                          "unknown header flags (expected bits of {:#x}, found {:#x})",
                          kKnownHeaderFlags, image.flags);
    if (image.guest_memory_size == 0 || image.guest_memory_size % kPageSize != 0 ||
        image.guest_memory_size > kMaxGuestMemory)
        return make_error(
            Errc::kInvalidArgument,
            "bad guest memory size (expected a non-zero multiple of {} up to {}, found {})",
            kPageSize, kMaxGuestMemory, image.guest_memory_size);
    if (image.kind == SnapshotKind::kDiff && !image.parent)
        return make_error(
            Errc::kInvalidArgument,
            "a diff snapshot needs its parent's hash (expected a parent, found none)");
    if (image.kind == SnapshotKind::kFull && image.parent)
        return make_error(Errc::kInvalidArgument,
                          "a full snapshot has no parent (expected none, found {})",
                          image.parent->hex());
    if (image.vcpu.regs.size() != kRegsSize)
        return make_error(Errc::kInvalidArgument, "bad REGS size (expected {}, found {})",
                          kRegsSize, image.vcpu.regs.size());
    if (image.vcpu.sregs.size() != kSregsSize)
        return make_error(Errc::kInvalidArgument, "bad SREGS size (expected {}, found {})",
                          kSregsSize, image.vcpu.sregs.size());
    if (!image.vcpu.xcrs.empty() && image.vcpu.xcrs.size() != kXcrsSize)
        return make_error(Errc::kInvalidArgument, "bad XCRS size (expected {}, found {})",
                          kXcrsSize, image.vcpu.xcrs.size());
    if (!image.vcpu.xsave.empty() &&
        (image.vcpu.xsave.size() < kXsaveMinSize || image.vcpu.xsave.size() % 4 != 0))
        return make_error(Errc::kInvalidArgument,
                          "bad XSAVE size (expected a multiple of 4 of at least {}, found {})",
                          kXsaveMinSize, image.vcpu.xsave.size());
    if (image.cpu_features.vendor.size() > 12)
        return make_error(Errc::kInvalidArgument,
                          "cpu vendor too long (expected at most 12 bytes, found {})",
                          image.cpu_features.vendor.size());
    if (image.executable && image.executable->path.size() > kMaxPathLength)
        return make_error(Errc::kInvalidArgument,
                          "executable path too long (expected at most {} bytes, found {})",
                          kMaxPathLength, image.executable->path.size());
    std::size_t json_error = 0;
    if (!image.metadata_json.empty() && !is_valid_json(image.metadata_json, &json_error))
        return make_error(Errc::kInvalidArgument, "metadata is not valid json (error at byte {})",
                          json_error);
    if (options.encoding != PageEncoding::kRaw && options.encoding != PageEncoding::kZstd)
        return make_error(Errc::kInvalidArgument,
                          "bad page encoding (expected raw or zstd, found {})",
                          encoding_name(static_cast<std::uint32_t>(options.encoding)));
    if (options.compressed_run_pages == 0 || options.compressed_run_pages > kMaxCompressedRunPages)
        return make_error(Errc::kInvalidArgument,
                          "bad compressed run length (expected 1 to {} pages, found {})",
                          kMaxCompressedRunPages, options.compressed_run_pages);

    const std::uint64_t guest_pages = image.guest_memory_size / kPageSize;
    std::uint64_t floor = 0;
    for (std::size_t i = 0; i < image.working_set.size(); ++i) {
        const PageRange& r = image.working_set[i];
        if (r.page_count == 0 || r.first_page < floor || r.first_page > guest_pages ||
            r.page_count > guest_pages - r.first_page)
            return make_error(
                Errc::kInvalidArgument,
                "working set range {} not sorted, disjoint and in guest memory (pages {} "
                "+{}, guest has {})",
                i, r.first_page, r.page_count, guest_pages);
        floor = r.first_page + r.page_count;
    }
    floor = 0;
    for (std::size_t i = 0; i < image.memory.size(); ++i) {
        const MemoryRun& r = image.memory[i];
        if (r.page_count == 0 || r.first_page > guest_pages ||
            r.page_count > guest_pages - r.first_page)
            return make_error(Errc::kInvalidArgument,
                              "memory run {} outside guest memory (pages {} +{}, guest has {})", i,
                              r.first_page, r.page_count, guest_pages);
        if (r.first_page < floor)
            return make_error(Errc::kInvalidArgument,
                              "memory run {} not sorted or overlapping (expected page {} or above, "
                              "found {})",
                              i, floor, r.first_page);
        if (r.page_count > 0xffffffffu)
            return make_error(Errc::kInvalidArgument,
                              "memory run {} too long (expected at most {} pages, found {})", i,
                              0xffffffffu, r.page_count);
        const std::uint64_t expect = r.zero ? 0 : r.page_count * kPageSize;
        if (r.data.size() != expect)
            return make_error(Errc::kInvalidArgument,
                              "memory run {} data size (expected {}, found {})", i, expect,
                              r.data.size());
        if (r.in_store) {
            if (r.zero || !image.page_store)
                return make_error(Errc::kInvalidArgument, "memory run {} is in a page store but {}",
                                  i, r.zero ? "is a zero run" : "the image names no page store");
            if (r.store_offset % kPageSize != 0 || r.store_offset < kStoreDataOffset ||
                r.store_offset > image.page_store->size ||
                expect > image.page_store->size - r.store_offset)
                return make_error(Errc::kInvalidArgument,
                                  "memory run {} store offset {} is not a page of the page store "
                                  "({} bytes)",
                                  i, r.store_offset, image.page_store->size);
        }
        floor = r.first_page + r.page_count;
    }
    if (const auto& ps = image.page_store) {
        const std::string& n = ps->name;
        bool plain = !n.empty() && n.size() <= kMaxStoreNameLength && n != "." && n != "..";
        for (char c : n)
            plain = plain && c != '/' && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
        if (!plain)
            return make_error(Errc::kInvalidArgument,
                              "page store name {} is not a plain file name of 1 to {} bytes",
                              json_quote(n), kMaxStoreNameLength);
        if (ps->size < kStoreDataOffset || ps->size % kPageSize != 0)
            return make_error(Errc::kInvalidArgument, "bad page store size {}", ps->size);
    }
    return {};
}

} // namespace presnap::snapshot
