#include "presnap/vmm/rootfs.h"

#include "presnap/guest_abi.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace presnap::vmm {
namespace {

struct Node {
    std::string guest_path; // "/", "/a", "/a/b"
    std::string host_path;
    uint32_t mode;
    uint64_t size;
};

bool inside(const std::string& root, const std::string& real) {
    return real == root || (real.size() > root.size() && real.compare(0, root.size(), root) == 0 &&
                            real[root.size()] == '/');
}

Status walk(const std::string& root, const std::string& host, const std::string& guest,
            std::vector<Node>& out, uint64_t& total, int depth) {
    if (depth > 64)
        return make_error(Errc::kInvalidArgument, "{}: directory tree too deep", host);
    DIR* d = opendir(host.c_str());
    if (!d)
        return make_errno_error(Errc::kIo, errno, "cannot open directory " + host);
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
            names.emplace_back(e->d_name);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
        std::string hp = host + "/" + n, gp = (guest == "/" ? "" : guest) + "/" + n;
        struct stat st;
        if (lstat(hp.c_str(), &st) < 0)
            return make_errno_error(Errc::kIo, errno, "cannot stat " + hp);
        if (S_ISLNK(st.st_mode)) {
            char buf[PATH_MAX];
            if (!realpath(hp.c_str(), buf))
                return make_errno_error(Errc::kIo, errno, "cannot resolve symbolic link " + hp);
            if (!inside(root, buf))
                return make_error(Errc::kInvalidArgument,
                                  "{}: symbolic link points outside the file tree (to {})", hp,
                                  buf);
            if (stat(buf, &st) < 0)
                return make_errno_error(Errc::kIo, errno, "cannot stat " + std::string(buf));
        }
        if (out.size() >= kMaxRootfsEntries)
            return make_error(Errc::kInvalidArgument, "file tree has more than {} entries",
                              kMaxRootfsEntries);
        if (S_ISDIR(st.st_mode)) {
            out.push_back({gp, hp, uint32_t(S_IFDIR | (st.st_mode & 0555)), 0});
            if (auto s = walk(root, hp, gp, out, total, depth + 1); !s)
                return s;
        } else if (S_ISREG(st.st_mode)) {
            total += uint64_t(st.st_size);
            if (total > kMaxRootfsBytes)
                return make_error(Errc::kInvalidArgument, "file tree is larger than {} MiB",
                                  kMaxRootfsBytes >> 20);
            out.push_back({gp, hp, uint32_t(S_IFREG | (st.st_mode & 0555)), uint64_t(st.st_size)});
        } else {
            return make_error(Errc::kInvalidArgument, "{}: not a regular file or directory", hp);
        }
    }
    return {};
}

} // namespace

Result<std::vector<uint8_t>> build_rootfs_image(const std::string& dir) {
    char real[PATH_MAX];
    if (!realpath(dir.c_str(), real))
        return make_errno_error(Errc::kIo, errno, "cannot resolve " + dir);
    struct stat st;
    if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
        return make_error(Errc::kInvalidArgument, "{} is not a directory", dir);
    std::vector<Node> nodes{{"/", real, uint32_t(S_IFDIR | 0555), 0}};
    uint64_t total = 0;
    if (auto s = walk(real, real, "/", nodes, total, 0); !s)
        return std::unexpected(s.error());
    std::sort(nodes.begin(), nodes.end(),
              [](const Node& a, const Node& b) { return a.guest_path < b.guest_path; });

    uint64_t entries_off = sizeof(psn_fs_header);
    uint64_t strings_off = entries_off + nodes.size() * sizeof(psn_fs_entry);
    uint64_t strings_size = 0;
    for (const auto& n : nodes)
        strings_size += n.guest_path.size() + 1;
    uint64_t data_off = (strings_off + strings_size + 15) / 16 * 16;
    std::vector<uint8_t> img(data_off + total, 0);
    psn_fs_header h{PSN_FS_MAGIC, nodes.size(), entries_off};
    std::memcpy(img.data(), &h, sizeof h);
    uint64_t s = strings_off, dpos = data_off;
    for (size_t i = 0; i < nodes.size(); i++) {
        const Node& n = nodes[i];
        psn_fs_entry e{};
        e.path_off = s;
        e.mode = n.mode;
        e.size = n.size;
        std::memcpy(img.data() + s, n.guest_path.c_str(), n.guest_path.size() + 1);
        s += n.guest_path.size() + 1;
        if (S_ISREG(n.mode)) {
            e.data_off = dpos;
            int fd = ::open(n.host_path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return make_errno_error(Errc::kIo, errno, "cannot open " + n.host_path);
            uint64_t got = 0;
            while (got < n.size) {
                ssize_t r = ::read(fd, img.data() + dpos + got, n.size - got);
                if (r <= 0) {
                    int err = r < 0 ? errno : EIO;
                    ::close(fd);
                    return make_errno_error(Errc::kIo, err, "cannot read " + n.host_path);
                }
                got += uint64_t(r);
            }
            ::close(fd);
            dpos += n.size;
        }
        std::memcpy(img.data() + entries_off + i * sizeof e, &e, sizeof e);
    }
    return img;
}

} // namespace presnap::vmm
