// The initial process stack: argc, argv, envp, auxv and strings, as Linux
// lays them out on x86-64.
#include "presnap/vmm/boot_stack.h"

#include <cstring>
#include <elf.h>
#include <map>

#include <doctest/doctest.h>

using namespace presnap::vmm;

namespace {
struct Parsed {
    uint64_t argc;
    std::vector<std::string> argv, envp;
    std::map<uint64_t, uint64_t> auxv;
    bool auxv_terminated = false;
};

std::string str_at(const StackImage& img, uint64_t addr) {
    uint64_t off = addr - img.rsp;
    REQUIRE(off < img.bytes.size());
    return std::string(reinterpret_cast<const char*>(img.bytes.data() + off));
}

Parsed parse(const StackImage& img) {
    Parsed p;
    auto word = [&](size_t i) {
        uint64_t v;
        std::memcpy(&v, img.bytes.data() + i * 8, 8);
        return v;
    };
    size_t i = 0;
    p.argc = word(i++);
    for (uint64_t a; (a = word(i++));)
        p.argv.push_back(str_at(img, a));
    for (uint64_t e; (e = word(i++));)
        p.envp.push_back(str_at(img, e));
    for (;; i += 2) {
        if (word(i) == AT_NULL) {
            p.auxv_terminated = true;
            break;
        }
        p.auxv[word(i)] = word(i + 1);
    }
    return p;
}
} // namespace

TEST_CASE("argc, argv, envp and auxv are laid out as on Linux") {
    StackSpec s;
    s.top = 0x7ff000;
    s.argv = {"./app", "--flag", ""};
    s.envp = {"A=1", "LONG=" + std::string(300, 'x')};
    s.execfn = "./app";
    for (int i = 0; i < 16; i++)
        s.at_random[size_t(i)] = uint8_t(i + 1);
    s.auxv = {{AT_PAGESZ, 4096}, {AT_PHNUM, 9}, {AT_ENTRY, 0x401000}};
    auto img = build_stack(s);
    REQUIRE(img.has_value());
    CHECK(img->rsp % 16 == 0);
    CHECK(img->rsp + img->bytes.size() == s.top);
    Parsed p = parse(*img);
    CHECK(p.argc == 3);
    CHECK(p.argv == s.argv);
    CHECK(p.envp == s.envp);
    REQUIRE(p.auxv_terminated);
    CHECK(p.auxv[AT_PAGESZ] == 4096);
    CHECK(p.auxv[AT_PHNUM] == 9);
    CHECK(p.auxv[AT_ENTRY] == 0x401000);
    CHECK(str_at(*img, p.auxv[AT_EXECFN]) == "./app");
    CHECK(p.auxv[AT_EXECFN] == img->execfn_addr);
    uint64_t rnd = p.auxv[AT_RANDOM] - img->rsp;
    CHECK(std::memcmp(img->bytes.data() + rnd, s.at_random.data(), 16) == 0);
}

TEST_CASE("the stack pointer stays 16-byte aligned for any argument count") {
    for (int n = 0; n < 6; n++) {
        StackSpec s;
        s.top = 0x100000;
        for (int i = 0; i < n; i++)
            s.argv.push_back(std::string(size_t(i * 3 + 1), 'a'));
        auto img = build_stack(s);
        REQUIRE(img.has_value());
        CHECK(img->rsp % 16 == 0);
        CHECK(parse(*img).argc == uint64_t(n));
    }
}

TEST_CASE("oversized arguments and a misaligned top are refused") {
    StackSpec s;
    s.top = 0x100000;
    s.argv = {std::string(kMaxStackImage, 'x')};
    auto r = build_stack(s);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("arguments and environment take") == 0);
    s.argv = {"a"};
    s.top = 0x100008;
    CHECK_FALSE(build_stack(s).has_value());
}
