// The analysis engine on real bitcode from the programs in programs/ (built
// by clang-14 in this directory's CMakeLists.txt), and real executables.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "presnap/analysis/analyze.h"
#include "presnap/analysis/hash.h"
#include "presnap/analysis/history.h"

using namespace presnap::analysis;

namespace {

std::string bc(const std::string& name) {
    return std::string(PRESNAP_TEST_BC_DIR) + "/" + name + "/" + name + ".bc";
}

AnalyzeReport run(AnalyzeOptions o) {
    auto r = analyze(o);
    if (!r)
        FAIL("analyze failed: " << r.error().describe());
    return std::move(*r);
}

AnalyzeReport run(const std::string& name) {
    AnalyzeOptions o;
    o.inputs = {bc(name)};
    return run(o);
}

const Segment& seg(const ProbabilityMap& m, const std::string& name) {
    for (const auto& s : m.segments)
        if (s.name == name)
            return s;
    FAIL("no segment " << name);
    static Segment none;
    return none;
}

size_t rank(const ProbabilityMap& m, const std::string& name) {
    for (size_t i = 0; i < m.segments.size(); i++)
        if (m.segments[i].name == name)
            return i;
    FAIL("no segment " << name);
    return 0;
}

std::vector<const Segment*> lazy_in(const ProbabilityMap& m, const std::string& function) {
    std::vector<const Segment*> out;
    for (const auto& s : m.segments)
        if (s.lazy_init && s.function == function)
            out.push_back(&s);
    return out;
}

std::string write_temp(const std::string& name, const std::string& text) {
    std::string path = std::string(PRESNAP_TEST_BC_DIR) + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

} // namespace

TEST_CASE("a lazy initialiser is flagged warmable and its guard recognised") {
    auto rep = run("lazy");
    const auto& m = rep.map;
    // if (!table) table = build_table();  (pointer guard, direct store)
    auto sq = lazy_in(m, "square");
    REQUIRE(sq.size() == 1);
    CHECK(sq[0]->kind == SegmentKind::kBranch);
    CHECK(sq[0]->warmable);
    CHECK((sq[0]->effects & kStoresHeapPtr) != 0);
    // if (!ready) prepare_banner();  (flag set inside the callee)
    auto bn = lazy_in(m, "get_banner");
    REQUIRE(bn.size() == 1);
    CHECK(bn[0]->warmable);
    // Once per instance: a request that reaches the guard from a base
    // snapshot runs the initialiser, not LLVM's default 37.5% of the time.
    const Segment& fsq = seg(m, "fn:square");
    CHECK(sq[0]->weight == doctest::Approx(fsq.weight));
    CHECK(seg(m, "fn:build_table").weight == doctest::Approx(fsq.weight));
    CHECK(seg(m, "fn:build_table").count <= fsq.weight + 1e-12);
    CHECK(seg(m, "fn:build_table").warmable);
    // Nothing else in the program is a lazy guard.
    size_t n = 0;
    for (const auto& s : m.segments)
        n += s.lazy_init;
    CHECK(n == 2);
}

TEST_CASE("a C++ function-local static is recognised as a lazy initialiser") {
    AnalyzeOptions o;
    o.inputs = {bc("routes")};
    auto rep = run(o);
    bool found = false;
    for (const auto& s : rep.map.segments)
        if (s.lazy_init && s.name.find("dictionary") != std::string::npos) {
            found = true;
            CHECK(s.warmable);
        }
    CHECK(found);
}

TEST_CASE("a hot loop ranks above a cold error path") {
    auto m = run("hotcold").map;
    CHECK(rank(m, "loop:checksum:15") < rank(m, "fn:fatal"));
    CHECK(rank(m, "loop:checksum:15") < rank(m, "br:main:24"));
    CHECK(seg(m, "loop:checksum:15").count > 10 * seg(m, "fn:fatal").count);
    CHECK(seg(m, "fn:fatal").weight < 0.1);
}

TEST_CASE("a function only reached through a rarely-taken branch ranks low") {
    auto m = run("rare").map;
    const Segment& rare = seg(m, "fn:rare_repair");
    CHECK(rare.weight < 0.01);
    CHECK(rank(m, "fn:rare_repair") > rank(m, "fn:common_path"));
    // In the bottom half of all function segments.
    std::vector<std::string> fns;
    for (const auto& s : m.segments)
        if (s.kind == SegmentKind::kFunction)
            fns.push_back(s.name);
    auto pos = std::find(fns.begin(), fns.end(), "fn:rare_repair") - fns.begin();
    CHECK(static_cast<size_t>(pos) * 2 >= fns.size());
}

TEST_CASE("route tokens are found for a strcmp dispatch") {
    auto m = run("routes_strcmp").map;
    CHECK(seg(m, "fn:do_get").tokens == std::vector<std::string>{"get"});
    CHECK(seg(m, "fn:do_put").tokens == std::vector<std::string>{"put"});
    // strncmp(cmd, "statistics", 5) compares five bytes.
    CHECK(seg(m, "fn:do_stats").tokens == std::vector<std::string>{"stati"});
    CHECK(seg(m, "fn:handle").tokens.empty());
}

TEST_CASE("route tokens are found for a switch dispatch") {
    auto m = run("routes_switch").map;
    CHECK(seg(m, "fn:op_add").tokens == std::vector<std::string>{"+"});
    CHECK(seg(m, "fn:op_mul").tokens == std::vector<std::string>{"*", "x"});
    CHECK(seg(m, "fn:op_quit").tokens == std::vector<std::string>{"q"});
}

TEST_CASE("route tokens are found for std::string comparisons") {
    auto m = run("routes").map;
    bool lookup = false, echo = false;
    for (const auto& s : m.segments) {
        if (s.name == "fn:lookup")
            lookup = s.tokens == std::vector<std::string>{"lookup"};
        for (const auto& t : s.tokens)
            echo |= t == "echo";
    }
    CHECK(lookup);
    CHECK(echo);
}

TEST_CASE("inlined functions are reported as such") {
    AnalyzeOptions o;
    o.inputs = {bc("inline")};
    o.elf = PRESNAP_TEST_ELF_INLINE;
    auto rep = run(o);
    const auto& m = rep.map;
    CHECK(seg(m, "fn:scale").address_status == AddressStatus::kInlined);
    CHECK_FALSE(seg(m, "fn:scale").ranges.empty()); // where its inlined copy is
    CHECK(seg(m, "fn:report").address_status == AddressStatus::kFound);
    CHECK(seg(m, "fn:main").address_status == AddressStatus::kFound);
    CHECK(m.addresses.inlined >= 1);
    CHECK(m.addresses.found + m.addresses.inlined + m.addresses.missing == m.segments.size());
}

TEST_CASE("lazy guards of an optimised executable have addresses inside their function") {
    AnalyzeOptions o;
    o.inputs = {bc("lazy")};
    o.elf = PRESNAP_TEST_ELF_LAZY;
    auto m = run(o).map;
    for (const auto& s : m.segments) {
        if (!s.lazy_init)
            continue;
        CHECK_MESSAGE(!s.ranges.empty(), s.name);
        const Segment& fn = seg(m, "fn:" + s.function);
        for (const auto& r : s.ranges) {
            bool inside = false;
            for (const auto& fr : fn.ranges)
                inside |= r.lo >= fr.lo && r.hi <= fr.hi;
            CHECK_MESSAGE(inside, s.name);
        }
    }
}

TEST_CASE("history that contradicts the static estimate moves the ranking as documented") {
    AnalyzeOptions o;
    o.inputs = {bc("hotcold")};
    auto before = run(o).map;
    const Segment hot = seg(before, "loop:checksum:15");
    const Segment cold = seg(before, "fn:fatal");
    REQUIRE(rank(before, hot.name) < rank(before, cold.name));

    // 20 requests, every one ran the error path and none the checksum loop.
    std::string h = format_history_header({1, "hotcold", ""});
    for (int i = 0; i < 20; i++) {
        HistoryRequest r;
        r.seq = static_cast<uint64_t>(i);
        r.bytes = "";
        r.hash = request_hash(r.bytes);
        r.segments = {seg(before, "fn:main").id, cold.id};
        h += format_history_request(r);
    }
    o.history = write_temp("contradict.jsonl", h);
    o.prior_strength = 10;
    auto after = run(o).map;
    // Posterior mean of Beta(S*w0, S*(1-w0)) after k of n: (k + S*w0)/(n + S).
    CHECK(seg(after, cold.name).weight == doctest::Approx((20 + 10 * cold.weight) / 30.0));
    CHECK(seg(after, hot.name).weight == doctest::Approx((0 + 10 * hot.weight) / 30.0));
    CHECK(seg(after, cold.name).evidence == "history:20/20");
    CHECK(seg(after, hot.name).evidence == "history:0/20");
    CHECK(rank(after, cold.name) < rank(after, hot.name));
    // A stronger prior keeps the static order for the same evidence.
    o.prior_strength = 1000;
    auto strong = run(o).map;
    CHECK(rank(strong, hot.name) < rank(strong, cold.name));
}

TEST_CASE("history recorded on program A applies to the same function inside program B") {
    auto a = run("prog_a").map;
    const Segment& warm = seg(a, "fn:warm_cache");
    std::string h = format_history_header({1, "prog_a", ""});
    for (const auto& s : a.segments)
        h += format_history_segment({s.id, s.sid, s.name});
    for (int i = 0; i < 10; i++) {
        HistoryRequest r;
        r.bytes = "w" + std::to_string(i);
        r.hash = request_hash(r.bytes);
        r.segments = {seg(a, "fn:main").id, warm.id};
        h += format_history_request(r);
    }
    AnalyzeOptions o;
    o.inputs = {bc("prog_b")};
    auto b_static = run(o).map;
    o.history = write_temp("prog_a.jsonl", h);
    auto rep = run(o);
    const auto& b = rep.map;
    const Segment& fill = seg(b, "fn:fill_buffer");
    CHECK(fill.shash == warm.shash); // same body, different name and globals
    CHECK(fill.sid == warm.sid);
    CHECK(fill.id != warm.id);
    CHECK(fill.evidence == "history:10/10");
    double w0 = seg(b_static, "fn:fill_buffer").weight;
    CHECK(fill.weight == doctest::Approx((10 + 10 * w0) / 20.0));
    CHECK(fill.weight > w0);
    // Code program A did not have is not evidence of absence.
    CHECK(seg(b, "fn:count_line").evidence == "static");
    CHECK(seg(b, "fn:count_line").weight == seg(b_static, "fn:count_line").weight);
    CHECK(rep.history_matched_by_sid >= 1);
}

TEST_CASE("the same input gives the same map") {
    AnalyzeOptions o;
    o.inputs = {bc("routes_strcmp")};
    CHECK(format_pmap_text(run(o).map) == format_pmap_text(run(o).map));
    CHECK(format_pmap_json(run(o).map) == format_pmap_json(run(o).map));
}

TEST_CASE("several inputs are linked into one module") {
    AnalyzeOptions o;
    o.inputs = {bc("hotcold"), bc("inline")};
    // Two mains cannot be linked: a clear error, not a crash.
    auto r = analyze(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("cannot link") != std::string::npos);
}

TEST_CASE("segment ids are stable across unrelated programs and names are readable") {
    auto a = run("prog_a").map;
    auto b = run("prog_b").map;
    // main differs, so its structural ids differ; ids hash the name.
    CHECK(seg(a, "fn:main").id == seg(b, "fn:main").id);
    CHECK(seg(a, "fn:main").sid != seg(b, "fn:main").sid);
    for (const auto& s : a.segments) {
        CHECK(s.name.find(' ') == std::string::npos);
        CHECK(s.weight >= 0);
        CHECK(s.weight <= 1);
    }
}

TEST_CASE("errors name the input") {
    AnalyzeOptions o;
    o.inputs = {std::string(PRESNAP_TEST_FIXTURES) + "/not-bitcode.bc"};
    auto r = analyze(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == presnap::Errc::kFormat);
    CHECK(r.error().context == o.inputs[0]);
    o.inputs = {bc("hotcold")};
    o.entries = {"nope"};
    r = analyze(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find("'nope'") != std::string::npos);
}

#ifdef PRESNAP_TEST_PROFILE
TEST_CASE("a profile's entry counts move the estimate as documented") {
    AnalyzeOptions o;
    o.inputs = {bc("lazy")};
    auto base = run(o).map;
    // lazy.requests: "1", "2", "b", "3": square() ran 3 times, get_banner once.
    o.profile = PRESNAP_TEST_PROFILE;
    o.profile_requests = 4;
    auto rep = run(o);
    const auto& m = rep.map;
    CHECK(rep.profile_functions >= 4);
    const Segment& sq = seg(m, "fn:square");
    CHECK(sq.evidence == "profile:3");
    CHECK(sq.count == doctest::Approx(0.75));
    CHECK(sq.weight == doctest::Approx((3 + 10 * seg(base, "fn:square").weight) / 14.0));
    CHECK(seg(m, "fn:get_banner").evidence == "profile:1");
    CHECK(seg(m, "fn:get_banner").weight < seg(base, "fn:get_banner").weight);
    // main's count is per process: left to the request loop.
    CHECK(seg(m, "fn:main").evidence == "static");
    CHECK(seg(m, "fn:main").weight == 1.0);
}
#endif

TEST_CASE("recursion and indirect calls give finite, spread estimates") {
    auto m = run("indirect").map;
    for (const auto& s : m.segments) {
        CHECK_MESSAGE(std::isfinite(s.count), s.name);
        CHECK_MESSAGE(s.weight >= 0, s.name);
        CHECK_MESSAGE(s.weight <= 1, s.name);
    }
    // The call through ops[] reaches each address-taken target, a third each.
    const double f = seg(m, "fn:op_fib").weight, e = seg(m, "fn:op_even").weight,
                 n = seg(m, "fn:op_neg").weight;
    CHECK(f > 0.1);
    CHECK(f == doctest::Approx(e));
    CHECK(f == doctest::Approx(n));
    CHECK(seg(m, "fn:op_fib").count ==
          doctest::Approx(seg(m, "fn:main").count * 0.96875 / 3).epsilon(0.05));
    // Recursive functions run when their caller does, no more often than it.
    CHECK(seg(m, "fn:fib").weight <= f + 1e-9);
    CHECK(seg(m, "fn:is_even").weight <= e + 1e-9);
    CHECK(seg(m, "fn:is_odd").weight <= e + 1e-9);
    // Recursion is capped at 32 times what enters it.
    CHECK(seg(m, "fn:fib").count <= 32 * seg(m, "fn:op_fib").count + 1e-9);
    CHECK(seg(m, "fn:fib").count > seg(m, "fn:op_fib").count);
}

TEST_CASE("a real C++ map's text form reads back") {
    auto m = run("routes").map;
    auto back = parse_pmap_text(format_pmap_text(m), "routes.pmap");
    REQUIRE(back);
    REQUIRE(back->segments.size() == m.segments.size());
    for (size_t i = 0; i < m.segments.size(); i++) {
        CHECK(back->segments[i].id == m.segments[i].id);
        CHECK(back->segments[i].name == m.segments[i].name);
        CHECK(back->segments[i].tokens == m.segments[i].tokens);
    }
}

// Issue 11: shapes of real programs (table-driven routes, state kept
// through pointers and by library code, whole-program input).

namespace {

using Tokens = std::vector<std::string>;

bool has_call(const Explanation& e, const std::string& callee, const std::string& state) {
    for (const auto& c : e.external_calls)
        if (c.callee == callee && c.state.find(state) != std::string::npos)
            return true;
    return false;
}

Explanation explain_in(std::vector<std::string> inputs, const std::string& segment) {
    AnalyzeOptions o;
    o.inputs = std::move(inputs);
    o.explain = segment;
    auto rep = run(o);
    REQUIRE(rep.explanation);
    return *rep.explanation;
}

} // namespace

TEST_CASE("a route table's per-entry state kept by a library call is a warm lazy initialiser "
          "with the table's names") {
    // table_routes.c alone: vm_compile has no bitcode.
    auto m = run("table_routes").map;
    const Tokens names{"measure", "mirror", "shout"};
    // if (r->ref != VM_NOREF) return; r->ref = vm_compile(vm, r->script);
    // r comes from find_route(), which returns &routes[i] of the entry
    // whose name matched.
    const Segment& guard = seg(m, "br:load_route:34");
    CHECK(guard.lazy_init);
    CHECK(guard.warmable);
    CHECK(guard.tokens == names);
    CHECK(seg(m, "fn:load_route").warmable);
    CHECK(seg(m, "fn:load_route").tokens == names);
    // Once per instance: the guarded side runs whenever the guard does.
    CHECK(guard.weight == doctest::Approx(seg(m, "fn:load_route").weight));
    // The entry's table compare decides the branch in the loop.
    CHECK(seg(m, "br:find_route:28").tokens == names);
    // Its only persistent effect is a call into the library with the VM.
    CHECK(seg(m, "fn:define").warmable);
    CHECK(seg(m, "fn:define").tokens == Tokens{"define"});
    CHECK(run("table_routes").warm_by_external == 1); // define()
    auto ex = explain_in({bc("table_routes")}, "fn:define");
    CHECK(ex.effects_without_external == 0);
    REQUIRE(ex.external_calls.size() == 1);
    CHECK(ex.external_calls[0].callee == "vm_define");
    CHECK(ex.external_calls[0].line == 40);
    CHECK(ex.external_calls[0].state == "memory reachable from global vm");
    auto exg = explain_in({bc("table_routes")}, "br:load_route:34");
    CHECK(has_call(exg, "vm_compile", "global vm"));
    CHECK(exg.effects_without_external == kWritesGlobal); // the store to r->ref
}

TEST_CASE("guards on fields of persistent memory reached through pointers are lazy "
          "initialisers; the same guard on a stack struct is not") {
    auto m = run("field_guard").map;
    // &caches[k] passed by address: if (c->ready) return;
    CHECK(seg(m, "br:ensure_halves:31").lazy_init);
    CHECK(seg(m, "br:ensure_halves:31").warmable);
    // tables[k] loaded from a constant array of pointers: if (!t->cache)
    CHECK(seg(m, "br:table_cache:40").lazy_init);
    CHECK(seg(m, "br:table_cache:40").warmable);
    CHECK((seg(m, "br:table_cache:40").effects & kStoresHeapPtr) != 0);
    // A sentinel other than zero: if (e->base != UNSET) return e->base;
    CHECK(seg(m, "br:counter_base:49").lazy_init);
    CHECK(seg(m, "br:counter_base:49").warmable);
    CHECK(seg(m, "fn:counter_base").warmable);
    // A global's address: total_of(&totals, k) with if (!c->halves).
    CHECK(seg(m, "br:total_of:72").lazy_init);
    CHECK(seg(m, "br:total_of:72").warmable);
    CHECK(seg(m, "br:total_of:72").tokens == Tokens{"s"});
    // fill_scratch() is only given a struct on scratch()'s stack.
    CHECK_FALSE(seg(m, "br:fill_scratch:56").lazy_init);
    CHECK_FALSE(seg(m, "br:fill_scratch:56").warmable);
    CHECK_FALSE(seg(m, "fn:fill_scratch").warmable);
    CHECK_FALSE(seg(m, "fn:scratch").warmable);
    size_t lazy = 0;
    for (const auto& s : m.segments)
        lazy += s.lazy_init;
    CHECK(lazy == 4);
}

TEST_CASE("an external call given persistent state makes its segment warm, and --explain "
          "names it") {
    auto m = run("ext_state").map;
    // tsearch(strdup(w), &words, compare): the tree lives in the library.
    CHECK(seg(m, "fn:do_add").warmable);
    auto add = explain_in({bc("ext_state")}, "fn:do_add");
    CHECK(add.effects_without_external == 0);
    REQUIRE(add.external_calls.size() == 1);
    CHECK(add.external_calls[0].callee == "tsearch");
    CHECK(add.external_calls[0].file == "ext_state.c");
    CHECK(add.external_calls[0].line == 19);
    CHECK(add.external_calls[0].state == "global words");
    CHECK(format_explanation(add).find("ext_state.c:19: do_add calls tsearch with global words") !=
          std::string::npos);
    // tfind only looks: it is on the side-effect-free list.
    CHECK_FALSE(seg(m, "fn:do_has").warmable);
    CHECK(explain_in({bc("ext_state")}, "fn:do_has").external_calls.empty());
    // regcomp(&number_re, ...) behind if (!number): warm, and says so.
    const Segment& match = seg(m, "br:do_match:28");
    CHECK(match.lazy_init);
    CHECK(match.warmable);
    CHECK(has_call(explain_in({bc("ext_state")}, "br:do_match:28"), "regcomp", "global number_re"));
    // A segment can be explained by its id too.
    CHECK(explain_in({bc("ext_state")}, presnap::analysis::hex64(match.id)).segment.name ==
          match.name);
}

TEST_CASE("library calls that are all side-effect free do not make a program warm") {
    // strlen, strcmp, strncmp, strchr, memcmp, strtol, snprintf into a
    // local buffer, printf, puts, fputs and fprintf to stdout, given
    // pointers to mutable globals; the program stores to no global.
    auto m = run("pure_calls").map;
    for (const auto& s : m.segments) {
        CHECK_MESSAGE(!s.warmable, s.name);
        CHECK_MESSAGE(s.effects == 0, s.name);
    }
    CHECK(explain_in({bc("pure_calls")}, "fn:describe").external_calls.empty());
}

TEST_CASE("table-driven dispatch gives each handler its entry's name") {
    auto m = run("table_dispatch").map;
    // for (i) if (strcmp(word, commands[i].name) == 0) commands[i].run(arg);
    CHECK(seg(m, "fn:cmd_square").tokens == Tokens{"square"});
    CHECK(seg(m, "fn:cmd_note").tokens == Tokens{"note"});
    CHECK(seg(m, "fn:cmd_help").tokens == Tokens{"help"});
    CHECK(seg(m, "br:cmd_square:14").lazy_init);
    CHECK(seg(m, "br:cmd_square:14").warmable);
    CHECK(seg(m, "br:cmd_square:14").tokens == Tokens{"square"});
    // The matching arm of the loop has every name of the table.
    CHECK(seg(m, "br:main:63").tokens == Tokens{"help", "note", "square"});
    // An array of const char*: the matching index leads to convert().
    CHECK(seg(m, "fn:convert").tokens == Tokens{"km", "mi"});
    // The call through the table reaches its entries, a third each, and not
    // log_error(), which has their type and is address-taken elsewhere.
    CHECK(seg(m, "fn:log_error").weight == 0);
    CHECK(seg(m, "fn:cmd_help").weight > 0);
    CHECK(seg(m, "fn:cmd_help").weight == doctest::Approx(seg(m, "fn:cmd_note").weight));
    CHECK(seg(m, "fn:cmd_help").count == doctest::Approx(seg(m, "fn:cmd_square").count));
}

TEST_CASE("handlers of an unordered_map built from constants get their keys as tokens") {
    auto m = run("handlers_map").map;
    // {"primes", do_primes} in the map; {"p", do_primes} in the alias
    // table, found by std::string == a.name in a range-for loop.
    CHECK(seg(m, "fn:do_primes").tokens == Tokens{"p", "primes"});
    CHECK(seg(m, "fn:do_greet").tokens == Tokens{"g", "greet"});
    CHECK(seg(m, "fn:do_echo").tokens == Tokens{"echo"});
    CHECK(seg(m, "br:run_alias:51").tokens == Tokens{"g", "p"});
    CHECK(seg(m, "br:do_primes:14").lazy_init);
    CHECK(seg(m, "br:do_primes:14").warmable);
    CHECK(seg(m, "br:do_primes:14").tokens == Tokens{"p", "primes"});
    CHECK(seg(m, "br:do_greet:31").lazy_init);
    CHECK(seg(m, "br:do_greet:31").warmable);
    CHECK(seg(m, "br:do_greet:31").tokens == Tokens{"g", "greet"});
    // Writing to std::cout keeps nothing a snapshot needs.
    CHECK_FALSE(seg(m, "fn:do_echo").warmable);
}

TEST_CASE("a lazy field that only a library call sets, found by a lookup that may be skipped") {
    auto m = run("lib_guard").map;
    // if (!e->text && asprintf(&e->text, ...) < 0): asprintf is given the
    // field's address; e = w ? find_entry(w) : NULL, names inline arrays.
    const Segment& guard = seg(m, "br:describe:25");
    CHECK(guard.lazy_init);
    CHECK(guard.warmable);
    CHECK(guard.tokens == Tokens{"green", "red"});
    CHECK(seg(m, "fn:describe").tokens == Tokens{"green", "red"});
    auto ex = explain_in({bc("lib_guard")}, "br:describe:25");
    REQUIRE(ex.external_calls.size() == 1);
    CHECK(ex.external_calls[0].callee == "asprintf");
    CHECK(ex.external_calls[0].state.starts_with("parameter 1 of describe"));
    CHECK(ex.effects_without_external == 0);
}

TEST_CASE("name tables inside the C++ library's headers give no route tokens") {
    // std::regex("[[:alpha:]]+|[[.hyphen.]]"): regex_traits compares the
    // class and collating names with tables of its own.
    auto m = run("regex_route").map;
    for (const auto& s : m.segments)
        for (const auto& t : s.tokens)
            CHECK_MESSAGE((t == "find" || t.size() == 1), s.name << " has token " << t);
    CHECK(seg(m, "fn:do_find").tokens == Tokens{"find"});
    CHECK(seg(m, "br:do_find:12").lazy_init);
    CHECK(seg(m, "br:do_find:12").tokens == Tokens{"find"});
}

TEST_CASE("a program and its library given as two bitcode files are analysed as one module") {
    AnalyzeOptions o;
    o.inputs = {bc("table_routes"), bc("minivm")};
    auto rep = run(o);
    const auto& m = rep.map;
    AnalyzeOptions alone;
    alone.inputs = {bc("table_routes")};
    CHECK(rep.functions > run(alone).functions);
    CHECK(rep.warm_by_external == 0); // vm_define's stores are the program's now
    const Tokens names{"measure", "mirror", "shout"};
    // The library's code is now segments of the program, reached from the
    // program's routes: its own lazy initialiser gets the routes' tokens.
    CHECK(seg(m, "fn:vm_compile").tokens == names);
    CHECK(seg(m, "fn:vm_compile").warmable);
    const Segment& optable = seg(m, "br:vm_compile:38");
    CHECK(optable.lazy_init);
    CHECK(optable.warmable);
    CHECK(optable.tokens == names);
    CHECK(optable.weight > 0);
    // vm_compile has bitcode now: what it keeps is its own stores.
    auto ex = explain_in({bc("table_routes"), bc("minivm")}, "br:load_route:34");
    CHECK_FALSE(has_call(ex, "vm_compile", ""));
    CHECK(ex.effects_without_external != 0);
    CHECK(seg(m, "br:load_route:34").lazy_init);
    CHECK(seg(m, "br:load_route:34").tokens == names);
    // The program's route to vm_define reaches the library's function.
    CHECK(seg(m, "fn:vm_define").tokens == Tokens{"define"});
    CHECK(seg(m, "fn:vm_define").warmable);
}
