// Selections as snapmerge reads them: both forms, comments, bad lines.
#include "presnap/merge/selection_input.h"

#include <doctest/doctest.h>

using presnap::merge::parse_selections;

TEST_CASE("selection text form: ids per line, zero ids is the base, comments skipped") {
    auto s = parse_selections("presnap-selection 1\n# c\n\nselect s001 s003\nselect\n");
    REQUIRE(s);
    REQUIRE(s->size() == 2);
    CHECK((*s)[0] == std::vector<std::string>{"s001", "s003"});
    CHECK((*s)[1].empty());
}

TEST_CASE("selection JSON form: the snapshots field of selection records") {
    auto s = parse_selections("{\"format\":\"presnap-selection\",\"version\":1}\n"
                              "{\"type\":\"selection\",\"request\":\"x\",\"snapshots\":[\"s002\"],"
                              "\"path\":[],\"saving_us\":3,\"bytes\":4,\"warm_all\":false,"
                              "\"source\":\"static\"}\n");
    REQUIRE(s);
    REQUIRE(s->size() == 1);
    CHECK((*s)[0] == std::vector<std::string>{"s002"});
}

TEST_CASE("selection: bad input is refused with the line") {
    CHECK_FALSE(parse_selections(""));
    CHECK_FALSE(parse_selections("presnap-selection 2\nselect s001\n"));
    auto e = parse_selections("presnap-selection 1\nselect s001  s002\n");
    REQUIRE_FALSE(e);
    CHECK(e.error().message.find("line 2") != std::string::npos);
    CHECK_FALSE(parse_selections("presnap-selection 1\nchoose s001\n"));
    CHECK_FALSE(parse_selections("{\"format\":\"presnap-selection\",\"version\":1}\n"
                                 "{\"type\":\"selection\",\"snapshots\":[1]}\n"));
    CHECK_FALSE(parse_selections("{\"format\":\"presnap-selection\",\"version\":1}\nnot json\n"));
    // Keys of another type are refused or skipped, not thrown (snapmerge aborted; found by
    // the selection fuzzer).
    CHECK_FALSE(parse_selections("{\"format\":1,\"version\":1}\n"));
    auto other = parse_selections("{\"format\":\"presnap-selection\",\"version\":1}\n"
                                  "{\"type\":1,\"snapshots\":[\"s001\"]}\n"
                                  "{\"type\":\"selection\",\"snapshots\":[\"s002\"]}\n");
    REQUIRE(other);
    CHECK(*other == std::vector<std::vector<std::string>>{{"s002"}});
}
