// The checked JSON-lines reader (libcore/format/jsonl.h) against hostile
// values: numbers no double holds exactly, out of range, negative zero, huge
// strings and keys, duplicate keys, cut files, FIFOs and symbolic links.
#include "../../libcore/format/jsonl.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

using namespace presnap;
namespace fs = std::filesystem;
namespace json = analysis::json;

namespace {

json::Value parse(const std::string& text) {
    json::Value v;
    std::string err;
    REQUIRE_MESSAGE(json::parse(text, v, err), err);
    return v;
}

std::optional<uint64_t> count_of(const std::string& number) {
    return jsonl::as_count(parse(number));
}

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "presnap-jsonl-XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

} // namespace

TEST_CASE("exact_integer decides on the text: no double rounding, no cast out of range") {
    CHECK(jsonl::exact_integer("0") == 0);
    CHECK(jsonl::exact_integer("-0") == 0);
    CHECK(jsonl::exact_integer("-0.0e7") == 0);
    CHECK(jsonl::exact_integer("17") == 17);
    CHECK(jsonl::exact_integer("-17") == -17);
    CHECK(jsonl::exact_integer("1e3") == 1000);
    CHECK(jsonl::exact_integer("1000.000") == 1000);
    CHECK(jsonl::exact_integer("0.5e1") == 5);
    CHECK(jsonl::exact_integer("0.0005E4") == 5);
    CHECK(jsonl::exact_integer("12500e-2") == 125);
    CHECK(jsonl::exact_integer("9007199254740992") == int64_t{1} << 53);
    CHECK(jsonl::exact_integer("-9007199254740992") == -(int64_t{1} << 53));
    CHECK(jsonl::exact_integer("9.007199254740992e15") == int64_t{1} << 53);
    // A double rounds these to 2^53 or to an integer; the text says otherwise.
    CHECK_FALSE(jsonl::exact_integer("9007199254740993"));
    CHECK_FALSE(jsonl::exact_integer("9007199254740992.5"));
    CHECK_FALSE(jsonl::exact_integer("8999999999999999.5"));
    CHECK_FALSE(jsonl::exact_integer("4503599627370495.5"));
    CHECK_FALSE(jsonl::exact_integer("1.00000000000000000001"));
    CHECK_FALSE(jsonl::exact_integer("1.5"));
    CHECK_FALSE(jsonl::exact_integer("125e-3"));
    // Far out of range, however written.
    CHECK_FALSE(jsonl::exact_integer("1e300"));
    CHECK_FALSE(jsonl::exact_integer("-1e300"));
    CHECK_FALSE(jsonl::exact_integer("1e999999999999999999999"));
    CHECK_FALSE(jsonl::exact_integer("1e-999999999999999999999"));
    CHECK_FALSE(jsonl::exact_integer("18446744073709551616"));
    CHECK_FALSE(jsonl::exact_integer("10000000000000000"));
    CHECK(jsonl::exact_integer("0e999999999999") == 0);
    CHECK(jsonl::exact_integer("100000000000000000000e-10") == 10'000'000'000);
    CHECK_FALSE(jsonl::exact_integer("1" + std::string(100000, '0')));
    CHECK(jsonl::exact_integer("1" + std::string(100000, '0') + "e-100000") == 1);
    // A smaller bound.
    CHECK(jsonl::exact_integer("1000", 1000) == 1000);
    CHECK_FALSE(jsonl::exact_integer("1001", 1000));
    CHECK_FALSE(jsonl::exact_integer("-1001", 1000));
    // Not JSON numbers.
    for (const char* bad : {"", "-", "+1", "1.", ".5", "1e", "1e+", "0x10", "NaN", "Infinity",
                            "-Infinity", "1 ", " 1", "1_000", "nan"})
        CHECK_MESSAGE(!jsonl::exact_integer(bad), bad);
}

TEST_CASE("as_count, as_integer and as_number on parsed values") {
    CHECK(count_of("12") == 12);
    CHECK(count_of("-0") == 0);
    CHECK(count_of("9007199254740992") == uint64_t{1} << 53);
    CHECK_FALSE(count_of("9007199254740993"));
    CHECK_FALSE(count_of("18446744073709551615"));
    CHECK_FALSE(count_of("18446744073709551616"));
    CHECK_FALSE(count_of("-1"));
    CHECK_FALSE(count_of("1e300"));
    CHECK_FALSE(count_of("1e-300"));
    CHECK_FALSE(count_of("2.5"));
    CHECK_FALSE(count_of("\"12\""));
    CHECK_FALSE(count_of("true"));
    CHECK_FALSE(count_of("null"));
    CHECK(jsonl::as_count(parse("1000000000"), 1'000'000'000) == 1'000'000'000);
    CHECK_FALSE(jsonl::as_count(parse("1000000001"), 1'000'000'000));
    CHECK(jsonl::as_integer(parse("-9007199254740992")) == -(int64_t{1} << 53));
    CHECK_FALSE(jsonl::as_integer(parse("-9007199254740993")));
    CHECK_FALSE(jsonl::as_integer(parse("-9223372036854775809")));
    CHECK_FALSE(jsonl::as_integer(parse("-1e300")));
    CHECK(jsonl::as_number(parse("1e300")) == 1e300);
    CHECK(jsonl::as_number(parse("-0.0")) == 0.0);
    CHECK(std::signbit(*jsonl::as_number(parse("-0.0"))));
    CHECK_FALSE(jsonl::as_number(parse("\"1\"")));
    // JSON has no NaN or infinity: the parser refuses them, and 1e400.
    json::Value v;
    std::string err;
    for (const char* bad : {"NaN", "nan", "Infinity", "-Infinity", "1e400", "-1e400"})
        CHECK_MESSAGE(!json::parse(bad, v, err), bad);
    // A value that is infinite anyway (built, not parsed) is not a number.
    json::Value inf;
    inf.type = json::Value::Type::kNumber;
    inf.number = INFINITY;
    inf.string = "1e999";
    CHECK_FALSE(jsonl::as_number(inf));
    CHECK_FALSE(jsonl::as_count(inf));
    CHECK(jsonl::as_hex64(parse("\"00000000000000aB\"")) == 0xab);
    CHECK_FALSE(jsonl::as_hex64(parse("\"0000000000000000a\"")));
    CHECK_FALSE(jsonl::as_hex64(parse("\"000000000000000g\"")));
    CHECK_FALSE(jsonl::as_hex64(parse("171")));
}

TEST_CASE("Fields: typed keys, the first problem kept with the value found") {
    auto v =
        parse(R"({"s":"x","n":1.5,"c":7,"big":1e300,"i":-3,"h":"00000000000000ff",)"
              R"("b":true,"o":{},"a":[1],"neg":-1,"frac":2.5,"long":")" +
              std::string(100000, 'z') + R"(","huge":)" + "1" + std::string(5000, '0') + "e-4980}");
    {
        jsonl::Fields f(v);
        CHECK(f.string("s") == "x");
        CHECK(f.number("n") == 1.5);
        CHECK(f.count("c") == 7);
        CHECK(f.number("big") == 1e300);
        CHECK(f.integer("i") == -3);
        CHECK(f.hex64("h") == 0xff);
        CHECK(f.boolean("b"));
        CHECK(f.object("o") != nullptr);
        CHECK(f.array("a") != nullptr);
        CHECK(f.count("absent", jsonl::Need::kOptional) == 0);
        CHECK(f.string("absent", jsonl::Need::kOptional).empty());
        CHECK(f.has("s"));
        CHECK_FALSE(f.has("absent"));
        CHECK(f.ok());
    }
    struct Case {
        const char* what;
        std::function<void(jsonl::Fields&)> get;
        const char* expect;
    };
    const Case cases[] = {
        {"missing", [](auto& f) { f.string("absent"); }, "missing key \"absent\""},
        {"wrong type", [](auto& f) { f.number("s"); }, "\"s\" is a string, expected a number"},
        {"count of a fraction", [](auto& f) { f.count("frac"); },
         "\"frac\" is not a count (expected an integer from 0 to 9007199254740992, found 2.5)"},
        {"negative count", [](auto& f) { f.count("neg"); }, "found -1)"},
        {"count of 1e300", [](auto& f) { f.count("big"); }, "found 1e300)"},
        {"count over a bound", [](auto& f) { f.count("c", jsonl::Need::kRequired, 5); },
         "from 0 to 5, found 7"},
        {"count under a minimum", [](auto& f) { f.count("c", jsonl::Need::kRequired, 100, 10); },
         "from 10 to 100, found 7"},
        {"integer of 1e300", [](auto& f) { f.integer("big"); }, "\"big\" is not an integer"},
        {"huge number, shown cut", [](auto& f) { f.count("huge"); },
         "found 1000000000000000000000000000000000000000...)"},
        {"hex64 of a long string", [](auto& f) { f.hex64("long"); },
         "\"long\" is not 16 hex digits (found \"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"...)"},
        {"boolean of a number", [](auto& f) { f.boolean("c"); },
         "\"c\" is a number, expected a boolean"},
        {"object of an array", [](auto& f) { f.object("a"); },
         "\"a\" is an array, expected an object"},
        {"array of null", [](auto& f) { f.array("absent"); }, "missing key \"absent\""},
    };
    for (const auto& c : cases) {
        jsonl::Fields f(v);
        c.get(f);
        f.count("frac"); // a later problem does not replace the first
        f.fail("later");
        REQUIRE_FALSE_MESSAGE(f.ok(), c.what);
        CHECK_MESSAGE(f.error().find(c.expect) != std::string::npos, c.what << ": " << f.error());
        CHECK_MESSAGE(f.error().size() < 200,
                      c.what << ": a message carries at most a short value");
        // After a problem, getters give zero values.
        CHECK(f.count("c") == 0);
        CHECK(f.string("s").empty());
    }
}

TEST_CASE("Lines: objects with FILE:LINE, cut and non-object lines refused") {
    auto all = [](std::string_view text, jsonl::Lines::Options o = {}) -> std::string {
        jsonl::Lines lines(text, "f.jsonl", o);
        json::Value v;
        std::string got;
        for (;;) {
            auto r = lines.next(v);
            if (!r)
                return got + "error " + r.error().describe();
            if (!*r)
                return got + "end";
            got += std::to_string(lines.line()) + ":" + jsonl::shown(*v.find("k")) + " ";
        }
    };
    CHECK(all("") == "end");
    CHECK(all("{\"k\":1}\n{\"k\":2}\n") == "1:1 2:2 end");
    CHECK(all("{\"k\":1}\n{\"k\":2}") ==
          "1:1 error f.jsonl:2: the last line has no newline (a cut file?)");
    CHECK(all("{\"k\":1}\n\n") ==
          "1:1 error f.jsonl:2: not JSON: column 1: syntax error while parsing value - unexpected "
          "end of input; expected '[', '{', or a literal");
    CHECK(all("{\"k\":1}\n \t\r\n{\"k\":3}\n", {.skip_blank = true}) == "1:1 3:3 end");
    CHECK(all("[1]\n") == "error f.jsonl:1: expected a JSON object, found an array");
    CHECK(all("\"x\"\n") == "error f.jsonl:1: expected a JSON object, found a string");
    CHECK(all("{\"k\":1,\"k\":2}\n")
              .starts_with("error f.jsonl:1: not JSON: key \"k\" twice in one object"));
    CHECK(all("{\"k\":1,\"o\":{\"a\":1,\"a\":1}}\n").find("key \"a\" twice") != std::string::npos);
    // The same key in two objects is not a duplicate.
    CHECK(all("{\"k\":1,\"o\":{\"k\":2},\"p\":[{\"k\":3},{\"k\":4}]}\n") == "1:1 end");
    // A hostile duplicate key is named, cut short.
    std::string key(100000, 'q');
    std::string dup = "{\"" + key + "\":1,\"" + key + "\":2}\n";
    std::string e = all(dup);
    CHECK(e.find("twice in one object") != std::string::npos);
    CHECK(e.size() < 200);
    // NaN-like and out-of-range numbers are not JSON.
    CHECK(all("{\"k\":NaN}\n").find("f.jsonl:1: not JSON") != std::string::npos);
    CHECK(all("{\"k\":1e400}\n").find("f.jsonl:1: not JSON") != std::string::npos);
    // The parser's message is cut short too: it quotes what it read.
    std::string overflow = all("{\"k\":1" + std::string(100000, '0') + "}\n");
    CHECK(overflow.find("f.jsonl:1: not JSON: column 100006: number overflow parsing '1000") !=
          std::string::npos);
    CHECK(overflow.size() < 300);
    std::string bad_literal = all("{\"k\":t" + std::string(100000, 'x') + "}\n");
    CHECK(bad_literal.find("f.jsonl:1: not JSON") != std::string::npos);
    CHECK(bad_literal.size() < 300);
    // The plain parser keeps the last of two keys, as before.
    json::Value v;
    std::string err;
    REQUIRE(json::parse(R"({"k":1,"k":2})", v, err));
    CHECK(v.find("k")->number == 2);
}

TEST_CASE("read_file: bounded, regular files only, never blocking") {
    TempDir d;
    const std::string p = (d.path / "f.jsonl").string();
    std::ofstream(p) << std::string(1000, 'x');
    auto ok = jsonl::read_file(p, 1000);
    REQUIRE(ok.has_value());
    CHECK(ok->size() == 1000);
    auto big = jsonl::read_file(p, 999);
    REQUIRE_FALSE(big.has_value());
    CHECK(big.error().describe() == p + ": 1000 bytes, more than the limit of 999 bytes");
    std::ofstream(p) << std::string((1 << 20) + 1, 'x');
    big = jsonl::read_file(p, 1 << 20);
    REQUIRE_FALSE(big.has_value());
    CHECK(big.error().describe() == p + ": 1048577 bytes, more than the limit of 1 MiB");
    std::ofstream(p) << "";
    CHECK(jsonl::read_file(p, 0) == std::string());

    auto missing = jsonl::read_file((d.path / "none").string(), 10);
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().describe().find("cannot open") != std::string::npos);

    fs::create_symlink(p, d.path / "link");
    auto link = jsonl::read_file((d.path / "link").string(), 10);
    REQUIRE_FALSE(link.has_value());
    CHECK(link.error().describe().find("a symbolic link") != std::string::npos);

    auto dir = jsonl::read_file(d.path.string(), 10);
    REQUIRE_FALSE(dir.has_value());
    CHECK(dir.error().describe().find("not a regular file") != std::string::npos);

    // A FIFO with no writer: refused at once (a blocking open would hang).
    const std::string fifo = (d.path / "fifo").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto f = jsonl::read_file(fifo, 10);
    REQUIRE_FALSE(f.has_value());
    CHECK(f.error().describe() == fifo + ": not a regular file");

    // A file larger than it says (procfs reports 0 bytes): still bounded.
    auto proc = jsonl::read_file("/proc/self/maps", 10);
    REQUIRE_FALSE(proc.has_value());
    CHECK(proc.error().describe().find("more than the limit of 10 bytes") != std::string::npos);
}
