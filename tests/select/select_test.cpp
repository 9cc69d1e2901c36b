// snapselect's engine against written libraries, histories and model files:
// features, static prediction from route tokens, training, the choice under
// a budget, warm-all and what rules it out, per-user models, hostile model
// files, the selection formats, threads and time per call.
#include "presnap/analysis/hash.h"
#include "presnap/select/select.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>

using namespace presnap;
namespace fs = std::filesystem;

namespace {

// Segments of the written map (ids are small numbers for readability):
//   a0 fn:handle        every route, warm, no token
//   b1 br:isprime       lazy, token "isprime"     (route of s001)
//   c2 fn:build_sieve   warm, no token            (route of s001)
//   d3 br:factor        lazy, token "factor"      (route of s002)
//   e4 br:tenant_acme   lazy, token "acme"        (route of s003)
constexpr const char* kMap =
    "# presnap-pmap 1\n"
    "# inputs: t.bc\n"
    "# entries: main\n"
    "# evidence: static\n"
    "# addresses: none\n"
    "# segments: 5\n"
    "# columns: id kind name weight count warm lazy effects address ranges tokens evidence sid "
    "shash\n"
    "00000000000000a0 fn fn:handle 1.000000 1 warm - W none - - static 00000000000001a0 "
    "00000000000002a0\n"
    "00000000000000b1 br br:isprime 0.100000 0.1 warm lazy WHA none - \"isprime\" static "
    "00000000000001b1 00000000000002b1\n"
    "00000000000000c2 fn fn:build_sieve 0.100000 0.1 warm - WHA none - - static "
    "00000000000001c2 00000000000002c2\n"
    "00000000000000d3 br br:factor 0.100000 0.1 warm lazy WHA none - \"factor\" static "
    "00000000000001d3 00000000000002d3\n"
    "00000000000000e4 br br:tenant_acme 0.100000 0.1 warm lazy WHA none - \"acme\" static "
    "00000000000001e4 00000000000002e4\n";

std::string entry(const std::string& file, const std::string& segs, const std::string& names,
                  double benefit, uint64_t pages) {
    return R"({"type":"snapshot","file":")" + file + R"(","segments":[)" + segs + R"(],"names":[)" +
           names + R"(],"weight":0.1,"base_us":)" + std::to_string(benefit + 100) +
           R"(,"snapshot_us":100,"benefit_us":)" + std::to_string(benefit) + R"(,"pages":)" +
           std::to_string(pages) + R"(,"bytes":)" + std::to_string(pages * 4096 + 4096) +
           R"(,"route_requests":2,"warmup":"w","held_out":"h","warmup_response":"r\n"})" + "\n";
}

struct TempLib {
    fs::path path;
    library::Library lib;
    TempLib() {
        std::string tmpl = (fs::temp_directory_path() / "presnap-select-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
        std::ofstream(path / "map.pmap") << kMap;
        std::ofstream(path / "manifest.jsonl")
            << R"({"format":"presnap-library","version":1,"generator":"presnap 0.1.0",)"
               R"("program":"/bin/x","base":"base.snap","map":"map.pmap","base_bytes":4096,)"
               R"("requests":9,"failed":1})"
               "\n"
            << entry("s001.snap", R"("00000000000000a0","00000000000000b1","00000000000000c2")",
                     R"("fn:handle","br:isprime","fn:build_sieve")", 50000, 4096)
            << entry("s002.snap", R"("00000000000000a0","00000000000000d3")",
                     R"("fn:handle","br:factor")", 30000, 4096)
            << entry("s003.snap", R"("00000000000000a0","00000000000000e4")",
                     R"("fn:handle","br:tenant_acme")", 20000, 1024);
        auto l = library::open_library(path.string());
        REQUIRE_MESSAGE(l.has_value(), (l ? "" : l.error().describe()));
        lib = *l;
    }
    ~TempLib() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// A history record; index 0 means "no index".
std::string record(const std::string& bytes, const std::string& segs, uint64_t index = 1,
                   const std::string& user = "") {
    analysis::HistoryRequest r;
    r.bytes = bytes;
    r.length = bytes.size();
    r.hash = analysis::request_hash(bytes);
    r.snapshot = "lib/base.snap";
    if (index)
        r.index = index;
    r.user = user;
    for (size_t i = 0; i + 16 <= segs.size(); i += 17)
        r.segments.push_back(*analysis::parse_hex64(segs.substr(i, 16)));
    return analysis::format_history_request(r);
}

analysis::History history(const std::string& records) {
    auto h = analysis::parse_history(analysis::format_history_header({1, "t", ""}) + records,
                                     "h.jsonl", true);
    REQUIRE_MESSAGE(h.has_value(), (h ? "" : h.error().describe()));
    return *h;
}

const std::string kA = "00000000000000a0", kB = "00000000000000b1", kC = "00000000000000c2",
                  kD = "00000000000000d3", kE = "00000000000000e4";

// Fresh runs (index 1 each): the paths of three routes and two errors.
std::string fresh_records() {
    return record("isprime 97", kA + " " + kB + " " + kC) +
           record("isprime 1000003", kA + " " + kB + " " + kC) +
           record("factor 360", kA + " " + kD) + record("factor 77", kA + " " + kD) +
           record("acme price 4", kA + " " + kE) + record("acme stock 9", kA + " " + kE) +
           record("bogus 1", kA) + record("", "");
}

select::SelectOptions no_warm_all() {
    select::SelectOptions o;
    o.allow_warm_all = false;
    return o;
}

} // namespace

TEST_CASE("features: words, the first word, numbers, length, JSON keys and values") {
    auto f = select::request_features("isprime 97\n");
    for (const char* want : {"f:isprime", "w:isprime", "w:97", "n:2", "len:4"})
        CHECK_MESSAGE(std::binary_search(f.begin(), f.end(), want), want);
    auto j = select::request_features(R"({"tenant":"acme","op":"price","sku":42})");
    for (const char* want : {"k:tenant", "kv:tenant=acme", "kv:sku=42", "w:acme", "k:op"})
        CHECK_MESSAGE(std::binary_search(j.begin(), j.end(), want), want);
    // A JSON body after a command word.
    auto body = select::request_features(R"(acme {"op":"price","sku":4})");
    for (const char* want : {"f:acme", "k:op", "kv:op=price", "kv:sku=4"})
        CHECK_MESSAGE(std::binary_search(body.begin(), body.end(), want), want);
    auto bad = select::request_features(R"({"tenant":"acme")");
    CHECK(std::binary_search(bad.begin(), bad.end(), "json:bad"));
    auto empty = select::request_features("");
    CHECK(empty == std::vector<std::string>{"empty", "len:0"});
    // Bounded whatever the request.
    CHECK(select::request_features(std::string(1 << 20, 'x')).size() <=
          select::kMaxExampleFeatures);
    std::string many;
    for (int i = 0; i < 5000; i++)
        many += "w" + std::to_string(i) + " ";
    CHECK(select::request_features(many).size() <= select::kMaxExampleFeatures);
}

TEST_CASE("static: route tokens choose the route's snapshot; no token, the base alone") {
    TempLib t;
    auto s = select::Selector::open(t.lib);
    REQUIRE(s.has_value());
    CHECK_FALSE(s->trained());
    auto o = no_warm_all();
    auto a = s->select("isprime 5", o);
    CHECK(a.source == "static");
    CHECK(a.snapshots == std::vector<std::string>{"s001"});
    REQUIRE_FALSE(a.path.empty());
    CHECK(
        std::any_of(a.path.begin(), a.path.end(), [](auto& p) { return p.name == "br:isprime"; }));
    CHECK(s->select("factor 12", o).snapshots == std::vector<std::string>{"s002"});
    CHECK(s->select(R"({"tenant":"acme","op":"price"})", o).snapshots ==
          std::vector<std::string>{"s003"});
    CHECK(s->select("frobnicate 3", o).snapshots.empty());
}

TEST_CASE("warm-all: chosen when everything fits, refused over the budget") {
    TempLib t;
    auto s = select::Selector::open(t.lib);
    REQUIRE(s.has_value());
    auto all = s->select("frobnicate 3");
    CHECK(all.warm_all);
    CHECK(all.snapshots == std::vector<std::string>{"s001", "s002", "s003"});
    select::SelectOptions o;
    o.max_bytes = 4097 * 4096; // one big snapshot, or the small one with it
    auto some = s->select("isprime 5", o);
    CHECK_FALSE(some.warm_all);
    CHECK(some.warm_all_reason.find("over the budget") != std::string::npos);
    CHECK(some.snapshots == std::vector<std::string>{"s001"});
    CHECK(some.bytes <= o.max_bytes);
}

TEST_CASE("budget: the most valuable set that fits; nothing when nothing fits") {
    TempLib t;
    auto s = select::Selector::open(t.lib);
    REQUIRE(s.has_value());
    auto o = no_warm_all();
    o.max_bytes = 100; // smaller than every snapshot
    auto none = s->select("isprime 5", o);
    CHECK(none.snapshots.empty());
    CHECK(none.bytes == 0);
    // A page cost above the benefit per page: no snapshot is worth it.
    auto costly = no_warm_all();
    costly.page_cost_us = 100;
    CHECK(s->select("isprime 5", costly).snapshots.empty());
}

TEST_CASE("training: the path and the snapshot come from the nearest requests") {
    TempLib t;
    std::vector<analysis::History> hs{history(fresh_records())};
    auto model = select::train(t.lib, hs);
    REQUIRE(model.has_value());
    CHECK(model->requests == 8);
    CHECK(model->runs == 8);
    auto s = select::Selector::with_model(t.lib, *model);
    REQUIRE(s.has_value());
    CHECK(s->trained());
    auto o = no_warm_all();
    auto a = s->select("isprime 31337", o);
    CHECK(a.source == "history");
    CHECK(a.snapshots == std::vector<std::string>{"s001"});
    // First-hit order, from the history: handle, then the guard, then the sieve.
    REQUIRE(a.path.size() == 3);
    CHECK(a.path[0].name == "fn:handle");
    CHECK(a.path[1].name == "br:isprime");
    CHECK(a.path[2].name == "fn:build_sieve");
    CHECK(s->select("factor 1234", o).snapshots == std::vector<std::string>{"s002"});
    CHECK(s->select("acme stock 77", o).snapshots == std::vector<std::string>{"s003"});
    CHECK(s->select("bogus 7", o).snapshots.empty());
    // Nothing in common with any example: the map answers.
    auto unseen = s->select("zzz", o);
    CHECK(unseen.source == "static");
    // Histories without an index: every record is a run of its own.
    auto m2 = select::train(t.lib, std::vector{history(record("factor 1", kA + " " + kD, 0) +
                                                       record("factor 2", kA + " " + kD, 0))});
    REQUIRE(m2.has_value());
    CHECK(m2->runs == 2);
}

TEST_CASE("training: later records of a run are not paths; a lazy segment run twice is rebuilt") {
    TempLib t;
    // One long run: acme's guard runs at 1 and again at 4 (its state was
    // dropped in between); isprime's runs once.
    std::string run = record("acme price 1", kA + " " + kE, 1) +
                      record("isprime 3", kA + " " + kB + " " + kC, 2) +
                      record("isprime 5", kA, 3) + record("acme price 2", kA + " " + kE, 4);
    auto model = select::train(t.lib, std::vector{history(fresh_records() + run)});
    REQUIRE(model.has_value());
    CHECK(model->runs == 9);
    for (const auto& seg : model->segments)
        CHECK_MESSAGE(seg.rebuilt == (seg.id == 0xe4), analysis::hex64(seg.id));
    // "isprime 5" (ran only fn:handle late in the run) did not teach that
    // isprime needs nothing.
    auto s = select::Selector::with_model(t.lib, *model);
    REQUIRE(s.has_value());
    CHECK(s->select("isprime 5", no_warm_all()).snapshots == std::vector<std::string>{"s001"});
    // Warm-all is ruled out even without a budget, and says why.
    auto a = s->select("acme price 9");
    CHECK_FALSE(a.warm_all);
    CHECK(a.warm_all_reason.find("impossible") != std::string::npos);
    CHECK(a.warm_all_reason.find("s003") != std::string::npos);
    CHECK(a.snapshots == std::vector<std::string>{"s003"});
}

TEST_CASE("users: a user's own model answers for them, everyone's for others") {
    TempLib t;
    std::string recs = record("get x", kA + " " + kB + " " + kC, 1, "alice") +
                       record("get y", kA + " " + kB + " " + kC, 1, "alice") +
                       record("get x", kA + " " + kD, 1, "bob") +
                       record("get z", kA + " " + kD, 1, "bob") +
                       record("get w", kA + " " + kD, 1, "bob");
    auto model = select::train(t.lib, std::vector{history(recs)});
    REQUIRE(model.has_value());
    auto s = select::Selector::with_model(t.lib, *model);
    REQUIRE(s.has_value());
    // The same request, "get x", ran s001's route for alice and s002's for bob.
    auto o = no_warm_all();
    o.user = "alice";
    auto a = s->select("get x", o);
    CHECK(a.user_model == "alice");
    CHECK(a.snapshots == std::vector<std::string>{"s001"});
    o.user = "bob";
    CHECK(s->select("get x", o).snapshots == std::vector<std::string>{"s002"});
    // No model of her own: everyone's, where "get x" went both ways, so both
    // are likely enough to be worth their pages.
    o.user = "carol";
    auto c = s->select("get x", o);
    CHECK(c.user_model.empty());
    CHECK(c.source == "history");
    CHECK(c.snapshots == std::vector<std::string>{"s001", "s002"});
    REQUIRE(c.candidates.size() == 3);
    for (int j : {0, 1}) {
        CHECK(c.candidates[size_t(j)].probability > 0.3);
        CHECK(c.candidates[size_t(j)].probability < 0.7);
    }
    // Room for one of the two: the one worth more (s001: 50 ms of benefit
    // against s002's 30 ms, at the same probability and pages).
    o.max_bytes = 4097 * 4096;
    auto one = s->select("get x", o);
    CHECK(one.snapshots == std::vector<std::string>{"s001"});
    CHECK(one.candidates[1].why == "over the byte budget");
}

TEST_CASE("the model file: stored atomically, read back, and used by open") {
    TempLib t;
    auto model = select::train(t.lib, std::vector{history(fresh_records())});
    REQUIRE(model.has_value());
    REQUIRE(select::store_model(t.lib, *model).has_value());
    for (const auto& e : fs::directory_iterator(t.path))
        CHECK_MESSAGE(e.path().filename().string().find(".tmp-") == std::string::npos,
                      e.path().string());
    std::ifstream in(t.path / select::kModelFile);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    auto back = select::parse_model(text, "model.jsonl", t.lib);
    REQUIRE_MESSAGE(back.has_value(), (back ? "" : back.error().describe()));
    CHECK(select::format_model(*back) == text);
    auto s = select::Selector::open(t.lib);
    REQUIRE(s.has_value());
    CHECK(s->trained());
    CHECK(s->select("factor 99", no_warm_all()).source == "history");
}

TEST_CASE("hostile model files are refused with the line and what was expected") {
    TempLib t;
    auto model = select::train(t.lib, std::vector{history(fresh_records())});
    REQUIRE(model.has_value());
    const std::string good = select::format_model(*model);
    const std::string header = good.substr(0, good.find('\n') + 1);
    const std::string seg =
        R"({"type":"segment","id":"00000000000000a0","order":0,"rebuilt":false})"
        "\n";
    auto example = [](const std::string& body) { return R"({"type":"example",)" + body + "}\n"; };
    std::string many_features = R"("user":"","count":1,"features":[)";
    for (int i = 0; i < 300; i++)
        many_features += (i ? "," : "") + std::string("\"w:") + std::to_string(i) + "\"";
    many_features += R"(],"segments":[])";
    struct Case {
        const char* name;
        std::string text;
        const char* expect;
    };
    const Case cases[] = {
        {"empty", "", "empty model"},
        {"not json", "hello\n", "not JSON"},
        {"array", "[1]\n", "expected a JSON object, found an array"},
        {"foreign magic",
         R"({"format":"presnap-library","version":1})"
         "\n",
         "not a presnap model"},
        {"version 2",
         R"({"format":"presnap-model","version":2,"manifest":"0000000000000000"})"
         "\n",
         "unsupported model version"},
        {"no manifest",
         R"({"format":"presnap-model","version":1})"
         "\n",
         "manifest"},
        {"another library",
         R"({"format":"presnap-model","version":1,"manifest":"0123456789abcdef"})"
         "\n",
         "another library"},
        {"no type", header + "{}\n", "missing key \"type\""},
        {"bad segment id",
         header + R"({"type":"segment","id":"xyz"})"
                  "\n",
         "16 hex digits"},
        {"foreign segment",
         header + R"({"type":"segment","id":"00000000000000ff"})"
                  "\n",
         "not in the library"},
        {"segment twice", header + seg + seg, "declared twice"},
        {"negative order",
         header + R"({"type":"segment","id":"00000000000000a0","order":-1})"
                  "\n",
         "\"order\" is out of range (expected a number from 0 to 1e9, found -1)"},
        {"rebuilt not bool",
         header + R"({"type":"segment","id":"00000000000000a0","rebuilt":1})"
                  "\n",
         "\"rebuilt\" is a number, expected a boolean"},
        {"count zero", header + example(R"("count":0,"features":[],"segments":[])"),
         "\"count\" is not a count (expected an integer from 1 to 1000000000, found 0)"},
        {"count huge", header + example(R"("count":1e15,"features":[],"segments":[])"),
         "found 1e15)"},
        {"count fraction", header + example(R"("count":1.5,"features":[],"segments":[])"),
         "found 1.5)"},
        {"count past 2^53",
         header + example(R"("count":9007199254740993,"features":[],"segments":[])"),
         "\"count\" is not a count"},
        {"count a double rounds to 1",
         header + example(R"("count":0.99999999999999999,"features":[],"segments":[])"),
         "\"count\" is not a count"},
        {"count 1e300", header + example(R"("count":1e300,"features":[],"segments":[])"),
         "\"count\" is not a count"},
        {"features not array", header + example(R"("count":1,"features":"x","segments":[])"),
         "\"features\" is a string, expected an array"},
        {"too many features", header + example(many_features),
         "\"features\" holds too many (expected at most 256, found 300)"},
        {"empty feature", header + example(R"("count":1,"features":[""],"segments":[])"),
         "bad feature"},
        {"long feature",
         header +
             example(R"("count":1,"features":[")" + std::string(600, 'x') + R"("],"segments":[])"),
         "bad feature"},
        {"number feature", header + example(R"("count":1,"features":[7],"segments":[])"),
         "bad feature"},
        {"foreign example segment",
         header + example(R"("count":1,"features":[],"segments":["00000000000000ff"])"),
         "not in the library"},
        {"long user",
         header + example(R"("user":")" + std::string(300, 'u') +
                          R"(","count":1,"features":[],"segments":[])"),
         "\"user\" is too long (expected at most 256 bytes, found 300)"},
        {"too large", std::string(select::kMaxModelBytes + 1, ' '), "too large"},
        {"cut last line", good.substr(0, good.size() - 1), "no newline (a cut file?)"},
        {"a key twice",
         header + R"({"type":"future","type":"segment","id":"xyz"})"
                  "\n",
         "key \"type\" twice in one object"},
    };
    for (const auto& c : cases) {
        auto r = select::parse_model(c.text, "model.jsonl", t.lib);
        REQUIRE_MESSAGE(!r.has_value(), c.name);
        CHECK_MESSAGE(r.error().describe().find(c.expect) != std::string::npos,
                      c.name << ": " << r.error().describe());
    }
    // Unknown record types are ignored (a later version 1 may add some).
    auto ok = select::parse_model(good + R"({"type":"future","x":1})"
                                         "\n",
                                  "m", t.lib);
    CHECK(ok.has_value());
    // A hostile file in the library: open refuses it, naming the file.
    std::ofstream(t.path / select::kModelFile) << header << "garbage\n";
    auto s = select::Selector::open(t.lib);
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().describe().find("model.jsonl:2") != std::string::npos);
}

TEST_CASE("selection formats: written, read back, and malformed ones refused") {
    TempLib t;
    select::Selection s;
    s.snapshots = {"s001", "s003"};
    s.path = {{0xb1, "br:isprime", 0.97}};
    s.source = "history";
    s.bytes = 123;
    CHECK(select::format_selection_header() == "presnap-selection 1\n");
    CHECK(select::format_selection_line(s) == "select s001 s003\n");
    CHECK(select::format_selection_line({}) == "select\n");
    CHECK(select::format_selection_json("isprime \"5\"", s) ==
          R"({"type":"selection","request":"isprime \"5\"","snapshots":["s001","s003"],)"
          R"("path":[{"segment":"00000000000000b1","name":"br:isprime","p":0.970}],)"
          R"("saving_us":0,"bytes":123,"warm_all":false,"source":"history"})"
          "\n");
    auto text = select::parse_selection("presnap-selection 1\n# why\n\nselect s001 s003\nselect\n",
                                        "x", &t.lib);
    REQUIRE(text.has_value());
    CHECK(*text == std::vector<std::vector<std::string>>{{"s001", "s003"}, {}});
    auto js = select::parse_selection(select::format_selection_header_json() +
                                          select::format_selection_json("r", s),
                                      "x", &t.lib);
    REQUIRE(js.has_value());
    CHECK(*js == std::vector<std::vector<std::string>>{{"s001", "s003"}});
    for (const char* badsel :
         {"", "select s001\n", "presnap-selection 2\n", "presnap-selection 1\nselect  s001\n",
          "presnap-selection 1\nselect s001 \n", "presnap-selection 1\nselects s001\n",
          "presnap-selection 1\nselect s009\n", "presnap-selection 1\nselect s001 s001\n",
          "presnap-selection 1\nselect ../x\n"})
        CHECK_MESSAGE(!select::parse_selection(badsel, "x", &t.lib).has_value(), badsel);
}

TEST_CASE("select is const and thread-safe: four threads agree with one") {
    TempLib t;
    auto model = select::train(t.lib, std::vector{history(fresh_records())});
    REQUIRE(model.has_value());
    auto s = select::Selector::with_model(t.lib, *model);
    REQUIRE(s.has_value());
    const std::vector<std::string> reqs{"isprime 1", "factor 2", "acme price 3", "bogus", "zzz"};
    std::vector<std::string> want;
    for (const auto& r : reqs)
        want.push_back(select::format_selection_json(r, s->select(r)));
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; k++)
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; i++) {
                size_t j = size_t(i) % reqs.size();
                if (select::format_selection_json(reqs[j], s->select(reqs[j])) != want[j])
                    mismatches++;
            }
        });
    for (auto& th : threads)
        th.join();
    CHECK(mismatches == 0);
}

TEST_CASE("select costs microseconds per call (measured)") {
    TempLib t;
    // A model of 2000 distinct requests over the three routes.
    std::string recs;
    for (int i = 0; i < 2000; i++) {
        const int route = i % 3;
        recs += route == 0   ? record("isprime " + std::to_string(i), kA + " " + kB + " " + kC)
                : route == 1 ? record("factor " + std::to_string(i), kA + " " + kD)
                             : record("acme price " + std::to_string(i), kA + " " + kE);
    }
    auto model = select::train(t.lib, std::vector{history(recs)});
    REQUIRE(model.has_value());
    auto s = select::Selector::with_model(t.lib, *model);
    REQUIRE(s.has_value());
    const int n = 20000;
    auto t0 = std::chrono::steady_clock::now();
    size_t chosen = 0;
    const auto o = no_warm_all();
    for (int i = 0; i < n; i++)
        chosen += s->select(i % 2 ? "factor 31337" : "isprime 4242", o).snapshots.size();
    double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
        n;
    MESSAGE("select: " << us << " us per call over a model of 2000 examples");
    CHECK(chosen == size_t(n)); // one snapshot each
    CHECK(us < 1000);
}

TEST_CASE("damaged model files and odd requests never crash: 3000 mutations") {
    TempLib t;
    auto model = select::train(t.lib, std::vector{history(fresh_records())});
    REQUIRE(model.has_value());
    const std::string good = select::format_model(*model);
    // A fixed-seed generator: the same mutations every run.
    uint64_t x = 0x9e3779b97f4a7c15ull;
    auto next = [&x] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    };
    size_t accepted = 0, refused = 0;
    for (int i = 0; i < 3000; i++) {
        std::string m = good;
        const int edits = 1 + int(next() % 4);
        for (int k = 0; k < edits; k++) {
            const size_t at = size_t(next() % m.size());
            switch (next() % 4) {
            case 0:
                m[at] = char(next());
                break; // flip a byte
            case 1:
                m.erase(at, size_t(next() % 16));
                break; // cut
            case 2:
                m.insert(at, m.substr(next() % m.size(), 12));
                break; // splice
            default:
                m.resize(at);
                break; // truncate
            }
            if (m.empty())
                m = "x";
        }
        auto r = select::parse_model(m, "m", t.lib);
        if (!r) {
            refused++;
            CHECK_FALSE(r.error().describe().empty());
            continue;
        }
        accepted++;
        // Whatever was accepted selects without trouble.
        auto s = select::Selector::with_model(t.lib, *r);
        REQUIRE(s.has_value());
        auto sel = s->select(m.substr(0, 40));
        CHECK(sel.snapshots.size() <= 3);
    }
    MESSAGE("mutated models: " << accepted << " accepted, " << refused << " refused");
    CHECK(refused > 0);
    // Requests of any bytes.
    auto s = select::Selector::with_model(t.lib, *model);
    REQUIRE(s.has_value());
    for (int i = 0; i < 3000; i++) {
        std::string r(size_t(next() % 200), '\0');
        for (char& c : r)
            c = char(next());
        if (i % 3 == 0)
            r = "{\"a\":[" + r + "]}";
        auto sel = s->select(r);
        CHECK(sel.candidates.size() == 3);
    }
}

TEST_CASE("history records carry an optional user, round-trip, and refuse a long one") {
    const std::string line = record("get x", kA, 1, "alice \"A\"");
    CHECK(line.find(R"("user":"alice \"A\"")") != std::string::npos);
    auto h = history(line + record("get y", kA));
    REQUIRE(h.requests.size() == 2);
    CHECK(h.requests[0].user == "alice \"A\"");
    CHECK(h.requests[1].user.empty());
    CHECK(record("get y", kA).find("\"user\"") == std::string::npos); // absent when empty
    std::string long_user = record("get z", kA, 1, std::string(300, 'u'));
    auto bad = analysis::parse_history(analysis::format_history_header({1, "t", ""}) + long_user,
                                       "h.jsonl", true);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().describe().find("user too long") != std::string::npos);
}

TEST_CASE("a cached composite that holds the chosen set is preferred, within the budget") {
    TempLib t;
    auto o = no_warm_all();
    auto s0 = select::Selector::open(t.lib);
    REQUIRE(s0.has_value());
    auto plain = s0->select("isprime factor", o);
    REQUIRE(plain.snapshots == std::vector<std::string>{"s001", "s002"});
    CHECK_FALSE(plain.cached_superset);
    // snapmerge's cache: a superset, a set naming an unknown snapshot, junk.
    fs::create_directories(t.path / "composites");
    std::ofstream(t.path / "composites" / (std::string(32, 'a') + "-s001-s002-s003.snap"));
    std::ofstream(t.path / "composites" / (std::string(32, 'a') + "-s001-s009.snap"));
    std::ofstream(t.path / "composites" / "junk.snap");
    auto s = select::Selector::open(t.lib);
    REQUIRE(s.has_value());
    REQUIRE(s->cached_sets().size() == 1);
    auto wide = s->select("isprime factor", o);
    CHECK(wide.snapshots == std::vector<std::string>{"s001", "s002", "s003"});
    CHECK(wide.cached_superset);
    CHECK(wide.candidates[2].why == "in a cached composite with the chosen ones");
    // Over the budget the superset is not taken; one snapshot is never widened.
    o.max_bytes = plain.bytes;
    auto tight = s->select("isprime factor", o);
    CHECK(tight.snapshots == plain.snapshots);
    CHECK_FALSE(tight.cached_superset);
    CHECK(s->select("isprime 7", no_warm_all()).snapshots == std::vector<std::string>{"s001"});
}
