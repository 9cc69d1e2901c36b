// The LLVM-free formats: history (writer and reader) and the map's text form.
#include <doctest/doctest.h>

#include "presnap/analysis/hash.h"
#include "presnap/analysis/history.h"
#include "presnap/analysis/pmap.h"

using namespace presnap::analysis;

TEST_CASE("history records round-trip, including arbitrary bytes") {
    HistoryRequest r;
    r.seq = 7;
    r.bytes = std::string("get \"x\"\n\x01\xff", 11);
    r.hash = request_hash(r.bytes);
    r.segments = {1, 0xffffffffffffffffull, 42};
    r.latency_us = 12.25;
    r.snapshot = "lib/s1.snap";
    std::string text = format_history_header({1, "prog", "abcd"}) +
                       format_history_segment({42, 43, "fn:x"}) + format_history_request(r);
    auto h = parse_history(text, "t.jsonl", true);
    REQUIRE(h);
    CHECK(h->header.program == "prog");
    CHECK(h->header.program_hash == "abcd");
    REQUIRE(h->segments.size() == 1);
    CHECK(h->segments[0].sid == 43);
    REQUIRE(h->requests.size() == 1);
    const auto& g = h->requests[0];
    CHECK(g.bytes == r.bytes);
    CHECK(g.hash == r.hash);
    CHECK(g.segments == r.segments);
    CHECK(g.latency_us == doctest::Approx(12.25));
    CHECK(g.snapshot == "lib/s1.snap");
    CHECK(g.seq == 7);
}

TEST_CASE("history outcome keys are optional and round-trip when written") {
    HistoryRequest r;
    r.bytes = "isprime 97";
    r.hash = request_hash(r.bytes);
    std::string plain = format_history_request(r);
    CHECK(plain.find("index") == std::string::npos);
    CHECK(plain.find("failed") == std::string::npos);
    r.index = 4;
    r.response_len = 21;
    r.failed = true;
    std::string line = format_history_request(r);
    CHECK(line.find(R"("index":4,"response_len":21,"failed":true})") != std::string::npos);
    auto h = parse_history(format_history_header({}) + plain + line, "t", true);
    REQUIRE(h);
    REQUIRE(h->requests.size() == 2);
    CHECK_FALSE(h->requests[0].index);
    CHECK_FALSE(h->requests[0].response_len);
    CHECK_FALSE(h->requests[0].failed);
    CHECK(h->requests[1].index == 4u);
    CHECK(h->requests[1].response_len == 21u);
    CHECK(h->requests[1].failed == true);
    auto bad = parse_history(format_history_header({}) +
                                 R"({"type":"request","hash":"0000000000000000","segments":[],)"
                                 R"("failed":"yes"})"
                                 "\n",
                             "t", true);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message ==
          "field 'failed' has the wrong type (expected boolean, found string)");
}

TEST_CASE("history truncation keeps the full request's hash and length") {
    HistoryRequest r;
    r.bytes = std::string(1000, 'a');
    r.hash = request_hash(r.bytes);
    auto h = parse_history(format_history_header({}) + format_history_request(r, 16), "t", true);
    REQUIRE(h);
    CHECK(h->requests[0].bytes.size() == 16);
    CHECK(h->requests[0].truncated);
    CHECK(h->requests[0].length == 1000);
    CHECK(h->requests[0].hash == request_hash(std::string(1000, 'a')));
}

TEST_CASE("malformed history lines report their line number") {
    std::string text = format_history_header({}) + "\n" + "{\"type\":\"request\"}\n" +
                       "{\"type\":\"request\",\"hash\":\"12\",\"segments\":[]}\n" + "[1,2]\n";
    auto strict = parse_history(text, "h.jsonl", true);
    REQUIRE_FALSE(strict);
    CHECK(strict.error().context == "h.jsonl:3");
    CHECK(strict.error().message == "missing field 'hash'");
    auto lax = parse_history(text, "h.jsonl", false);
    REQUIRE(lax);
    CHECK(lax->skipped == 3);
    CHECK(lax->problems[1].context == "h.jsonl:4");
    CHECK(lax->problems[1].message ==
          "request hash is not a hash (expected 16 hex digits, found \"12\")");
    CHECK(lax->problems[2].message == "record is not an object (expected object, found array)");
}

TEST_CASE("a history without a header is rejected even when not strict") {
    auto h = parse_history("{\"type\":\"request\"}\n", "h", false);
    REQUIRE_FALSE(h);
    CHECK(h.error().context == "h:1");
    auto e = parse_history("", "h", false);
    REQUIRE_FALSE(e);
}

TEST_CASE("the map's text form round-trips") {
    ProbabilityMap m;
    m.inputs = {"a.bc"};
    m.entries = {"main"};
    m.evidence = "static";
    Segment s;
    s.id = 0x1234;
    s.sid = 0x5678;
    s.shash = 0x9abc;
    s.kind = SegmentKind::kBranch;
    s.name = "br:f:3";
    s.weight = 0.25;
    s.count = 1.5;
    s.warmable = true;
    s.lazy_init = true;
    s.effects = kWritesGlobal | kStoresHeapPtr;
    s.address_status = AddressStatus::kInlined;
    s.ranges = {{0x401000, 0x401010}, {0x402000, 0x402008}};
    s.tokens = {"get", "a b,\"c\"\\", "-", ""};
    s.evidence = "history:3/4";
    m.segments = {s};
    auto back = parse_pmap_text(format_pmap_text(m), "m.pmap");
    REQUIRE(back);
    REQUIRE(back->segments.size() == 1);
    const Segment& b = back->segments[0];
    CHECK(b.id == s.id);
    CHECK(b.sid == s.sid);
    CHECK(b.kind == s.kind);
    CHECK(b.name == s.name);
    CHECK(b.weight == s.weight);
    CHECK(b.count == s.count);
    CHECK(b.warmable);
    CHECK(b.lazy_init);
    CHECK(b.effects == s.effects);
    CHECK(b.address_status == s.address_status);
    CHECK(b.ranges == s.ranges);
    CHECK(b.tokens == s.tokens);
    CHECK(b.evidence == s.evidence);
    CHECK(back->entries == m.entries);
}

TEST_CASE("the map reader rejects other versions and broken lines") {
    auto v = parse_pmap_text("# presnap-pmap 9\n", "m");
    REQUIRE_FALSE(v);
    CHECK(v.error().message == "unsupported probability map version (expected 1, found 9)");
    auto f = parse_pmap_text("# presnap-pmap 1\n0000000000000001 fn fn:x\n", "m");
    REQUIRE_FALSE(f);
    CHECK(f.error().context == "m:2");
    CHECK(f.error().message == "wrong number of fields (expected 14, found 3)");
}

TEST_CASE("hashes are the documented FNV-1a") {
    CHECK(request_hash("") == 0xcbf29ce484222325ull);
    CHECK(request_hash("a") == 0xaf63dc4c8601ec8cull);
    CHECK(hex64(0xabcull) == "0000000000000abc");
    CHECK(parse_hex64("0000000000000ABC") == 0xabcull);
    CHECK_FALSE(parse_hex64("abc"));
}
