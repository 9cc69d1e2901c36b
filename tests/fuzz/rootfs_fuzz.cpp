// libFuzzer target for the --rootfs packer. The input describes a tree, one
// entry a line, made afresh in a temporary directory before each pack:
//   d PATH            a directory
//   f PATH CONTENT    a file holding CONTENT
//   l PATH TARGET     a symbolic link; @TREE@ and @OUT@ in TARGET become the
//                     tree's absolute path and that of a directory beside it
//   p PATH            a FIFO
// PATH is made beneath the tree without following links. Beside the tree,
// @OUT@ holds files whose contents no tree file has. The packer must refuse
// the tree with a message, or give a well-formed image (entries, names and
// data in bounds, paths sorted and unique) in which every file holds the
// contents of a file made inside the tree: never a byte from outside.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "presnap/guest_abi.h"
#include "presnap/vmm/rootfs.h"

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxLines = 32;
constexpr size_t kMaxLinks = 12; // 2 links a level, 6 levels: 2^6 paths at most

struct Work {
    std::string dir, tree, out;
    Work() {
        std::string tmpl = (fs::temp_directory_path() / "presnap-rootfs-fuzz-XXXXXX").string();
        if (!::mkdtemp(tmpl.data()))
            std::abort();
        dir = tmpl;
        tree = dir + "/tree";
        out = dir + "/out";
        fs::create_directories(out + "/sub");
        write(out + "/secret", "outside-the-tree 1\n");
        write(out + "/sub/secret", "outside-the-tree 2\n");
    }
    ~Work() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    static void write(const std::string& path, const std::string& text) {
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || ::write(fd, text.data(), text.size()) != ssize_t(text.size()))
            std::abort();
        ::close(fd);
    }
};

bool valid_component(std::string_view c) {
    if (c.empty() || c == "." || c == "..")
        return false;
    for (char ch : c)
        if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-'))
            return false;
    return true;
}

// Opens PATH's parent beneath the tree without following any link and returns
// it with the last component; -1 when PATH is not a plain relative path.
int open_parent(int tree, std::string_view path, std::string& leaf) {
    std::vector<std::string> parts;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos)
            j = path.size();
        std::string_view c = path.substr(i, j - i);
        if (!valid_component(c))
            return -1;
        parts.emplace_back(c);
        i = j + 1;
    }
    if (parts.empty() || parts.size() > 8)
        return -1;
    int fd = ::dup(tree);
    for (size_t k = 0; k + 1 < parts.size(); k++) {
        int next = ::openat(fd, parts[k].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        ::close(fd);
        if (next < 0)
            return -1;
        fd = next;
    }
    leaf = parts.back();
    return fd;
}

std::string expand(std::string s, const Work& w) {
    for (auto [key, value] :
         {std::pair<std::string, std::string>{"@TREE@", w.tree}, {"@OUT@", w.out}})
        for (size_t p; (p = s.find(key)) != std::string::npos;)
            s.replace(p, key.size(), value);
    return s;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Work w;
    std::error_code ec;
    fs::remove_all(w.tree, ec);
    if (::mkdir(w.tree.c_str(), 0755) < 0)
        std::abort();
    int tree = ::open(w.tree.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (tree < 0)
        std::abort();

    std::set<std::string> contents{""};
    std::string_view text(reinterpret_cast<const char*>(data), size);
    size_t lines = 0, links = 0, pos = 0;
    while (pos < text.size() && lines < kMaxLines) {
        size_t nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        lines++;
        if (line.size() < 3 || line[1] != ' ')
            continue;
        std::string_view rest = line.substr(2);
        size_t sp = rest.find(' ');
        std::string_view path = rest.substr(0, sp);
        std::string arg = sp == std::string_view::npos ? "" : std::string(rest.substr(sp + 1));
        std::string leaf;
        int parent = open_parent(tree, path, leaf);
        if (parent < 0)
            continue;
        switch (line[0]) {
        case 'd':
            (void)::mkdirat(parent, leaf.c_str(), 0755);
            break;
        case 'f': {
            int fd = ::openat(parent, leaf.c_str(),
                              O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd >= 0) {
                if (::write(fd, arg.data(), arg.size()) == ssize_t(arg.size()))
                    contents.insert(arg);
                ::close(fd);
            }
            break;
        }
        case 'l':
            if (links < kMaxLinks && ::symlinkat(expand(arg, w).c_str(), parent, leaf.c_str()) == 0)
                links++;
            break;
        case 'p':
            (void)::mkfifoat(parent, leaf.c_str(), 0644);
            break;
        }
        ::close(parent);
    }
    ::close(tree);

    auto img = presnap::vmm::build_rootfs_image(w.tree);
    if (!img) {
        if (img.error().message.empty())
            std::abort();
        return 0;
    }
    const std::vector<std::uint8_t>& b = *img;
    psn_fs_header h;
    if (b.size() < sizeof h)
        std::abort();
    std::memcpy(&h, b.data(), sizeof h);
    if (h.magic != PSN_FS_MAGIC || h.count == 0 || h.entries_off > b.size() ||
        h.count > (b.size() - h.entries_off) / sizeof(psn_fs_entry))
        std::abort();
    std::string prev;
    for (std::uint64_t i = 0; i < h.count; i++) {
        psn_fs_entry e;
        std::memcpy(&e, b.data() + h.entries_off + i * sizeof e, sizeof e);
        if (e.path_off >= b.size() || !std::memchr(b.data() + e.path_off, 0, b.size() - e.path_off))
            std::abort();
        std::string path(reinterpret_cast<const char*>(b.data() + e.path_off));
        if (path.empty() || path[0] != '/' || (i > 0 && path <= prev))
            std::abort(); // sorted, unique: the guest looks paths up by bisection
        prev = path;
        if (S_ISREG(e.mode)) {
            if (e.data_off > b.size() || e.size > b.size() - e.data_off)
                std::abort();
            std::string got(reinterpret_cast<const char*>(b.data() + e.data_off), e.size);
            if (!contents.count(got))
                std::abort(); // bytes that no file inside the tree holds
        } else if (!S_ISDIR(e.mode) || e.size != 0) {
            std::abort();
        }
    }
    return 0;
}
