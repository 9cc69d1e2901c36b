// The writer is atomic (temporary name, rename; nothing left behind on error)
// and refuses images the format cannot hold.
#include <csignal>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "presnap/snapshot/image.h"
#include "presnap/snapshot/reader.h"
#include "sample.h"
#include "test_util.h"

using namespace presnap::snapshot;
using presnap::Errc;
using presnap::snapshot::test::ScratchDir;

TEST_CASE("a failed write leaves the old file in place and no temporary file") {
    ScratchDir dir;
    const auto memory = sample::base_memory();
    const std::string path = dir.file("a.snap");
    REQUIRE(write_snapshot(path, sample::full_image(memory)).has_value());
    const auto before = test::read_file(path);

    SnapshotImage bad = sample::full_image(memory);
    bad.vcpu.regs.resize(10);
    auto r = write_snapshot(path, bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::kInvalidArgument);
    CHECK(r.error().describe() == path + ": bad REGS size (expected 144, found 10)");
    CHECK(test::read_file(path) == before);
    CHECK(dir.entries() == std::vector<std::string>{"a.snap"});
}

TEST_CASE("a write into a missing directory fails with the path and creates nothing") {
    ScratchDir dir;
    const std::string path = dir.file("no/such/dir/a.snap");
    auto r = write_snapshot(path, sample::full_image(sample::base_memory()));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::kIo);
    CHECK(r.error().context == path);
    CHECK(dir.entries().empty());
}

TEST_CASE("a write replaces an existing file in one rename and the result is world-readable") {
    ScratchDir dir;
    const std::string path = dir.file("a.snap");
    test::write_file(path, {1, 2, 3});
    REQUIRE(write_snapshot(path, sample::full_image(sample::base_memory())).has_value());
    CHECK(SnapshotFile::open(path).has_value());
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
    CHECK(dir.entries() == std::vector<std::string>{"a.snap"});
}

TEST_CASE("the writer refuses images the format cannot hold, naming the value") {
    const auto memory = sample::base_memory();
    auto message = [](const SnapshotImage& image, WriteOptions options = {}) {
        auto r = serialize_snapshot(image, options);
        REQUIRE_FALSE(r.has_value());
        return r.error().message;
    };
    SnapshotImage diff_without_parent = sample::full_image(memory);
    diff_without_parent.kind = SnapshotKind::kDiff;
    CHECK(message(diff_without_parent) ==
          "a diff snapshot needs its parent's hash (expected a parent, found none)");

    SnapshotImage odd_memory = sample::full_image(memory);
    odd_memory.guest_memory_size = 5000;
    CHECK(message(odd_memory) == "bad guest memory size (expected a non-zero multiple of 4096 up "
                                 "to 1099511627776, found 5000)");

    SnapshotImage outside = sample::full_image(memory);
    outside.memory.back().first_page = 15; // 1 page at 15 is fine ...
    outside.memory.back().page_count = 2;  // ... 2 are not
    outside.memory.back().data = {memory.data(), 2 * kPageSize};
    CHECK(message(outside) == "memory run 2 outside guest memory (pages 15 +2, guest has 16)");

    SnapshotImage overlapping = sample::full_image(memory);
    overlapping.memory[1].first_page = 1;
    CHECK(message(overlapping) ==
          "memory run 1 not sorted or overlapping (expected page 2 or above, found 1)");

    SnapshotImage bad_json = sample::full_image(memory);
    bad_json.metadata_json = "{\"a\":}";
    CHECK(message(bad_json) == "metadata is not valid json (error at byte 5)");

    WriteOptions long_runs;
    long_runs.encoding = PageEncoding::kZstd;
    long_runs.compressed_run_pages = kMaxCompressedRunPages + 1;
    CHECK(message(sample::full_image(memory), long_runs) ==
          "bad compressed run length (expected 1 to 1024 pages, found 1025)");
}

TEST_CASE("an I/O error in the middle of a write removes the temporary file") {
    ScratchDir dir;
    const std::string path = dir.file("a.snap");
    test::write_file(path, {1, 2, 3});
    // In a child: a file size limit of 8 KiB makes write() fail with EFBIG
    // part-way through a 25 KiB raw snapshot.
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        struct rlimit limit {
            8192, 8192
        };
        ::setrlimit(RLIMIT_FSIZE, &limit);
        const auto memory = sample::base_memory();
        auto r = write_snapshot(path, sample::full_image(memory));
        const bool ok = !r.has_value() && r.error().code == Errc::kIo &&
                        r.error().describe() == path + ": write: File too large";
        ::_exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(test::read_file(path) == std::vector<std::uint8_t>{1, 2, 3});
    CHECK(dir.entries() == std::vector<std::string>{"a.snap"});
}
