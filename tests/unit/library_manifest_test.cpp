// The library manifest reader against written manifests: a good one, and the
// hostile ones a reader must refuse (paths out of the directory, bad ids,
// wrong versions, cut files, wrong types).
#include "presnap/library/library.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <doctest/doctest.h>

using namespace presnap;
namespace fs = std::filesystem;

namespace {

struct TempLib {
    fs::path path;
    TempLib() {
        std::string tmpl = (fs::temp_directory_path() / "presnap-lib-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempLib() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    void write(const std::string& text) const { std::ofstream(path / "manifest.jsonl") << text; }
};

const char* kHeader = R"({"format":"presnap-library","version":1,"generator":"presnap 0.1.0",)"
                      R"("program":"/bin/x","base":"base.snap","base_bytes":4096,"requests":9,)"
                      R"("failed":1})"
                      "\n";

std::string entry(const std::string& file, const std::string& extra = "") {
    return R"({"type":"snapshot","file":")" + file +
           R"(","segments":["00000000000000ab","00000000000000cd"],"names":["a","b"],)"
           R"("weight":0.5,"base_us":100.0,"snapshot_us":10.0,"benefit_us":90.0,"pages":3,)"
           R"("bytes":12288,"route_requests":2,"warmup":"pi 10","held_out":"pi 20",)"
           R"("warmup_response":"3.14\n")" +
           extra + "}\n";
}

std::string error_of(const TempLib& lib) {
    auto r = library::open_library(lib.path.string());
    REQUIRE_FALSE(r.has_value());
    return r.error().describe();
}

} // namespace

TEST_CASE("a manifest is read field by field, in rank order") {
    TempLib lib;
    lib.write(std::string(kHeader) + entry("s001.snap") +
              R"({"type":"later-kind","x":1})"
              "\n" +
              entry("s002.snap", R"(,"unknown_key":[1,2])"));
    auto r = library::open_library(lib.path.string() + "/");
    REQUIRE(r.has_value());
    CHECK(r->program == "/bin/x");
    CHECK(r->base_path == (lib.path / "base.snap").string());
    CHECK(r->requests == 9);
    REQUIRE(r->snapshots.size() == 2);
    const auto& e = r->snapshots[0];
    CHECK(e.id == "s001");
    CHECK(e.path == (lib.path / "s001.snap").string());
    CHECK(e.segments == std::vector<uint64_t>{0xab, 0xcd});
    CHECK(e.names == std::vector<std::string>{"a", "b"});
    CHECK(e.benefit_us == 90.0);
    CHECK(e.warmup_response == "3.14\n");
    CHECK(r->find("s002") == &r->snapshots[1]);
    CHECK(r->find("s002.snap") == &r->snapshots[1]);
    CHECK(r->find("s003") == nullptr);
}

TEST_CASE("hostile manifests are refused with the line and the reason") {
    TempLib lib;
    SUBCASE("a file outside the directory") {
        lib.write(std::string(kHeader) + entry("../../etc/passwd"));
        CHECK(error_of(lib).find(":2: \"file\" must be a name like s001.snap") !=
              std::string::npos);
    }
    SUBCASE("an absolute path") {
        lib.write(std::string(kHeader) + entry("/s001.snap"));
        CHECK(error_of(lib).find("must be a name like") != std::string::npos);
    }
    SUBCASE("a file listed twice") {
        lib.write(std::string(kHeader) + entry("s001.snap") + entry("s001.snap"));
        CHECK(error_of(lib).find("listed twice") != std::string::npos);
    }
    SUBCASE("a later version") {
        std::string h = kHeader;
        h.replace(h.find("\"version\":1"), 11, "\"version\":2");
        lib.write(h);
        CHECK(error_of(lib).find("version 2 is not supported") != std::string::npos);
    }
    SUBCASE("not a library") {
        lib.write("{\"format\":\"presnap-history\",\"version\":1}\n");
        CHECK(error_of(lib).find("not a presnap library manifest") != std::string::npos);
    }
    SUBCASE("a cut last line") {
        std::string text = std::string(kHeader) + entry("s001.snap");
        lib.write(text.substr(0, text.size() - 1));
        CHECK(error_of(lib).find("no newline") != std::string::npos);
    }
    SUBCASE("a bad segment id") {
        std::string e = entry("s001.snap");
        e.replace(e.find("00000000000000ab"), 16, "zz");
        lib.write(std::string(kHeader) + e);
        CHECK(error_of(lib).find("16-hex-digit") != std::string::npos);
    }
    SUBCASE("a count that is negative or fractional") {
        std::string e = entry("s001.snap");
        e.replace(e.find("\"pages\":3"), 9, "\"pages\":-3");
        lib.write(std::string(kHeader) + e);
        CHECK(error_of(lib).find("\"pages\" is not a count") != std::string::npos);
    }
    SUBCASE("a string where a number goes") {
        std::string e = entry("s001.snap");
        e.replace(e.find("\"weight\":0.5"), 12, "\"weight\":\"x\"");
        lib.write(std::string(kHeader) + e);
        CHECK(error_of(lib).find("\"weight\" is a string") != std::string::npos);
    }
    SUBCASE("an empty manifest") {
        lib.write("");
        CHECK(error_of(lib).find("empty manifest") != std::string::npos);
    }
    SUBCASE("no manifest") {
        CHECK(error_of(lib).find("cannot open") != std::string::npos);
    }
}
