// The page merge rules as pictures (STYLE.md 15): one row per case, the
// first bytes of a page for the base, each side and the expected result;
// the rest of every page is zero. In a picture '.' is a zero byte, a
// letter is that byte; a side given as "-" did not change the page; a base
// given as "" is a page absent from the base (zero). Masks: 'x' marks a
// dead (or request-scoped) byte.
#include "presnap/merge/page_merge.h"

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

namespace {

using presnap::merge::kPage;
using presnap::merge::merge_page;
using presnap::merge::PageSide;

std::vector<uint8_t> page(const std::string& pic) {
    std::vector<uint8_t> p(kPage, 0);
    for (size_t i = 0; i < pic.size(); i++)
        p[i] = pic[i] == '.' ? 0 : uint8_t(pic[i]);
    return p;
}
std::vector<uint8_t> mask(const std::string& pic) {
    if (pic.empty())
        return {};
    std::vector<uint8_t> m(kPage, 0);
    for (size_t i = 0; i < pic.size(); i++)
        m[i] = pic[i] == 'x';
    return m;
}
std::string picture(const std::vector<uint8_t>& p, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; i++)
        s += p[i] ? char(p[i]) : '.';
    return s;
}

struct Row {
    const char* what;
    std::string base, a, b, dead, scoped_a, scoped_b;
    std::string expected; // the merged picture, or "" when it conflicts
    std::vector<uint16_t> conflicts;
};

void check(const Row& r) {
    CAPTURE(r.what);
    auto base = page(r.base);
    auto a = page(r.a), b = page(r.b);
    auto sa = mask(r.scoped_a), sb = mask(r.scoped_b), dead = mask(r.dead);
    PageSide sides[] = {
        {r.a == "-" ? std::span<const uint8_t>{} : std::span<const uint8_t>(a), sa},
        {r.b == "-" ? std::span<const uint8_t>{} : std::span<const uint8_t>(b), sb}};
    std::vector<uint8_t> out(kPage, 0xee);
    auto res =
        merge_page(r.base.empty() ? std::span<const uint8_t>{} : std::span<const uint8_t>(base),
                   sides, dead, out);
    if (r.expected.empty()) {
        CHECK(res.conflict);
        CHECK(res.offsets == r.conflicts);
        return;
    }
    CHECK_FALSE(res.conflict);
    CHECK(picture(out, r.expected.size()) == r.expected);
    for (size_t i = 16; i < kPage; i++) // the rest of the page is the (zero) base
        REQUIRE(out[i] == 0);
}

} // namespace

TEST_CASE("page merge: one side changed the page, the other did not: its page") {
    check({"a only", "abcd", "abXd", "-", "", "", "", "abXd", {}});
    check({"b only", "abcd", "-", "Ybcd", "", "", "", "Ybcd", {}});
}

TEST_CASE("page merge: different bytes changed by each side: both changes") {
    check({"disjoint", "abcdefgh", "Abcdefgh", "abcdefgH", "", "", "", "AbcdefgH", {}});
}

TEST_CASE("page merge: identical changes on both sides: taken once, no conflict") {
    check({"same", "abcd", "aXcd", "aXcd", "", "", "", "aXcd", {}});
    check({"same plus own", "abcd", "aXcY", "ZXcd", "", "", "", "ZXcY", {}});
}

TEST_CASE("page merge: a byte changed differently by two sides is a conflict at its offset") {
    check({"one byte", "abcd", "aXcd", "aYcd", "", "", "", "", {1}});
    check({"two bytes", "abcdef", "XbcdeP", "YbcdeQ", "", "", "", "", {0, 5}});
}

TEST_CASE("page merge: a page zero in the base (absent) written by both sides") {
    check({"absent base, disjoint", "", "ab..", "..cd", "", "", "", "abcd", {}});
    check({"absent base, clash", "", "ab..", ".X..", "", "", "", "", {1}});
    check({"absent base, same", "", "ab", "ab", "", "", "", "ab", {}});
}

TEST_CASE("page merge: a page that became zero on one side") {
    check({"zeroed vs untouched bytes", "ab..", "....", "ab.X", "", "", "", "...X", {}});
    check({"zeroed vs rewritten byte", "abcd", "....", "abcX", "", "", "", "", {3}});
    check({"both zeroed", "abcd", "....", "....", "", "", "", "....", {}});
}

TEST_CASE("page merge: dead bytes take the base's value whatever the sides wrote") {
    check({"dead clash", "abcd", "XYcd", "PQcd", "xx", "", "", "abcd", {}});
    check({"dead and live", "abcd", "XbcZ", "PbcZ", "x", "", "", "abcZ", {}});
    check({"dead does not hide a live clash", "abcd", "XbcZ", "PbcW", "x", "", "", "", {3}});
}

TEST_CASE("page merge: request-scoped bytes of a side are not its warm state") {
    check({"scoped on a: b's value", "abcd", "aXcd", "aYcd", "", ".x", "", "aYcd", {}});
    check({"scoped on both: the base's", "abcd", "aXcd", "aYcd", "", ".x", ".x", "abcd", {}});
    check(
        {"scoped on b only, a unchanged: base", "abcd", "abcd", "aYcd", "", "", ".x", "abcd", {}});
    check({"scoped elsewhere: still a conflict", "abcd", "aXcd", "aYcd", "", "x", "x", "", {1}});
}

TEST_CASE("page merge: three sides") {
    auto base = page("abcd"), a = page("Abcd"), b = page("aBcd"), c = page("abCd");
    PageSide sides[] = {{a, {}}, {b, {}}, {c, {}}};
    std::vector<uint8_t> out(kPage);
    auto r = merge_page(base, sides, {}, out);
    CHECK_FALSE(r.conflict);
    CHECK(picture(out, 4) == "ABCd");
    auto c2 = page("Xbcd");
    PageSide clash[] = {{a, {}}, {b, {}}, {c2, {}}};
    r = merge_page(base, clash, {}, out);
    CHECK(r.conflict);
    CHECK(r.offsets == std::vector<uint16_t>{0});
}
