// The readers built on the checked JSON-lines reader, through their public
// entry points: what the old hand-written loops let through and are now
// refused (a shard number that wrapped, a count a double rounded, a key
// twice, a FIFO, a cut timings.jsonl).
#include "presnap/library/build.h"
#include "presnap/library/library.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <vector>

#include <doctest/doctest.h>

using namespace presnap;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "presnap-jsonlr-XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    void write(const std::string& name, const std::string& text) const {
        std::ofstream(path / name, std::ios::binary) << text;
    }
};

const std::string kHeader =
    R"({"format":"presnap-library","version":1,"generator":"presnap 0.1.0",)"
    R"("program":"/bin/x","base":"base.snap","base_bytes":4096,"requests":9,"failed":1})"
    "\n";

std::string entry(const std::string& file, const std::string& pages = "3") {
    return R"({"type":"snapshot","file":")" + file +
           R"(","segments":["00000000000000ab"],"names":["a"],"weight":0.5,"base_us":100.0,)"
           R"("snapshot_us":10.0,"benefit_us":90.0,"pages":)" +
           pages +
           R"(,"bytes":12288,"route_requests":2,"warmup":"w","held_out":"h",)"
           R"("warmup_response":"r\n"})"
           "\n";
}

std::string library_error(const TempDir& d) {
    auto r = library::open_library(d.path.string());
    REQUIRE_FALSE(r.has_value());
    return r.error().describe();
}

// A shard directory whose shard.jsonl has this header; the reader stops at
// the header, before any snapshot file is looked at.
std::string combine_error(const std::string& shard_header) {
    TempDir shard, out;
    shard.write("shard.jsonl", shard_header + "\n");
    std::vector<std::string> dirs{shard.path.string()};
    auto r = library::combine_shards(dirs, (out.path / "lib").string());
    REQUIRE_FALSE(r.has_value());
    return r.error().describe();
}

std::string shard_header(const std::string& shard, const std::string& shards) {
    return R"({"format":"presnap-library-shard","version":1,"shard":)" + shard + R"(,"shards":)" +
           shards +
           R"(,"program":"/bin/x","base_hash":"00000000000000000000000000000000",)"
           R"("map_hash":"0000000000000001","plan_hash":"0000000000000002","routes":2,)"
           R"("to_make":2,"max_bytes":0,"base_bytes":4096,"requests":2,"failed":0})";
}

} // namespace

TEST_CASE("manifest: counts are decided on the text, keys are unique, a FIFO is refused") {
    TempDir d;
    d.write("manifest.jsonl", kHeader + entry("s001.snap", "1e3"));
    auto ok = library::open_library(d.path.string());
    REQUIRE_MESSAGE(ok.has_value(), (ok ? "" : ok.error().describe()));
    CHECK(ok->snapshots[0].pages == 1000);

    // A double rounds 8999999999999999.5 to 9e15, an integer.
    d.write("manifest.jsonl", kHeader + entry("s001.snap", "8999999999999999.5"));
    CHECK(library_error(d).find(":2: \"pages\" is not a count (expected an integer from 0 to "
                                "9007199254740992, found 8999999999999999.5)") !=
          std::string::npos);
    d.write("manifest.jsonl", kHeader + entry("s001.snap", "9007199254740993"));
    CHECK(library_error(d).find("\"pages\" is not a count") != std::string::npos);
    d.write("manifest.jsonl", kHeader + entry("s001.snap", "1e300"));
    CHECK(library_error(d).find("found 1e300)") != std::string::npos);

    std::string twice = entry("s001.snap");
    twice.insert(1, R"("file":"s009.snap",)");
    d.write("manifest.jsonl", kHeader + twice);
    CHECK(library_error(d).find(":2: not JSON: key \"file\" twice in one object") !=
          std::string::npos);

    // A hostile file name is quoted cut short.
    d.write("manifest.jsonl", kHeader + entry(std::string(1 << 20, 'x')));
    std::string e = library_error(d);
    CHECK(e.find("\"file\" must be a name like s001.snap") != std::string::npos);
    CHECK(e.size() < 400);

    fs::remove(d.path / "manifest.jsonl");
    REQUIRE(::mkfifo((d.path / "manifest.jsonl").c_str(), 0600) == 0);
    CHECK(library_error(d).find("manifest.jsonl: not a regular file") != std::string::npos);
}

TEST_CASE("timings.jsonl: a cut file and an out-of-range count are refused") {
    TempDir d;
    std::string header = kHeader;
    header.insert(header.size() - 2, R"(,"deterministic":true,"timings":"timings.jsonl")");
    std::string e = entry("s001.snap");
    for (const char* key :
         {R"("base_us":100.0,)", R"("snapshot_us":10.0,)", R"("benefit_us":90.0,)"})
        e.erase(e.find(key), std::string(key).size());
    d.write("manifest.jsonl", header + e);
    const std::string th = R"({"format":"presnap-library-timings","version":1})"
                           "\n";
    const std::string line = R"({"type":"timings","file":"s001.snap","base_us":1,)"
                             R"("snapshot_us":1,"benefit_us":0,"warmup_exits":)";
    d.write("timings.jsonl", th + line + "7}\n");
    auto ok = library::open_library(d.path.string());
    REQUIRE_MESSAGE(ok.has_value(), (ok ? "" : ok.error().describe()));
    CHECK(ok->snapshots[0].warmup_exits == 7);
    d.write("timings.jsonl", th + line + "7}");
    CHECK(library_error(d).find("timings.jsonl:2: the last line has no newline") !=
          std::string::npos);
    d.write("timings.jsonl", th + line + "-7}\n");
    CHECK(library_error(d).find("timings.jsonl:2: \"warmup_exits\" is not a count") !=
          std::string::npos);
    d.write("timings.jsonl", "");
    CHECK(library_error(d).find("timings.jsonl: empty") != std::string::npos);
}

TEST_CASE("shard.jsonl: a shard number past 2^32 is refused, not wrapped to shard 1") {
    // Before, 4294967297 was cast to unsigned: shard 1 of 3.
    CHECK(combine_error(shard_header("4294967297", "3"))
              .find("shard.jsonl:1: \"shard\" is not a count (expected an integer from 0 to "
                    "4096, found 4294967297)") != std::string::npos);
    CHECK(combine_error(shard_header("1", "4294967299")).find("\"shards\" is not a count") !=
          std::string::npos);
    CHECK(combine_error(shard_header("4", "3")).find("shard 4/3 is out of range") !=
          std::string::npos);
    CHECK(combine_error(shard_header("1.5", "3")).find("found 1.5)") != std::string::npos);
    // A well-formed header gets past the reader (to the missing base).
    CHECK(combine_error(shard_header("1", "1")).find("shard.jsonl") == std::string::npos);
}
