// Writing a snapshot and reading it back gives the same state and memory, for
// full and diff snapshots, raw and zstd page data.
#include <sys/mman.h>

#include <doctest/doctest.h>

#include "presnap/snapshot/image.h"
#include "presnap/snapshot/reader.h"
#include "sample.h"
#include "test_util.h"

using namespace presnap::snapshot;
using presnap::snapshot::test::ScratchDir;

namespace {

void check_same_state(const SnapshotFile& f, const SnapshotImage& image) {
    CHECK(f.kind() == image.kind);
    CHECK(f.flags() == image.flags);
    CHECK(f.guest_memory_size() == image.guest_memory_size);
    const VcpuState v = f.vcpu_state();
    CHECK(v.regs == image.vcpu.regs);
    CHECK(v.sregs == image.vcpu.sregs);
    CHECK(v.xsave == image.vcpu.xsave);
    CHECK(v.xcrs == image.vcpu.xcrs);
    CHECK(v.msrs == image.vcpu.msrs);
    CHECK(std::vector<std::uint8_t>(f.monitor_state().begin(), f.monitor_state().end()) ==
          image.monitor_state);
    CHECK(f.cpu_features() == image.cpu_features);
    CHECK(f.parent() == image.parent);
    CHECK(f.executable() == image.executable);
    CHECK(f.metadata_json() == image.metadata_json);
    CHECK(f.working_set() == image.working_set);
}

} // namespace

TEST_CASE("a full snapshot round trips its state and memory, raw and zstd") {
    const auto memory = sample::base_memory();
    const SnapshotImage image = sample::full_image(memory);
    for (PageEncoding encoding : {PageEncoding::kRaw, PageEncoding::kZstd}) {
        CAPTURE(encoding_name(static_cast<std::uint32_t>(encoding)));
        ScratchDir dir;
        WriteOptions options;
        options.encoding = encoding;
        auto summary = write_snapshot(dir.file("a.snap"), image, options);
        REQUIRE_MESSAGE(summary.has_value(), summary.error().describe());
        auto f = SnapshotFile::open(dir.file("a.snap"), {DataCheck::kFull});
        REQUIRE_MESSAGE(f.has_value(), f.error().describe());
        check_same_state(*f, image);
        CHECK(f->content_hash() == summary->content_hash);
        CHECK(f->file_size() == summary->file_size);
        std::vector<std::uint8_t> restored;
        test::apply(*f, restored);
        CHECK(restored == memory);
        const MemoryStats m = f->memory_stats();
        CHECK(m.pages_stored == 4); // pages 0, 1, 5, 9: zero pages are not stored
        CHECK(m.zero_pages == 0);
        CHECK(m.raw_bytes == 4 * kPageSize);
        CHECK(m.pages_stored == summary->pages_stored);
        CHECK(m.stored_bytes == summary->stored_bytes);
        if (encoding == PageEncoding::kZstd) {
            CHECK(m.zstd_runs == m.runs);
            CHECK(m.stored_bytes < m.raw_bytes / 4);
        } else {
            CHECK(m.raw_runs == m.runs);
            CHECK(m.stored_bytes == m.raw_bytes);
        }
    }
}

TEST_CASE("a diff snapshot restored over its parent gives the changed memory") {
    const auto base = sample::base_memory();
    const auto after = sample::after_memory();
    for (PageEncoding encoding : {PageEncoding::kRaw, PageEncoding::kZstd}) {
        CAPTURE(encoding_name(static_cast<std::uint32_t>(encoding)));
        ScratchDir dir;
        WriteOptions options;
        options.encoding = encoding;
        auto parent_summary =
            write_snapshot(dir.file("base.snap"), sample::full_image(base), options);
        REQUIRE(parent_summary.has_value());
        const SnapshotImage diff = sample::diff_image(after, parent_summary->content_hash);
        REQUIRE(write_snapshot(dir.file("diff.snap"), diff, options).has_value());

        auto parent = SnapshotFile::open(dir.file("base.snap"));
        auto child = SnapshotFile::open(dir.file("diff.snap"), {DataCheck::kFull});
        REQUIRE(parent.has_value());
        REQUIRE_MESSAGE(child.has_value(), child.error().describe());
        check_same_state(*child, diff);
        CHECK(child->verify_parent(*parent).has_value());

        std::vector<std::uint8_t> memory;
        test::apply(*parent, memory);
        test::apply(*child, memory);
        CHECK(memory == after);
        // Page 5 became zero: the diff records it as a zero run, not data.
        const MemoryStats m = child->memory_stats();
        CHECK(m.zero_pages == 1);
        CHECK(m.zero_runs == 1);
        CHECK(m.pages_stored == 2);
    }
}

TEST_CASE("raw runs are page-aligned and mmap copy-on-write from the file gives the pages") {
    const auto memory = sample::base_memory();
    ScratchDir dir;
    REQUIRE(write_snapshot(dir.file("a.snap"), sample::full_image(memory)).has_value());
    auto f = SnapshotFile::open(dir.file("a.snap"));
    REQUIRE(f.has_value());
    REQUIRE(f->fd() >= 0);
    for (const PageRun& run : f->page_runs()) {
        REQUIRE(run.encoding == PageEncoding::kRaw);
        CHECK(run.file_offset % kPageSize == 0);
        void* p = ::mmap(nullptr, run.bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE, f->fd(),
                         static_cast<off_t>(run.file_offset));
        REQUIRE(p != MAP_FAILED);
        auto* bytes = static_cast<std::uint8_t*>(p);
        CHECK(std::equal(bytes, bytes + run.bytes(), memory.begin() + run.first_page * kPageSize));
        bytes[0] ^= 0xff; // copy-on-write: the file is not changed
        ::munmap(p, run.bytes());
    }
    CHECK(SnapshotFile::open(dir.file("a.snap"), {DataCheck::kFull}).has_value());
}

TEST_CASE("zstd mode stores an incompressible run raw and aligned, and splits long runs") {
    std::vector<std::uint8_t> memory(64 * kPageSize, 0);
    std::uint64_t x = 88172645463325252ull; // xorshift: incompressible bytes
    for (std::size_t i = 0; i < 2 * kPageSize; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memory[3 * kPageSize + i] = static_cast<std::uint8_t>(x);
    }
    for (std::uint32_t p = 10; p < 50; ++p)
        sample::fill_page(memory.data() + p * kPageSize, p);
    SnapshotImage image = sample::full_image(sample::base_memory());
    image.guest_memory_size = memory.size();
    image.memory.clear();
    image.working_set.clear();
    REQUIRE(add_memory(image, 0, memory, ZeroPages::kSkip).has_value());
    REQUIRE(image.memory.size() == 2);

    WriteOptions options;
    options.encoding = PageEncoding::kZstd;
    options.compressed_run_pages = 16;
    auto bytes = serialize_snapshot(image, options);
    REQUIRE(bytes.has_value());
    auto f = SnapshotFile::parse(*bytes, {DataCheck::kFull});
    REQUIRE_MESSAGE(f.has_value(), f.error().describe());
    const auto& runs = f->page_runs();
    REQUIRE(runs.size() == 4); // 3-4 raw, then 10-25, 26-41, 42-49 in zstd
    CHECK(runs[0].encoding == PageEncoding::kRaw);
    CHECK(runs[0].file_offset % kPageSize == 0);
    CHECK(runs[1].page_count == 16);
    CHECK(runs[2].page_count == 16);
    CHECK(runs[3].page_count == 8);
    CHECK(runs[3].encoding == PageEncoding::kZstd);
    std::vector<std::uint8_t> restored;
    test::apply(*f, restored);
    CHECK(restored == memory);
}

TEST_CASE("the same image gives the same bytes, in memory and on disk") {
    const auto memory = sample::base_memory();
    const SnapshotImage image = sample::full_image(memory);
    WriteOptions options;
    options.encoding = PageEncoding::kZstd;
    auto a = serialize_snapshot(image, options);
    auto b = serialize_snapshot(image, options);
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(*a == *b);
    ScratchDir dir;
    REQUIRE(write_snapshot(dir.file("a.snap"), image, options).has_value());
    CHECK(test::read_file(dir.file("a.snap")) == *a);
}

TEST_CASE("the content hash changes when one byte of one page changes") {
    auto memory = sample::base_memory();
    WriteSummary s1, s2;
    REQUIRE(serialize_snapshot(sample::full_image(memory), {}, &s1).has_value());
    memory[9 * kPageSize + 4095] ^= 1;
    REQUIRE(serialize_snapshot(sample::full_image(memory), {}, &s2).has_value());
    CHECK_FALSE(s1.content_hash == s2.content_hash);
}

TEST_CASE("add_pages turns a dirty list into runs and keeps zero pages only when asked") {
    const auto after = sample::after_memory();
    SnapshotImage image;
    std::vector<std::uint64_t> dirty = {1, 2, 3, 5, 12, 13};
    REQUIRE(add_pages(image, dirty, after, ZeroPages::kRecord).has_value());
    // 1 data | 2-3 zero | 5 zero | 12 data | 13 zero
    REQUIRE(image.memory.size() == 5);
    CHECK(image.memory[0].first_page == 1);
    CHECK_FALSE(image.memory[0].zero);
    CHECK(image.memory[1].first_page == 2);
    CHECK(image.memory[1].page_count == 2);
    CHECK(image.memory[1].zero);
    CHECK(image.memory[2].first_page == 5);
    CHECK(image.memory[3].first_page == 12);
    CHECK_FALSE(image.memory[3].zero);
    CHECK(image.memory[4].zero);

    SnapshotImage skipping;
    REQUIRE(add_pages(skipping, dirty, after, ZeroPages::kSkip).has_value());
    REQUIRE(skipping.memory.size() == 2);
    CHECK(skipping.memory[1].first_page == 12);

    SnapshotImage unsorted;
    std::vector<std::uint64_t> bad = {3, 2};
    auto s = add_pages(unsorted, bad, after, ZeroPages::kSkip);
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().message == "pages not sorted and unique (expected page 4 or above, found 2)");
}

TEST_CASE("random memories and dirty sets round trip, full and diff, raw and zstd") {
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    auto next = [&] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    for (int seed = 0; seed < 40; ++seed) {
        CAPTURE(seed);
        const std::uint64_t pages = 1 + next() % 96;
        std::vector<std::uint8_t> base(pages * kPageSize, 0);
        for (std::uint64_t p = 0; p < pages; ++p)
            if (next() % 3 == 0)
                sample::fill_page(base.data() + p * kPageSize, static_cast<std::uint32_t>(next()));
        std::vector<std::uint8_t> after = base;
        std::vector<std::uint64_t> dirty;
        for (std::uint64_t p = 0; p < pages; ++p) {
            const auto roll = next() % 6;
            if (roll == 0) {
                std::memset(after.data() + p * kPageSize, 0, kPageSize);
                dirty.push_back(p);
            } else if (roll == 1) {
                after[p * kPageSize + next() % kPageSize] ^= 0x5a;
                dirty.push_back(p);
            }
        }
        WriteOptions options;
        options.encoding = seed % 2 ? PageEncoding::kZstd : PageEncoding::kRaw;
        options.compressed_run_pages = 1 + static_cast<std::uint32_t>(next() % 8);

        SnapshotImage full = sample::full_image(base, false);
        full.guest_memory_size = base.size();
        full.working_set.clear();
        WriteSummary full_summary;
        auto full_bytes = serialize_snapshot(full, options, &full_summary);
        REQUIRE_MESSAGE(full_bytes.has_value(), full_bytes.error().describe());

        SnapshotImage diff = sample::full_image(base, false);
        diff.kind = SnapshotKind::kDiff;
        diff.parent = full_summary.content_hash;
        diff.guest_memory_size = after.size();
        diff.working_set.clear();
        diff.memory.clear();
        REQUIRE(add_pages(diff, dirty, after, ZeroPages::kRecord).has_value());
        auto diff_bytes = serialize_snapshot(diff, options);
        REQUIRE_MESSAGE(diff_bytes.has_value(), diff_bytes.error().describe());

        auto parent = SnapshotFile::parse(*full_bytes, {DataCheck::kFull});
        auto child = SnapshotFile::parse(*diff_bytes, {DataCheck::kFull});
        REQUIRE_MESSAGE(parent.has_value(), parent.error().describe());
        REQUIRE_MESSAGE(child.has_value(), child.error().describe());
        CHECK(child->verify_parent(*parent).has_value());
        std::vector<std::uint8_t> memory;
        test::apply(*parent, memory);
        CHECK(memory == base);
        test::apply(*child, memory);
        CHECK(memory == after);
    }
}
