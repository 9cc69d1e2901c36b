// Page stores: the store file's header, packing self-contained snapshots
// into thin ones plus a store, and unpacking one again. See
// docs/formats/snapshot.md ("Page store files") and page_store.h.
#include "presnap/snapshot/page_store.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "presnap/snapshot/reader.h"
#include "temp_file.h"

namespace presnap::snapshot {
namespace {

using detail::checksum64;
using detail::TempFile;
using detail::write_all;

struct HashKey {
    std::uint64_t low, high;
    friend bool operator==(const HashKey&, const HashKey&) = default;
};
struct HashKeyHash {
    std::size_t operator()(const HashKey& k) const { return static_cast<std::size_t>(k.low); }
};

// The image of `f` without its pages: every section but the page sections.
SnapshotImage image_without_pages(const SnapshotFile& f) {
    SnapshotImage img;
    img.kind = f.kind();
    img.flags = f.flags();
    img.guest_memory_size = f.guest_memory_size();
    img.vcpu = f.vcpu_state();
    auto ms = f.monitor_state();
    img.monitor_state.assign(ms.begin(), ms.end());
    img.cpu_features = f.cpu_features();
    img.parent = f.parent();
    img.executable = f.executable();
    img.metadata_json = std::string(f.metadata_json());
    img.working_set = f.working_set();
    return img;
}

// Whether the file holds only what image_without_pages() and raw or zero
// runs carry, so that writing it again gives the same bytes.
bool rewrites_exactly(const SnapshotFile& f) {
    for (const SectionInfo& s : f.sections())
        if (s.type < 1 || s.type > kLastKnownSection)
            return false;
    for (const PageRun& r : f.page_runs())
        if (r.encoding == PageEncoding::kZstd)
            return false;
    return true;
}

// One input file, open, with its data pages in guest order.
struct Input {
    SnapshotFile file;
    std::vector<std::vector<std::uint8_t>> decoded; // zstd runs, decompressed
    struct Page {
        std::uint64_t guest_page;
        const std::uint8_t* data;
    };
    std::vector<Page> pages;
};

} // namespace

Hash128 store_content_id(std::span<const std::uint8_t> pages) {
    return detail::to_hash128(XXH3_128bits(pages.data(), pages.size()));
}

Result<StoreHeaderInfo> parse_store_header(std::span<const std::uint8_t> store) {
    if (store.size() < kStoreDataOffset)
        return make_error(Errc::kFormat,
                          "file too short for a page store header (expected at least {} bytes, "
                          "found {})",
                          kStoreDataOffset, store.size());
    auto h = detail::load<StoreHeader>(store);
    if (!std::equal(kStoreMagic.begin(), kStoreMagic.end(), h.magic))
        return make_error(Errc::kFormat, "bad page store magic (expected {:02x}, found {:02x})",
                          fmt::join(kStoreMagic, " "),
                          fmt::join(std::span<const std::uint8_t>(h.magic, 8), " "));
    if (h.major != kStoreMajorVersion)
        return make_error(Errc::kFormat,
                          "unsupported page store major version (expected {}, found {}.{})",
                          kStoreMajorVersion, h.major, h.minor);
    const std::uint64_t computed = checksum64(store.first(offsetof(StoreHeader, header_checksum)));
    if (h.header_checksum != computed)
        return make_error(Errc::kFormat,
                          "page store header checksum mismatch (stored {:016x}, computed {:016x})",
                          h.header_checksum, computed);
    if (h.header_size != kStoreHeaderSize)
        return make_error(Errc::kFormat, "bad page store header size (expected {}, found {})",
                          kStoreHeaderSize, h.header_size);
    if (h.file_size != store.size())
        return make_error(Errc::kFormat,
                          "page store file size mismatch (expected {} bytes from its header, "
                          "found {})",
                          h.file_size, store.size());
    if (h.page_count != (store.size() - kStoreDataOffset) / kPageSize ||
        (store.size() - kStoreDataOffset) % kPageSize != 0)
        return make_error(Errc::kFormat,
                          "page store page_count mismatch (expected {} pages after the header "
                          "page, found {})",
                          (store.size() - kStoreDataOffset) / kPageSize, h.page_count);
    // Reserved: the header's reserved field and the rest of the header page.
    if (h.minor <= kStoreMinorVersion)
        for (std::size_t i = offsetof(StoreHeader, reserved); i < kStoreDataOffset; ++i) {
            if (i == offsetof(StoreHeader, header_checksum))
                i = kStoreHeaderSize;
            if (store[i] != 0)
                return make_error(Errc::kFormat,
                                  "page store reserved byte not zero (expected 0 at offset {}, "
                                  "found {:#04x})",
                                  i, store[i]);
        }
    return StoreHeaderInfo{detail::load_hash(h.store_id), h.page_count, h.minor};
}

Result<std::vector<std::uint8_t>> self_contained_bytes(const SnapshotFile& f) {
    if (!f.page_store())
        return std::vector<std::uint8_t>(f.bytes().begin(), f.bytes().end());
    SnapshotImage img = image_without_pages(f);
    // Guest-adjacent data runs were one run before the pack split them at
    // store boundaries: join them again (copied), so the writer lays the
    // file out as it was.
    std::vector<std::vector<std::uint8_t>> joined;
    const auto& runs = f.page_runs();
    joined.reserve(runs.size());
    for (std::size_t i = 0; i < runs.size();) {
        const PageRun& r = runs[i];
        if (r.encoding == PageEncoding::kZero) {
            img.memory.push_back({r.first_page, r.page_count, true, {}});
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        while (j < runs.size() && runs[j].encoding != PageEncoding::kZero &&
               runs[j].first_page == runs[j - 1].first_page + runs[j - 1].page_count)
            ++j;
        std::vector<std::uint8_t>& buf = joined.emplace_back();
        std::uint64_t pages = 0;
        for (std::size_t k = i; k < j; ++k)
            pages += runs[k].page_count;
        buf.resize(pages * kPageSize);
        std::uint64_t at = 0;
        for (std::size_t k = i; k < j; ++k) {
            if (auto s = f.read_run(runs[k], {buf.data() + at, runs[k].bytes()}); !s)
                return std::unexpected(s.error().with_context(f.path()));
            at += runs[k].bytes();
        }
        img.memory.push_back({r.first_page, pages, false, buf});
        i = j;
    }
    auto bytes = serialize_snapshot(img);
    if (!bytes)
        return std::unexpected(bytes.error().with_context(f.path()));
    return bytes;
}

Result<PackReport> pack_snapshots(const std::string& dir, std::span<const std::string> files,
                                  const std::string& store) {
    namespace fs = std::filesystem;
    const fs::path d(dir);
    PackReport report;
    report.store = store;
    // Open every input (the pages stay mapped until the thin files are
    // written: the store is written from them and the checksums computed).
    std::vector<std::unique_ptr<Input>> inputs;
    for (const auto& name : files) {
        if (name.empty() || name.find('/') != std::string::npos || name == store)
            return make_error(Errc::kInvalidArgument, "{}: not a plain file name to pack", name);
        auto f = SnapshotFile::open((d / name).string(), OpenOptions{DataCheck::kFull});
        if (!f)
            return std::unexpected(f.error());
        if (f->page_store())
            return make_error(Errc::kInvalidArgument,
                              "{}: packed already (its pages are in page store {})", f->path(),
                              f->page_store()->name);
        auto in = std::make_unique<Input>(Input{std::move(*f), {}, {}});
        for (const PageRun& r : in->file.page_runs()) {
            if (r.encoding == PageEncoding::kZero)
                continue;
            const std::uint8_t* data = nullptr;
            if (r.encoding == PageEncoding::kRaw) {
                data = in->file.stored_bytes(r).data();
            } else {
                auto& buf = in->decoded.emplace_back(r.bytes());
                if (auto s = in->file.read_run(r, buf); !s)
                    return std::unexpected(s.error().with_context(in->file.path()));
                data = buf.data();
            }
            for (std::uint64_t p = 0; p < r.page_count; ++p)
                in->pages.push_back({r.first_page + p, data + p * kPageSize});
        }
        inputs.push_back(std::move(in));
    }

    // The store: every distinct page once, in input order.
    auto tmp = TempFile::create(d / store);
    if (!tmp)
        return std::unexpected(tmp.error());
    std::unordered_map<HashKey, std::uint64_t, HashKeyHash> where;  // content -> store page
    std::vector<const std::uint8_t*> stored;                        // store page -> its bytes
    std::vector<std::vector<std::uint64_t>> offsets(inputs.size()); // per input page
    XXH3_state_t* id_state = XXH3_createState();
    XXH3_128bits_reset(id_state);
    std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> id_guard(id_state, XXH3_freeState);
    std::vector<std::uint8_t> buffer;
    buffer.reserve(1 << 20);
    const std::uint8_t header_page[kPageSize] = {};
    if (auto s = write_all(tmp->fd(), header_page, kPageSize, -1); !s)
        return std::unexpected(s.error());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        PackedFile pf;
        pf.file = files[i];
        pf.standalone_bytes = inputs[i]->file.file_size();
        for (const auto& page : inputs[i]->pages) {
            const XXH128_hash_t h = XXH3_128bits(page.data, kPageSize);
            const HashKey key{h.low64, h.high64};
            auto it = where.find(key);
            // A 128-bit hash collision is not trusted: the bytes are compared.
            if (it == where.end() || std::memcmp(stored[it->second], page.data, kPageSize) != 0) {
                const std::uint64_t n = stored.size();
                stored.push_back(page.data);
                if (it == where.end())
                    where.emplace(key, n);
                offsets[i].push_back(kStoreDataOffset + n * kPageSize);
                XXH3_128bits_update(id_state, page.data, kPageSize);
                buffer.insert(buffer.end(), page.data, page.data + kPageSize);
                if (buffer.size() >= (1u << 20)) {
                    if (auto s = write_all(tmp->fd(), buffer.data(), buffer.size(), -1); !s)
                        return std::unexpected(s.error());
                    buffer.clear();
                }
                ++pf.new_pages;
            } else {
                offsets[i].push_back(kStoreDataOffset + it->second * kPageSize);
            }
            ++pf.pages;
        }
        report.pages += pf.pages;
        report.files.push_back(pf);
    }
    if (auto s = write_all(tmp->fd(), buffer.data(), buffer.size(), -1); !s)
        return std::unexpected(s.error());
    report.store_pages = stored.size();
    report.store_bytes = kStoreDataOffset + stored.size() * kPageSize;
    StoreHeader h{};
    std::memcpy(h.magic, kStoreMagic.data(), kStoreMagic.size());
    h.major = kStoreMajorVersion;
    h.minor = kStoreMinorVersion;
    h.header_size = kStoreHeaderSize;
    h.page_count = stored.size();
    h.file_size = report.store_bytes;
    const Hash128 id = detail::to_hash128(XXH3_128bits_digest(id_state));
    detail::store_hash(h.store_id, id);
    h.header_checksum = checksum64(
        {reinterpret_cast<const std::uint8_t*>(&h), offsetof(StoreHeader, header_checksum)});
    if (auto s = write_all(tmp->fd(), reinterpret_cast<const std::uint8_t*>(&h), sizeof h, 0); !s)
        return std::unexpected(s.error());
    if (auto s = tmp->commit(); !s)
        return std::unexpected(s.error());

    // The thin files: each data page a STORE run, guest-adjacent pages whose
    // store pages are adjacent too joined into one run.
    const PageStoreRef ref{store, id, report.store_bytes};
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const Input& in = *inputs[i];
        SnapshotImage img = image_without_pages(in.file);
        img.page_store = ref;
        std::size_t k = 0; // next of in.pages
        for (const PageRun& r : in.file.page_runs()) {
            if (r.encoding == PageEncoding::kZero) {
                img.memory.push_back({r.first_page, r.page_count, true, {}});
                continue;
            }
            // Never across the input's own runs: self_contained_bytes joins
            // guest-adjacent runs, which the writer had already joined.
            const std::size_t end = k + r.page_count;
            while (k < end) {
                std::size_t j = k + 1;
                while (j < end && offsets[i][j] == offsets[i][j - 1] + kPageSize &&
                       in.pages[j].data == in.pages[j - 1].data + kPageSize)
                    ++j;
                MemoryRun m;
                m.first_page = in.pages[k].guest_page;
                m.page_count = j - k;
                m.data = {in.pages[k].data, (j - k) * kPageSize};
                m.in_store = true;
                m.store_offset = offsets[i][k];
                img.memory.push_back(m);
                k = j;
            }
        }
        const fs::path path = d / files[i];
        auto bytes = serialize_snapshot(img);
        if (!bytes)
            return std::unexpected(bytes.error().with_context(path.string()));
        report.files[i].bytes = bytes->size();
        auto t = TempFile::create(path);
        if (!t)
            return std::unexpected(t.error());
        if (auto s = write_all(t->fd(), bytes->data(), bytes->size(), -1); !s)
            return std::unexpected(s.error());
        // The pack must lose nothing: the thin file (under its temporary
        // name, beside the store) gives back the input, its bytes or its
        // pages, before it replaces it.
        auto back = SnapshotFile::open(t->path(), OpenOptions{DataCheck::kFull});
        if (!back)
            return std::unexpected(back.error());
        if (rewrites_exactly(in.file)) {
            auto again = self_contained_bytes(*back);
            if (!again)
                return std::unexpected(again.error());
            if (again->size() != in.file.bytes().size() ||
                std::memcmp(again->data(), in.file.bytes().data(), again->size()) != 0)
                return make_error(Errc::kInternal,
                                  "{}: the packed file does not give back the snapshot it was "
                                  "made from",
                                  path.string());
        } else {
            std::size_t n = 0;
            for (const PageRun& r : back->page_runs()) {
                if (r.encoding == PageEncoding::kZero)
                    continue;
                auto got = back->stored_bytes(r);
                for (std::uint64_t p = 0; p < r.page_count; ++p, ++n)
                    if (std::memcmp(got.data() + p * kPageSize, in.pages[n].data, kPageSize) != 0)
                        return make_error(Errc::kInternal, "{}: page {} differs after packing",
                                          path.string(), r.first_page + p);
            }
        }
        if (auto s = t->commit(); !s)
            return std::unexpected(s.error());
    }
    return report;
}

} // namespace presnap::snapshot
