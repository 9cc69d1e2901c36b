// The reader rejects damaged files in its fixed order and never accepts a
// truncated or bit-flipped file.
#include <doctest/doctest.h>

#include "patch.h"
#include "presnap/snapshot/describe.h"
#include "presnap/snapshot/reader.h"
#include "sample.h"
#include "test_util.h"

using namespace presnap::snapshot;
using presnap::Errc;

namespace {

std::vector<std::uint8_t> small_file(PageEncoding encoding = PageEncoding::kZstd) {
    WriteOptions options;
    options.encoding = encoding;
    static const auto memory = sample::base_memory();
    auto bytes = serialize_snapshot(sample::full_image(memory, false), options);
    REQUIRE(bytes.has_value());
    return *bytes;
}

} // namespace

TEST_CASE("no proper prefix of a valid file is accepted") {
    const auto bytes = small_file();
    REQUIRE(SnapshotFile::parse(bytes).has_value());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        auto r = SnapshotFile::parse_view(std::span(bytes).first(n));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == Errc::kFormat);
    }
}

TEST_CASE("every single-bit flip outside the padding is rejected") {
    const auto bytes = small_file();
    // Bytes covered by no checksum: padding between sections.
    auto f = SnapshotFile::parse(bytes);
    REQUIRE(f.has_value());
    std::vector<bool> covered(bytes.size(), false);
    for (std::size_t i = 0; i < kHeaderSize; ++i)
        covered[i] = true;
    for (const SectionInfo& s : f->sections())
        for (std::uint64_t i = s.offset; i < s.offset + s.size; ++i)
            covered[i] = true;
    const auto table = f->header().section_table_offset;
    for (std::uint64_t i = table; i < table + f->sections().size() * sizeof(SectionEntry); ++i)
        covered[i] = true;
    std::size_t flipped = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (!covered[i])
            continue;
        auto copy = bytes;
        copy[i] ^= 0x10;
        CAPTURE(i);
        CHECK_FALSE(SnapshotFile::parse_view(copy, {DataCheck::kFull}).has_value());
        ++flipped;
    }
    CHECK(flipped > bytes.size() * 9 / 10);
}

TEST_CASE("validation reports the first problem in the documented order") {
    // Two defects: a bad version and a broken header checksum. The version
    // comes first.
    auto bytes = small_file();
    auto h = patch::header(bytes);
    h.major = 9;
    patch::set_header(bytes, h);
    auto r = SnapshotFile::parse(bytes);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message == "unsupported major version (expected 1, found 9.0)");
}

TEST_CASE("a newer minor version may set flags and reserved bytes this reader ignores") {
    auto bytes = small_file();
    auto h = patch::header(bytes);
    h.minor = kMinorVersion + 1;
    h.flags |= 1u << 7;
    h.reserved[0] = 0xaa;
    patch::set_header(bytes, h);
    patch::reseal_header(bytes);
    auto f = SnapshotFile::parse(bytes);
    REQUIRE_MESSAGE(f.has_value(), f.error().describe());
    CHECK(f->minor_version() == kMinorVersion + 1);

    h.minor = kMinorVersion;
    patch::set_header(bytes, h);
    patch::reseal_header(bytes);
    auto old = SnapshotFile::parse(bytes);
    REQUIRE_FALSE(old.has_value());
    CHECK(old.error().message == "unknown header flags (expected bits of 0x1, found 0x81)");
}

TEST_CASE("an unknown optional section is skipped and still listed") {
    auto bytes = small_file();
    const auto i = patch::find_section(bytes, SectionType::kMetadata);
    auto e = patch::section(bytes, i);
    e.type = 77;
    e.flags = 0;
    patch::set_section(bytes, i, e);
    patch::reseal_table_and_header(bytes);
    auto f = SnapshotFile::parse(bytes);
    REQUIRE_MESSAGE(f.has_value(), f.error().describe());
    CHECK(f->metadata_json().empty());
    CHECK(f->sections()[i].type == 77);
    CHECK_FALSE(f->section(SectionType::kMetadata).has_value());
}

TEST_CASE("DataCheck::kNone does not read page data; kSection catches a damaged page") {
    auto bytes = small_file(PageEncoding::kRaw);
    auto f = SnapshotFile::parse(bytes);
    REQUIRE(f.has_value());
    const PageRun run = f->page_runs()[0];
    bytes[run.file_offset + 1] ^= 1;
    CHECK(SnapshotFile::parse(bytes, {DataCheck::kNone}).has_value());
    auto r = SnapshotFile::parse(bytes, {DataCheck::kSection});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.starts_with("section 9 (PAGE_DATA) checksum mismatch (stored "));
    // read_run still checks the run's own checksum.
    auto lazy = SnapshotFile::parse(bytes, {DataCheck::kNone});
    std::vector<std::uint8_t> out(run.bytes());
    auto s = lazy->read_run(lazy->page_runs()[0], out);
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().message.starts_with("page run at pages 0 to 1 checksum mismatch (stored "));
}

TEST_CASE("read_run wants a buffer of exactly the run's size") {
    auto f = SnapshotFile::parse(small_file());
    REQUIRE(f.has_value());
    std::vector<std::uint8_t> out(kPageSize);
    auto s = f->read_run(f->page_runs()[0], out);
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().message ==
          "buffer for page run at page 0 has the wrong size (expected 8192, found 4096)");
}

TEST_CASE("verify_parent names both hashes and refuses a full snapshot") {
    const auto base = sample::base_memory();
    const auto after = sample::after_memory();
    auto parent_bytes = serialize_snapshot(sample::full_image(base));
    REQUIRE(parent_bytes.has_value());
    auto parent = SnapshotFile::parse(*parent_bytes);
    REQUIRE(parent.has_value());
    auto child =
        SnapshotFile::parse(*serialize_snapshot(sample::diff_image(after, parent->content_hash())));
    REQUIRE(child.has_value());
    CHECK(child->verify_parent(*parent).has_value());
    CHECK(child->verify_parent(parent->content_hash()).has_value());

    auto stranger = SnapshotFile::parse(*serialize_snapshot(sample::full_image(after)));
    REQUIRE(stranger.has_value());
    auto s = child->verify_parent(*stranger);
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().message == "parent mismatch (expected " + parent->content_hash().hex() +
                                   ", found " + stranger->content_hash().hex() + ")");
    auto full = parent->verify_parent(*stranger);
    REQUIRE_FALSE(full.has_value());
    CHECK(full.error().message == "not a diff snapshot (expected kind diff, found full)");
}

TEST_CASE("open names the file in its errors") {
    auto r = SnapshotFile::open("/nonexistent/x.snap");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().describe() == "/nonexistent/x.snap: open: No such file or directory");
    test::ScratchDir dir;
    test::write_file(dir.file("empty.snap"), {});
    auto e = SnapshotFile::open(dir.file("empty.snap"));
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().describe() ==
          dir.file("empty.snap") +
              ": file too short for a snapshot header (expected at least 128 bytes, found 0)");
}

TEST_CASE("descriptions are well-formed json and mention what the file holds") {
    auto f = SnapshotFile::parse(small_file());
    REQUIRE(f.has_value());
    const std::string json = describe_json(*f, {true});
    CHECK(is_valid_json(json));
    CHECK(json.find("\"kind\":\"full\"") != std::string::npos);
    CHECK(json.find("\"pages_stored\":4") != std::string::npos);
    CHECK(json.find("\"syscalls\":{\"read\":2,\"write\":1}") != std::string::npos);
    const std::string text = describe_text(*f);
    CHECK(text.find("kind:           full\n") != std::string::npos);
    CHECK(text.find("cpu features:   fpu cx8 cmov mmx fxsr sse sse2 syscall nx lm xcr0.x87 "
                    "xcr0.sse\n") != std::string::npos);
}
