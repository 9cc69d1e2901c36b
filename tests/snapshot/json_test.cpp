#include <doctest/doctest.h>

#include "presnap/snapshot/describe.h"

using presnap::snapshot::is_valid_json;
using presnap::snapshot::json_quote;

TEST_CASE("the json check accepts RFC 8259 values and rejects the rest with a position") {
    for (const char* ok : {"{}", "[]", "0", "-1.5e+3", "\"a\\u00e9\\n\"", "true", "null",
                           " {\"a\": [1, 2, {\"b\": false}], \"c\": \"d\"} "})
        CHECK_MESSAGE(is_valid_json(ok), ok);
    for (const char* bad : {"", "{", "{\"a\"}", "[1,]", "01", "1.", "\"\\x\"", "{} {}", "tru",
                            "\"\x01\"", "{a:1}", "-"})
        CHECK_FALSE_MESSAGE(is_valid_json(bad), bad);
    std::size_t at = 0;
    CHECK_FALSE(is_valid_json("[1, 2, x]", &at));
    CHECK(at == 7);
    CHECK_FALSE(is_valid_json(std::string(65, '[') + std::string(65, ']')));
    CHECK(is_valid_json(std::string(64, '[') + std::string(64, ']')));
}

TEST_CASE("json_quote escapes quotes, backslashes and control characters") {
    CHECK(json_quote("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
    CHECK(is_valid_json(json_quote("x\ty\x1f")));
}
