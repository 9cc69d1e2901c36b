#include "presnap/error.h"

#include <cerrno>

#include <doctest/doctest.h>

using namespace presnap;

TEST_CASE("an error describes itself with its context first") {
    Result<int> r = make_error(Errc::kFormat, "bad magic (expected {}, found {})", "PSNP", "ABCD");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().describe() == "bad magic (expected PSNP, found ABCD)");
    CHECK(r.error().with_context("a.snap").describe() ==
          "a.snap: bad magic (expected PSNP, found ABCD)");
}

TEST_CASE("an errno error carries the system's text") {
    auto e = make_errno_error(Errc::kIo, ENOENT, "open");
    CHECK(e.error().message == "open: No such file or directory");
}
