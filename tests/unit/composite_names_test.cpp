// The names of a library's composites: what merge writes, select reads back.
#include "presnap/library/composites.h"

#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace presnap::library;

namespace {
const std::string kBase = "a4dfb690b93b8117adc6bab3e2538ba0";
}

TEST_CASE("a composite's name holds the base's hash and its ids, read back as written") {
    std::vector<std::string> ids = {"s001", "s003", "s1000"};
    std::string name = composite_file_name(kBase, ids);
    CHECK(name == kBase + "-s001-s003-s1000.snap");
    auto back = parse_composite_file_name(name);
    REQUIRE(back);
    CHECK(back->base_hash_hex == kBase);
    CHECK(back->ids == ids);
}

TEST_CASE("a long set is named by a hash of its ids, which cannot be read back") {
    std::vector<std::string> ids;
    for (int i = 1; i <= 40; i++)
        ids.push_back("s" + std::to_string(1000 + i));
    std::string name = composite_file_name(kBase, ids);
    CHECK(name.starts_with(kBase + "-40-x"));
    CHECK(name.size() == kBase.size() + 1 + 2 + 2 + 16 + 5);
    CHECK_FALSE(parse_composite_file_name(name));
    // Different sets, different names.
    ids.back() = "s9999";
    CHECK(composite_file_name(kBase, ids) != name);
}

TEST_CASE("names of any other form are not composites") {
    for (const char* bad :
         {"", ".snap", "x.snap", "a4dfb690b93b8117adc6bab3e2538ba0-.snap",
          "a4dfb690b93b8117adc6bab3e2538ba0-s001-.snap",
          "a4dfb690b93b8117adc6bab3e2538ba0-s001--s002.snap",
          "a4dfb690b93b8117adc6bab3e2538ba0-s001.snap.tmp-abc123",
          "a4dfb690b93b8117adc6bab3e2538ba0-s001-x.snap",
          "a4dfb690b93b8117adc6bab3e2538ba0-../s001.snap",
          "A4DFB690B93B8117ADC6BAB3E2538BA0-s001.snap", "a4dfb690b93b8117adc6bab3e2538b-s001.snap",
          "a4dfb690b93b8117adc6bab3e2538ba0_s001.snap"})
        CHECK_MESSAGE(!parse_composite_file_name(bad), bad);
}
