// The --rootfs packer against real directory trees made in a temporary
// directory: which links it follows, which it refuses, and the limits that
// bound what a tree of any shape can make it allocate.
#include "presnap/vmm/rootfs.h"

#include "presnap/guest_abi.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>

using namespace presnap::vmm;
namespace fs = std::filesystem;

namespace {

// A fresh directory, removed at the end of the test.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "presnap-rootfs-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void write_file(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

struct Entry {
    uint32_t mode;
    uint64_t data_off;
    std::string data;
};

// The image's entries by guest path, read back as the guest kernel reads them.
std::map<std::string, Entry> entries(const std::vector<uint8_t>& img) {
    psn_fs_header h;
    REQUIRE(img.size() >= sizeof h);
    std::memcpy(&h, img.data(), sizeof h);
    REQUIRE(h.magic == PSN_FS_MAGIC);
    std::map<std::string, Entry> out;
    for (uint64_t i = 0; i < h.count; i++) {
        psn_fs_entry e;
        REQUIRE(h.entries_off + (i + 1) * sizeof e <= img.size());
        std::memcpy(&e, img.data() + h.entries_off + i * sizeof e, sizeof e);
        REQUIRE(e.path_off < img.size());
        REQUIRE(e.data_off + e.size <= img.size());
        std::string path(reinterpret_cast<const char*>(img.data() + e.path_off));
        std::string data(reinterpret_cast<const char*>(img.data() + e.data_off), e.size);
        out[path] = {e.mode, e.data_off, S_ISREG(e.mode) ? data : ""};
    }
    return out;
}

std::string error_of(const fs::path& dir) {
    auto r = build_rootfs_image(dir.string());
    REQUIRE_FALSE(r.has_value());
    return r.error().describe();
}

} // namespace

TEST_CASE("links that stay inside the tree are followed: relative, absolute, out and back") {
    TempDir t;
    fs::path tree = t.path / "tree";
    write_file(tree / "data/hello.txt", "hello\n");
    fs::create_directory_symlink("data", tree / "dlink");
    fs::create_symlink("data/hello.txt", tree / "rel");
    fs::create_symlink(fs::canonical(tree) / "data/hello.txt", tree / "abs");
    fs::create_symlink("../tree/data/hello.txt", tree / "outandback");
    fs::create_symlink("../dlink/./hello.txt", tree / "data/viadir");
    fs::create_symlink("rel", tree / "chain");
    auto img = build_rootfs_image(tree.string());
    REQUIRE(img.has_value());
    auto e = entries(*img);
    for (const char* p :
         {"/rel", "/abs", "/outandback", "/data/viadir", "/chain", "/dlink/hello.txt"}) {
        INFO(p);
        REQUIRE(e.count(p));
        CHECK(S_ISREG(e[p].mode));
        CHECK(e[p].data == "hello\n");
    }
    CHECK(S_ISDIR(e["/dlink"].mode));
    CHECK(S_ISDIR(e["/"].mode));
}

TEST_CASE("a file reached by several paths is stored once") {
    TempDir t;
    write_file(t.path / "big", std::string(100000, 'x'));
    for (const char* l : {"a", "b", "c"})
        fs::create_symlink("big", t.path / l);
    auto img = build_rootfs_image(t.path.string());
    REQUIRE(img.has_value());
    CHECK(img->size() < 101000);
    auto e = entries(*img);
    CHECK(e["/a"].data_off == e["/big"].data_off);
    CHECK(e["/c"].data == e["/big"].data);
}

TEST_CASE("links that leave the tree are refused with the target named") {
    TempDir t;
    fs::path tree = t.path / "tree";
    write_file(t.path / "secret", "host file\n");
    write_file(tree / "ok", "ok\n");
    SUBCASE("absolute") {
        fs::create_symlink("/etc/passwd", tree / "passwd");
        CHECK(error_of(tree) ==
              "/passwd: symbolic link points outside the file tree (to /etc/passwd)");
    }
    SUBCASE("relative, through ..") {
        fs::create_symlink("../secret", tree / "s");
        CHECK(error_of(tree) == "/s: symbolic link points outside the file tree (to " +
                                    fs::canonical(t.path / "secret").string() + ")");
    }
    SUBCASE("a link to a link outside") {
        fs::create_symlink("/etc", t.path / "etc-link");
        fs::create_symlink("../etc-link/passwd", tree / "p");
        // outside the tree the path is followed lexically: no host file is
        // touched, so the message names the link's path, not /etc/passwd
        CHECK(error_of(tree) == "/p: symbolic link points outside the file tree (to " +
                                    fs::canonical(t.path).string() + "/etc-link/passwd)");
    }
    SUBCASE("dangling") {
        fs::create_symlink("nothing-here", tree / "d");
        CHECK(error_of(tree) == "cannot resolve symbolic link /d: No such file or directory");
    }
}

TEST_CASE("special files and link cycles are refused") {
    TempDir t;
    SUBCASE("fifo") {
        REQUIRE(::mkfifo((t.path / "fifo").c_str(), 0600) == 0);
        CHECK(error_of(t.path) == "/fifo: not a regular file or directory");
    }
    SUBCASE("a link to itself") {
        fs::create_symlink("self", t.path / "self");
        CHECK(error_of(t.path) == "/self: too many levels of symbolic links (expected at most 40)");
    }
    SUBCASE("a directory link to its parent") {
        fs::create_directories(t.path / "a/b");
        fs::create_directory_symlink("..", t.path / "a/b/up");
        CHECK(error_of(t.path) == "/a/b/up: directory loop (leads back to /a, which contains it)");
    }
    SUBCASE("a directory link to the root") {
        fs::create_directory_symlink(".", t.path / "here");
        CHECK(error_of(t.path) == "/here: directory loop (leads back to /, which contains it)");
    }
}

TEST_CASE("two links per level: 2^N paths are bounded by the entry limit") {
    // l0/{a,b} -> ../l1, l1/{a,b} -> ../l2, ...: 17 levels give 2^17 paths to
    // l17/f, more than kMaxRootfsEntries (the shape that once made 65,000
    // entries and a GiB of copies from 30 links).
    TempDir t;
    const int levels = 17;
    for (int i = 0; i <= levels; i++)
        fs::create_directories(t.path / ("l" + std::to_string(i)));
    write_file(t.path / ("l" + std::to_string(levels)) / "f", std::string(15000, 'd'));
    for (int i = 0; i < levels; i++)
        for (const char* l : {"a", "b"})
            fs::create_directory_symlink("../l" + std::to_string(i + 1),
                                         t.path / ("l" + std::to_string(i)) / l);
    auto msg = error_of(t.path);
    CHECK(msg.starts_with("file tree has too many entries (expected at most 100000, found more; "
                          "stopped "));
}

TEST_CASE("fourteen levels of two links pack small: contents are not copied per path") {
    // 98,287 entries, 32,767 of them paths to one 15,000-byte file: stored
    // once, the image holds entries and names only.
    TempDir t;
    const int levels = 14;
    for (int i = 0; i <= levels; i++)
        fs::create_directories(t.path / ("l" + std::to_string(i)));
    write_file(t.path / ("l" + std::to_string(levels)) / "f", std::string(15000, 'd'));
    for (int i = 0; i < levels; i++)
        for (const char* l : {"a", "b"})
            fs::create_directory_symlink("../l" + std::to_string(i + 1),
                                         t.path / ("l" + std::to_string(i)) / l);
    auto img = build_rootfs_image(t.path.string());
    REQUIRE(img.has_value());
    psn_fs_header h;
    std::memcpy(&h, img->data(), sizeof h);
    CHECK(h.count == 98287);
    CHECK(img->size() < 8u << 20);
}

TEST_CASE("depth, path length and size limits name the limit and the value") {
    TempDir t;
    SUBCASE("depth") {
        fs::path p = t.path;
        for (uint64_t i = 0; i < kMaxRootfsDepth + 1; i++)
            p /= "d";
        fs::create_directories(p);
        std::string deep;
        for (uint64_t i = 0; i < kMaxRootfsDepth + 1; i++)
            deep += "/d";
        CHECK(error_of(t.path) ==
              deep + ": nested too deep (expected at most 64 levels, found 65)");
    }
    SUBCASE("path length") {
        std::string name(250, 'n');
        fs::create_directories(t.path / name / name / name / name / name);
        CHECK(error_of(t.path) == "/" + name.substr(0, 63) +
                                      "...: path too long (expected at most 1023 bytes, found "
                                      "1255)");
    }
    SUBCASE("bytes: a sparse file costs nothing to make and is refused before it is read") {
        { std::ofstream(t.path / "big"); }
        fs::resize_file(t.path / "big", kMaxRootfsBytes);
        auto msg = error_of(t.path);
        CHECK(msg.starts_with("file tree is too large (expected at most 1073741824 bytes, found "));
        CHECK(msg.ends_with(" at /big)"));
    }
}
