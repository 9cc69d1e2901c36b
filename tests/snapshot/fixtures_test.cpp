// The checked-in fixtures (tests/fixtures/snapshot/): golden files read back
// to the sample state; every corrupt file is rejected with its own message,
// the one expected-errors.txt gives.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <doctest/doctest.h>

#include "presnap/snapshot/reader.h"
#include "sample.h"
#include "test_util.h"

using namespace presnap::snapshot;

namespace {

struct Expectation {
    std::string file;
    std::vector<std::string> options; // --parent=FILE, --check-host
    std::string message;              // ends in '*': a prefix
};

std::vector<Expectation> load_expectations() {
    std::ifstream in(test::fixtures_dir() + "/expected-errors.txt");
    REQUIRE(in.good());
    std::vector<Expectation> out;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#')
            continue;
        const auto bar = line.find(" | ");
        REQUIRE(bar != std::string::npos);
        Expectation e;
        std::istringstream words(line.substr(0, bar));
        words >> e.file;
        for (std::string w; words >> w;)
            e.options.push_back(w);
        e.message = line.substr(bar + 3);
        out.push_back(e);
    }
    return out;
}

// What snapinfo does with the same options, through the library.
presnap::Status check(const Expectation& e) {
    const std::string dir = test::fixtures_dir() + "/";
    auto f = SnapshotFile::open(dir + e.file, {DataCheck::kFull});
    if (!f)
        return std::unexpected(f.error());
    for (const std::string& option : e.options) {
        if (option.starts_with("--parent=")) {
            auto parent = SnapshotFile::open(dir + option.substr(9));
            REQUIRE(parent.has_value());
            if (auto s = f->verify_parent(*parent); !s)
                return s;
        } else if (option == "--check-host") {
            if (auto s = f->check_host(host_cpu_features()); !s)
                return s;
        } else {
            FAIL("unknown option in expected-errors.txt: " << option);
        }
    }
    return {};
}

const std::set<std::string> kGolden = {"full-raw.snap", "full-zstd.snap", "diff-raw.snap",
                                       "diff-zstd.snap", "diff-thin.snap"};

} // namespace

TEST_CASE("every corrupt fixture is rejected with its own expected message") {
    const auto expectations = load_expectations();
    CHECK(expectations.size() >= 20);
    std::set<std::string> messages;
    for (const Expectation& e : expectations) {
        CAPTURE(e.file);
        auto s = check(e);
        REQUIRE_FALSE(s.has_value());
        CHECK(s.error().code != presnap::Errc::kIo);
        if (e.message.ends_with("*"))
            CHECK(s.error().message.starts_with(e.message.substr(0, e.message.size() - 1)));
        else
            CHECK(s.error().message == e.message);
        CHECK_MESSAGE(messages.insert(e.message).second, "two fixtures share a message");
    }
}

TEST_CASE("every fixture file is either golden or listed with its expected error") {
    std::set<std::string> listed;
    for (const Expectation& e : load_expectations())
        listed.insert(e.file);
    std::size_t files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(test::fixtures_dir())) {
        const std::string name = entry.path().filename().string();
        if (!name.ends_with(".snap"))
            continue;
        ++files;
        CHECK_MESSAGE((kGolden.count(name) == 1) != (listed.count(name) == 1), name);
    }
    CHECK(files == kGolden.size() + listed.size());
}

TEST_CASE("the packed golden fixture reads back as diff-raw does, its pages in pages.store") {
    const std::string dir = test::fixtures_dir() + "/";
    auto full = SnapshotFile::open(dir + "full-raw.snap", {DataCheck::kFull});
    auto thin = SnapshotFile::open(dir + "diff-thin.snap", {DataCheck::kFull});
    REQUIRE_MESSAGE(thin.has_value(), thin.error().describe());
    REQUIRE(full.has_value());
    REQUIRE(thin->page_store().has_value());
    CHECK(thin->page_store()->name == "pages.store");
    CHECK(thin->minor_version() == 1);
    CHECK(thin->verify_parent(*full).has_value());
    std::vector<std::uint8_t> memory;
    test::apply(*full, memory);
    test::apply(*thin, memory);
    CHECK(memory == sample::after_memory());
}

TEST_CASE("golden fixtures read back to the sample state, diffs over their parents") {
    const std::string dir = test::fixtures_dir() + "/";
    for (const char* encoding : {"raw", "zstd"}) {
        CAPTURE(encoding);
        auto full = SnapshotFile::open(dir + "full-" + encoding + ".snap", {DataCheck::kFull});
        auto diff = SnapshotFile::open(dir + "diff-" + encoding + ".snap", {DataCheck::kFull});
        REQUIRE_MESSAGE(full.has_value(), full.error().describe());
        REQUIRE_MESSAGE(diff.has_value(), diff.error().describe());
        CHECK(diff->verify_parent(*full).has_value());
        CHECK(full->check_host(host_cpu_features()).has_value());
        std::vector<std::uint8_t> memory;
        test::apply(*full, memory);
        CHECK(memory == sample::base_memory());
        test::apply(*diff, memory);
        CHECK(memory == sample::after_memory());
        const auto base = sample::base_memory();
        CHECK(full->vcpu_state().msrs == sample::full_image(base).vcpu.msrs);
    }
}
