// The page store (format 1.1): pack_snapshots on synthetic diffs whose
// duplicate pages are known, the thin files it writes read back like the
// originals, and hostile stores and thin files (checksums recomputed, as a
// malicious writer would) refused with the field named.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>

#include <doctest/doctest.h>

#include "patch.h"
#include "presnap/snapshot/page_store.h"
#include "presnap/snapshot/reader.h"
#include "sample.h"
#include "test_util.h"

namespace presnap::snapshot {
namespace {

using test::ScratchDir;

// Pages whose contents the tests name: X, Y, Z, W.
std::vector<std::uint8_t> page_of(std::uint32_t seed) {
    std::vector<std::uint8_t> p(kPageSize);
    sample::fill_page(p.data(), seed);
    p[0] = static_cast<std::uint8_t>(seed); // distinct even where the pattern repeats
    return p;
}

struct Diffs {
    std::vector<std::uint8_t> base_memory = sample::base_memory();
    Hash128 parent;
    std::vector<std::vector<std::uint8_t>> memories; // guest memory after each
    std::vector<std::string> names = {"a.snap", "b.snap", "c.snap"};
};

// Three diffs over the sample base:
//   a: page 1 = X, 2 = Y, 3 = Z, page 5 became zero
//   b: page 1 = X (as in a), 7 = Y (a's content at another address), 8 = W
//   c: pages 10 and 11 = Z (one content twice in one file), 12 = X
// Distinct contents: X Y Z W, so the store holds 4 pages; a adds 3, b 1, c 0.
Diffs write_diffs(const ScratchDir& dir) {
    Diffs d;
    auto base = sample::full_image(d.base_memory);
    auto base_sum = write_snapshot(dir.file("base.snap"), base);
    REQUIRE(base_sum);
    d.parent = base_sum->content_hash;
    const auto X = page_of(11), Y = page_of(22), Z = page_of(33), W = page_of(44);
    struct Change {
        std::uint64_t page;
        const std::vector<std::uint8_t>* bytes; // nullptr: zero
    };
    const std::vector<std::vector<Change>> changes = {
        {{1, &X}, {2, &Y}, {3, &Z}, {5, nullptr}},
        {{1, &X}, {7, &Y}, {8, &W}},
        {{10, &Z}, {11, &Z}, {12, &X}},
    };
    for (std::size_t i = 0; i < changes.size(); ++i) {
        auto mem = d.base_memory;
        std::vector<std::uint64_t> dirty;
        for (const Change& c : changes[i]) {
            if (c.bytes)
                std::memcpy(mem.data() + c.page * kPageSize, c.bytes->data(), kPageSize);
            else
                std::memset(mem.data() + c.page * kPageSize, 0, kPageSize);
            dirty.push_back(c.page);
        }
        d.memories.push_back(std::move(mem));
        auto img = sample::full_image(d.memories.back());
        img.kind = SnapshotKind::kDiff;
        img.parent = d.parent;
        img.memory.clear();
        img.working_set = {{1, 2}};
        REQUIRE(add_pages(img, dirty, d.memories.back(), ZeroPages::kRecord));
        REQUIRE(write_snapshot(dir.file(d.names[i]), img));
    }
    return d;
}

std::vector<std::uint8_t> memory_of(const ScratchDir& dir, const std::string& name) {
    auto base = SnapshotFile::open(dir.file("base.snap"));
    REQUIRE(base);
    auto f = SnapshotFile::open(dir.file(name), OpenOptions{DataCheck::kFull});
    REQUIRE_MESSAGE(f, f.error().describe());
    std::vector<std::uint8_t> mem;
    test::apply(*base, mem);
    test::apply(*f, mem);
    return mem;
}

std::string open_error(const std::string& path, DataCheck check = DataCheck::kSection) {
    auto f = SnapshotFile::open(path, OpenOptions{check});
    REQUIRE_FALSE(f.has_value());
    return f.error().describe();
}

// Byte surgery on a thin file's one STORE run, resealed.
void patch_run(const std::string& path, std::uint32_t run, void (*edit)(PageRunEntry&)) {
    auto b = test::read_file(path);
    auto e = patch::run(b, run);
    edit(e);
    patch::set_run(b, run, e);
    patch::reseal_sections(b, SectionType::kPageIndex);
    patch::reseal_table_and_header(b);
    test::write_file(path, b);
}

Result<PackReport> pack(const ScratchDir& dir, const Diffs& d) {
    std::filesystem::path p = dir.file("base.snap");
    return pack_snapshots(p.parent_path().string(), d.names, "pages.store");
}

} // namespace

TEST_CASE("pack stores each distinct page content once, at any address, from any snapshot") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    std::vector<std::vector<std::uint8_t>> before;
    std::uint64_t standalone = 0;
    for (const auto& n : d.names) {
        before.push_back(test::read_file(dir.file(n)));
        standalone += before.back().size();
    }
    auto r = pack(dir, d);
    REQUIRE_MESSAGE(r, r.error().describe());
    CHECK(r->store == "pages.store");
    CHECK(r->pages == 9);       // 3 + 3 + 3 data pages
    CHECK(r->store_pages == 4); // X Y Z W
    CHECK(r->store_bytes == kStoreDataOffset + 4 * kPageSize);
    CHECK(std::filesystem::file_size(dir.file("pages.store")) == r->store_bytes);
    REQUIRE(r->files.size() == 3);
    CHECK(r->files[0].new_pages == 3);
    CHECK(r->files[1].new_pages == 1);
    CHECK(r->files[2].new_pages == 0);
    std::uint64_t packed = r->store_bytes;
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(r->files[i].pages == 3);
        CHECK(r->files[i].standalone_bytes == before[i].size());
        CHECK(r->files[i].bytes == std::filesystem::file_size(dir.file(d.names[i])));
        CHECK(r->files[i].bytes < before[i].size());
        packed += r->files[i].bytes;
    }
    CHECK(packed < standalone);
    // No temporary file is left behind.
    for (const auto& e : dir.entries())
        CHECK_MESSAGE(e.find(".tmp") == std::string::npos, e);

    for (std::size_t i = 0; i < 3; ++i) {
        auto f = SnapshotFile::open(dir.file(d.names[i]), OpenOptions{DataCheck::kFull});
        REQUIRE_MESSAGE(f, f.error().describe());
        CHECK(f->minor_version() == kPageStoreMinorVersion);
        REQUIRE(f->page_store());
        CHECK(f->page_store()->name == "pages.store");
        CHECK(f->page_store()->size == r->store_bytes);
        CHECK(f->parent() == d.parent);
        const MemoryStats m = f->memory_stats();
        CHECK(m.store_pages == 3);
        CHECK(m.pages_stored == 3);
        CHECK(m.stored_bytes == 0); // nothing in the file itself
        // Guest memory as the standalone file gave it.
        CHECK(memory_of(dir, d.names[i]) == d.memories[i]);
        // Unpacked, it is the file it was, byte for byte.
        auto back = self_contained_bytes(*f);
        REQUIRE(back);
        CHECK(*back == before[i]);
        // A different file from the standalone one, so its identity differs.
        auto orig = SnapshotFile::parse(before[i]);
        REQUIRE(orig);
        CHECK_FALSE(orig->content_hash() == f->content_hash());
    }
    // c's three pages are Z, Z, X: two guest pages map one store page.
    auto c = SnapshotFile::open(dir.file("c.snap"));
    REQUIRE(c);
    std::vector<std::uint64_t> offsets;
    for (const auto& run : c->page_runs()) {
        CHECK(run.encoding == PageEncoding::kStore);
        for (std::uint64_t p = 0; p < run.page_count; ++p)
            offsets.push_back(run.file_offset + p * kPageSize);
    }
    REQUIRE(offsets.size() == 3);
    CHECK(offsets[0] == offsets[1]);
    CHECK(offsets[2] == kStoreDataOffset); // X, stored first (by a)

    // Packed again: refused, the files are thin already.
    auto again = pack(dir, d);
    REQUIRE_FALSE(again);
    CHECK(again.error().describe().find("packed already") != std::string::npos);
}

TEST_CASE("store runs are mapped copy-on-write from the page store's descriptor") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    REQUIRE(pack(dir, d));
    auto f = SnapshotFile::open(dir.file("b.snap"));
    REQUIRE(f);
    for (const auto& run : f->page_runs()) {
        if (!run.raw())
            continue;
        REQUIRE(f->run_fd(run) >= 0);
        CHECK(f->run_fd(run) != f->fd());
        void* p = ::mmap(nullptr, run.bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE, f->run_fd(run),
                         static_cast<off_t>(run.file_offset));
        REQUIRE(p != MAP_FAILED);
        CHECK(std::memcmp(p, d.memories[1].data() + run.first_page * kPageSize, run.bytes()) == 0);
        static_cast<std::uint8_t*>(p)[0] ^= 1; // private: the store is not written
        ::munmap(p, run.bytes());
    }
    CHECK(memory_of(dir, "b.snap") == d.memories[1]);
}

TEST_CASE("zstd snapshots are packed page for page, and a store is not a snapshot") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    // c again, written zstd-compressed: its pages are decompressed into the store.
    {
        auto img = sample::full_image(d.memories[2]);
        img.kind = SnapshotKind::kDiff;
        img.parent = d.parent;
        img.memory.clear();
        img.working_set = {{1, 2}};
        REQUIRE(add_pages(img, std::vector<std::uint64_t>{10, 11, 12}, d.memories[2],
                          ZeroPages::kRecord));
        WriteOptions zstd;
        zstd.encoding = PageEncoding::kZstd;
        REQUIRE(write_snapshot(dir.file("c.snap"), img, zstd));
    }
    auto r = pack(dir, d);
    REQUIRE_MESSAGE(r, r.error().describe());
    CHECK(r->store_pages == 4);
    for (std::size_t i = 0; i < 3; ++i)
        CHECK(memory_of(dir, d.names[i]) == d.memories[i]);
    const auto e = open_error(dir.file("pages.store"));
    CHECK_MESSAGE(e.find("a page store, not a snapshot") != std::string::npos, e);
}

TEST_CASE("packing is deterministic") {
    ScratchDir one, two;
    Diffs d1 = write_diffs(one);
    Diffs d2 = write_diffs(two);
    REQUIRE(pack(one, d1));
    REQUIRE(pack(two, d2));
    for (const char* n : {"pages.store", "a.snap", "b.snap", "c.snap"})
        CHECK_MESSAGE(test::read_file(one.file(n)) == test::read_file(two.file(n)), n);
}

TEST_CASE("a thin file without its page store is refused, naming the store") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    REQUIRE(pack(dir, d));
    std::filesystem::remove(dir.file("pages.store"));
    const auto e = open_error(dir.file("a.snap"));
    CHECK_MESSAGE(e.find("cannot open page store") != std::string::npos, e);
    CHECK_MESSAGE(e.find("pages.store (named by PAGE_STORE)") != std::string::npos, e);
    // Something else in the store's place: a FIFO (which must not hang the
    // open) or a directory.
    REQUIRE(::mkfifo(dir.file("pages.store").c_str(), 0600) == 0);
    auto f = open_error(dir.file("a.snap"));
    CHECK_MESSAGE(f.find("pages.store is not a regular file") != std::string::npos, f);
    std::filesystem::remove(dir.file("pages.store"));
    std::filesystem::create_directory(dir.file("pages.store"));
    f = open_error(dir.file("a.snap"));
    CHECK_MESSAGE(f.find("pages.store is not a regular file") != std::string::npos, f);
    // Read from memory, it has no directory to find a store in.
    auto m = SnapshotFile::parse(test::read_file(dir.file("a.snap")));
    REQUIRE_FALSE(m);
    CHECK(m.error().describe().find("cannot be found") != std::string::npos);
}

TEST_CASE("a symbolic link to a thin file finds the store beside the file it names") {
    ScratchDir lib, elsewhere;
    Diffs d = write_diffs(lib);
    REQUIRE(pack(lib, d));
    const std::string link = elsewhere.file("route.snap");
    std::filesystem::create_symlink(lib.file("b.snap"), link);
    auto f = SnapshotFile::open(link, OpenOptions{DataCheck::kFull});
    REQUIRE_MESSAGE(f, f.error().describe());
    auto base = SnapshotFile::open(lib.file("base.snap"));
    REQUIRE(base);
    std::vector<std::uint8_t> mem;
    test::apply(*base, mem);
    test::apply(*f, mem);
    CHECK(mem == d.memories[1]);
    // A store beside the link is not the one: the file's own is used even
    // when another store of the right name sits next to the link.
    std::filesystem::copy_file(lib.file("pages.store"), elsewhere.file("pages.store"));
    std::filesystem::resize_file(elsewhere.file("pages.store"), 4096);
    CHECK(SnapshotFile::open(link, OpenOptions{DataCheck::kFull}));
    // A relative link, through a directory link too.
    std::filesystem::create_directory_symlink(
        std::filesystem::path(lib.file("b.snap")).parent_path(), elsewhere.file("libdir"));
    std::filesystem::create_symlink("libdir/c.snap", elsewhere.file("c.snap"));
    CHECK(SnapshotFile::open(elsewhere.file("c.snap"), OpenOptions{DataCheck::kFull}));
}

TEST_CASE("a thin file read from a pipe is refused: a pipe has no directory") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    REQUIRE(pack(dir, d));
    // A FIFO inside the library itself: the store is beside it, but what was
    // read is a stream, not the library's file.
    const std::string fifo = dir.file("a.fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const auto bytes = test::read_file(dir.file("a.snap"));
    std::thread writer([&] { test::write_file(fifo, bytes); });
    auto f = SnapshotFile::open(fifo);
    writer.join();
    REQUIRE_FALSE(f);
    CHECK_MESSAGE(f.error().describe().find("cannot be found") != std::string::npos,
                  f.error().describe());
}

TEST_CASE("a truncated or extended page store is refused by its size") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    auto r = pack(dir, d);
    REQUIRE(r);
    std::filesystem::resize_file(dir.file("pages.store"), r->store_bytes - kPageSize);
    auto e = open_error(dir.file("a.snap"), DataCheck::kNone);
    CHECK_MESSAGE(e.find(fmt::format("size mismatch (expected {} bytes from PAGE_STORE store_size, "
                                     "found {})",
                                     r->store_bytes, r->store_bytes - kPageSize)) !=
                      std::string::npos,
                  e);
    std::filesystem::resize_file(dir.file("pages.store"), r->store_bytes + kPageSize);
    e = open_error(dir.file("a.snap"), DataCheck::kNone);
    CHECK_MESSAGE(e.find("size mismatch") != std::string::npos, e);
}

TEST_CASE("a page store of another library is refused by its identity") {
    ScratchDir dir, other;
    Diffs d = write_diffs(dir);
    REQUIRE(pack(dir, d));
    // Another library of the same shape: its store has the same size but
    // other pages (a different base, so different diff contents).
    Diffs o = write_diffs(other);
    {
        // Change a page of other's c.snap before packing: one content differs.
        auto mem = o.memories[1];
        mem[8 * kPageSize + 7] ^= 0x5a;
        auto img = sample::full_image(mem);
        img.kind = SnapshotKind::kDiff;
        img.parent = o.parent;
        img.memory.clear();
        img.working_set = {{1, 2}};
        REQUIRE(add_pages(img, std::vector<std::uint64_t>{1, 7, 8}, mem, ZeroPages::kRecord));
        REQUIRE(write_snapshot(other.file("b.snap"), img));
    }
    REQUIRE(pack(other, o));
    REQUIRE(std::filesystem::file_size(dir.file("pages.store")) ==
            std::filesystem::file_size(other.file("pages.store")));
    std::filesystem::copy_file(other.file("pages.store"), dir.file("pages.store"),
                               std::filesystem::copy_options::overwrite_existing);
    const auto e = open_error(dir.file("a.snap"), DataCheck::kNone);
    CHECK_MESSAGE(e.find("identity mismatch (expected store_id") != std::string::npos, e);
}

TEST_CASE("a page store whose pages were changed is refused by the run checksums") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    REQUIRE(pack(dir, d));
    auto s = test::read_file(dir.file("pages.store"));
    s[kStoreDataOffset + 100] ^= 1; // page X, used by a, b and c
    test::write_file(dir.file("pages.store"), s);
    // The header still claims the old identity: only the pages tell.
    auto e = open_error(dir.file("b.snap"));
    CHECK_MESSAGE(e.find("checksum mismatch in page store") != std::string::npos, e);
    e = open_error(dir.file("b.snap"), DataCheck::kFull);
    CHECK_MESSAGE(e.find("checksum mismatch") != std::string::npos, e);

    // A malicious writer recomputes the store's identity and header checksum:
    // now the identity no longer matches the one the snapshot recorded.
    StoreHeader h;
    std::memcpy(&h, s.data(), sizeof h);
    const Hash128 id = store_content_id(std::span<const std::uint8_t>(s).subspan(kStoreDataOffset));
    std::memcpy(h.store_id, &id.low, 8);
    std::memcpy(h.store_id + 8, &id.high, 8);
    h.header_checksum = XXH3_64bits(&h, offsetof(StoreHeader, header_checksum));
    std::memcpy(s.data(), &h, sizeof h);
    test::write_file(dir.file("pages.store"), s);
    e = open_error(dir.file("b.snap"), DataCheck::kNone);
    CHECK_MESSAGE(e.find("identity mismatch") != std::string::npos, e);
}

TEST_CASE("a page store with a damaged header is refused") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    REQUIRE(pack(dir, d));
    auto s = test::read_file(dir.file("pages.store"));
    auto bad = s;
    bad[1] = 'X';
    test::write_file(dir.file("pages.store"), bad);
    auto e = open_error(dir.file("a.snap"), DataCheck::kNone);
    CHECK_MESSAGE(e.find("bad page store magic") != std::string::npos, e);
    bad = s;
    bad[200] = 1; // the zero rest of the header page
    test::write_file(dir.file("pages.store"), bad);
    e = open_error(dir.file("a.snap"), DataCheck::kNone);
    CHECK_MESSAGE(e.find("header checksum mismatch") == std::string::npos, e);
    CHECK_MESSAGE(e.find("reserved byte not zero (expected 0 at offset 200") != std::string::npos,
                  e);
    bad = s;
    bad[16] ^= 1; // page_count, checksum not recomputed
    test::write_file(dir.file("pages.store"), bad);
    e = open_error(dir.file("a.snap"), DataCheck::kNone);
    CHECK_MESSAGE(e.find("page store header checksum mismatch") != std::string::npos, e);
}

TEST_CASE("store runs out of the page store, misaligned or without a store are refused") {
    ScratchDir dir;
    Diffs d = write_diffs(dir);
    auto r = pack(dir, d);
    REQUIRE(r);
    // b: pages 1 (X), 7 (Y) and 8 (W) are three single-page runs (Y and W
    // are not adjacent in the store).
    const std::string a = dir.file("b.snap");
    const auto thin = test::read_file(a);
    auto restore = [&] { test::write_file(a, thin); };

    patch_run(a, 0, [](PageRunEntry& run) { run.file_offset = 4 * kPageSize + kPageSize; });
    auto e = open_error(a);
    CHECK_MESSAGE(e.find("store page run 0 out of the page store (expected within bytes 4096 to "
                         "20480 of pages.store, found offset 20480 size 4096)") !=
                      std::string::npos,
                  e);
    restore();
    patch_run(a, 0, [](PageRunEntry& run) { run.file_offset = 0; }); // the header page
    e = open_error(a);
    CHECK_MESSAGE(e.find("store page run 0 out of the page store") != std::string::npos, e);
    restore();
    patch_run(a, 0, [](PageRunEntry& run) { run.file_offset = ~std::uint64_t{0} & ~0xfffull; });
    e = open_error(a);
    CHECK_MESSAGE(e.find("out of the page store") != std::string::npos, e);
    restore();
    patch_run(a, 0, [](PageRunEntry& run) { run.file_offset += 8; });
    e = open_error(a);
    CHECK_MESSAGE(e.find("store page run 0 not page-aligned") != std::string::npos, e);
    restore();
    patch_run(a, 0, [](PageRunEntry& run) { run.stored_size += kPageSize; });
    e = open_error(a);
    CHECK_MESSAGE(e.find("store page run 0 size (expected 4096") != std::string::npos, e);
    restore();
    // Another page of the store, checksum recomputed: the file is valid and
    // names other bytes (the writer's own claim, like any raw run's).
    // Pointing at a page whose checksum does not match is caught:
    patch_run(a, 0, [](PageRunEntry& run) { run.file_offset = kStoreDataOffset + 3 * kPageSize; });
    e = open_error(a);
    CHECK_MESSAGE(e.find("checksum mismatch in page store") != std::string::npos, e);
    restore();

    // PAGE_STORE turned into an unknown optional section: the runs have no store.
    {
        auto b = thin;
        const auto i = patch::find_section(b, SectionType::kPageStore);
        auto s = patch::section(b, i);
        s.type = 99;
        s.flags = 0;
        patch::set_section(b, i, s);
        patch::reseal_table_and_header(b);
        test::write_file(a, b);
        e = open_error(a);
        CHECK_MESSAGE(
            e.find("store page run 0 in a file without a page store") != std::string::npos, e);
        restore();
    }
    // A store name with a path in it.
    {
        auto b = thin;
        const auto s = patch::section(b, patch::find_section(b, SectionType::kPageStore));
        b[s.offset + sizeof(PageStoreSection) + 1] = '/'; // "p/ges.store"
        patch::reseal_sections(b, SectionType::kPageStore);
        patch::reseal_table_and_header(b);
        test::write_file(a, b);
        e = open_error(a);
        CHECK_MESSAGE(e.find("PAGE_STORE name is not a plain file name") != std::string::npos, e);
        restore();
    }
    // A store size that the runs would fit in but the store does not have.
    {
        auto b = thin;
        const auto s = patch::section(b, patch::find_section(b, SectionType::kPageStore));
        auto ps = patch::get<PageStoreSection>(b, s.offset);
        ps.store_size += 64 * kPageSize;
        patch::put(b, s.offset, ps);
        patch::reseal_sections(b, SectionType::kPageStore);
        patch::reseal_table_and_header(b);
        test::write_file(a, b);
        e = open_error(a, DataCheck::kNone);
        CHECK_MESSAGE(e.find("size mismatch (expected") != std::string::npos, e);
        restore();
    }
    // Untouched, it still opens.
    CHECK(SnapshotFile::open(a, OpenOptions{DataCheck::kFull}));
}

} // namespace presnap::snapshot
