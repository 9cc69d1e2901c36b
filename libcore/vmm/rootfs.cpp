#include "presnap/vmm/rootfs.h"

#include "presnap/guest_abi.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace presnap::vmm {
namespace {

class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            close();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { close(); }
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }
    explicit operator bool() const { return fd_ >= 0; }

  private:
    void close() {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }
    int fd_ = -1;
};

using Components = std::vector<std::string>;

std::string join(const Components& c, size_t from = 0) {
    if (from >= c.size())
        return "/";
    std::string s;
    for (size_t i = from; i < c.size(); i++)
        s += "/" + c[i];
    return s;
}

// Puts the components of `path` in front of `todo`, in order.
void push_front_components(std::string_view path, std::deque<std::string>& todo) {
    Components parts;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos)
            j = path.size();
        if (j > i)
            parts.emplace_back(path.substr(i, j - i));
        i = j + 1;
    }
    todo.insert(todo.begin(), parts.begin(), parts.end());
}

// A symbolic link's target, read from an O_PATH descriptor of the link itself
// (so it is the link that was opened, not whatever the name means now).
Result<std::string> read_link(int link_fd, const std::string& guest) {
    char buf[PATH_MAX];
    ssize_t n = ::readlinkat(link_fd, "", buf, sizeof buf);
    if (n < 0)
        return make_errno_error(Errc::kIo, errno, "cannot read symbolic link " + guest);
    if (size_t(n) >= sizeof buf)
        return make_error(Errc::kInvalidArgument, "{}: symbolic link target too long", guest);
    return std::string(buf, size_t(n));
}

struct Node {
    std::string guest_path; // "/", "/a", "/a/b"
    uint32_t mode;
    uint64_t size;
    size_t file; // index into Packer::files_ (regular files)
};

// A regular file's contents, stored once however many paths lead to it.
struct FileData {
    Components where;  // its path beneath the root, with no symbolic link in it
    std::string guest; // the first guest path that leads to it, for messages
    dev_t dev;
    ino_t ino;
    uint64_t size;
    uint64_t data_off = 0;
};

// What a name leads to: an O_PATH descriptor, its stat, and its path beneath
// the root with every link resolved.
struct Found {
    Fd fd;
    struct stat st;
    Components where;
};

struct Ancestor {
    dev_t dev;
    ino_t ino;
    std::string guest;
};

class Packer {
  public:
    Packer(Fd root, Components root_abs) : root_(std::move(root)), root_abs_(std::move(root_abs)) {}

    Result<std::vector<uint8_t>> pack();

  private:
    Status walk(int dir_fd, const Components& where, const std::string& guest, uint64_t depth,
                std::vector<Ancestor>& ancestors);
    Result<Found> resolve_link(const Components& link_dir, const std::string& target,
                               const std::string& guest);
    Status add_node(Node n);
    Status read_file(const FileData& f, uint8_t* out);

    bool inside(const Components& pos) const {
        return pos.size() >= root_abs_.size() &&
               std::equal(root_abs_.begin(), root_abs_.end(), pos.begin());
    }

    Fd root_;
    Components root_abs_; // the tree's real path when it was opened
    std::vector<Node> nodes_;
    std::vector<FileData> files_;
    std::map<std::pair<dev_t, ino_t>, size_t> file_index_;
    uint64_t image_bytes_ = sizeof(psn_fs_header);
};

Status Packer::add_node(Node n) {
    if (nodes_.size() >= kMaxRootfsEntries)
        return make_error(Errc::kInvalidArgument,
                          "file tree has too many entries (expected at most {}, found more; "
                          "stopped at {})",
                          kMaxRootfsEntries, n.guest_path);
    image_bytes_ += sizeof(psn_fs_entry) + n.guest_path.size() + 1;
    if (image_bytes_ > kMaxRootfsBytes)
        return make_error(Errc::kInvalidArgument,
                          "file tree is too large (expected at most {} bytes, found {} at {})",
                          kMaxRootfsBytes, image_bytes_, n.guest_path);
    nodes_.push_back(std::move(n));
    return {};
}

// Resolves the target of a link found in directory `link_dir` (a path beneath
// the root) the way the kernel would, but never outside the tree: components
// are opened one by one beneath the root's descriptor with O_NOFOLLOW, links
// met on the way are expanded here, and ".." pops the directories this walk
// came through. A target that leaves the tree is followed lexically (no host
// file outside is touched); if it does not come back in, it is refused.
Result<Found> Packer::resolve_link(const Components& link_dir, const std::string& target,
                                   const std::string& guest) {
    Components pos = root_abs_;
    std::vector<Fd> dirs; // descriptors of pos's components below the root
    std::deque<std::string> todo;
    if (target.starts_with("/")) {
        pos.clear();
    } else {
        todo.assign(link_dir.begin(), link_dir.end());
    }
    {
        std::deque<std::string> t;
        push_front_components(target, t);
        todo.insert(todo.end(), t.begin(), t.end());
    }
    int hops = 1;
    Fd last; // a final component that is not a directory
    while (!todo.empty()) {
        std::string c = std::move(todo.front());
        todo.pop_front();
        if (c == ".")
            continue;
        if (c == "..") {
            if (pos.empty())
                continue;
            bool below_root = inside(pos) && pos.size() > root_abs_.size();
            pos.pop_back();
            if (below_root)
                dirs.pop_back();
            continue;
        }
        if (!inside(pos)) {
            pos.push_back(std::move(c)); // outside: lexical only, until back at the root
            continue;
        }
        int at = dirs.empty() ? root_.get() : dirs.back().get();
        Fd fd(::openat(at, c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        struct stat st;
        if (!fd || ::fstat(fd.get(), &st) < 0)
            return make_errno_error(Errc::kIo, errno, "cannot resolve symbolic link " + guest);
        if (S_ISLNK(st.st_mode)) {
            if (++hops > kMaxRootfsLinkHops)
                return make_error(Errc::kInvalidArgument,
                                  "{}: too many levels of symbolic links (expected at most {})",
                                  guest, kMaxRootfsLinkHops);
            auto next = read_link(fd.get(), guest);
            if (!next)
                return std::unexpected(next.error());
            if (next->starts_with("/")) {
                pos.clear();
                dirs.clear();
            }
            push_front_components(*next, todo);
            continue;
        }
        pos.push_back(std::move(c));
        if (S_ISDIR(st.st_mode)) {
            dirs.push_back(std::move(fd));
        } else if (!todo.empty()) {
            return make_errno_error(Errc::kIo, ENOTDIR, "cannot resolve symbolic link " + guest);
        } else {
            last = std::move(fd);
        }
    }
    if (!inside(pos))
        return make_error(Errc::kInvalidArgument,
                          "{}: symbolic link points outside the file tree (to {})", guest,
                          join(pos));
    Found f;
    if (last)
        f.fd = std::move(last);
    else if (!dirs.empty())
        f.fd = std::move(dirs.back());
    else
        f.fd = Fd(::openat(root_.get(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!f.fd || ::fstat(f.fd.get(), &f.st) < 0)
        return make_errno_error(Errc::kIo, errno, "cannot resolve symbolic link " + guest);
    f.where.assign(pos.begin() + std::ptrdiff_t(root_abs_.size()), pos.end());
    return f;
}

Status Packer::walk(int dir_fd, const Components& where, const std::string& guest, uint64_t depth,
                    std::vector<Ancestor>& ancestors) {
    // dir_fd is O_PATH: listing needs a descriptor opened for reading.
    Fd list(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* d = list ? ::fdopendir(list.get()) : nullptr;
    if (!d)
        return make_errno_error(Errc::kIo, errno, "cannot open directory " + guest);
    list.release();
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        if (!std::strcmp(e->d_name, ".") || !std::strcmp(e->d_name, ".."))
            continue;
        if (nodes_.size() + names.size() >= kMaxRootfsEntries) {
            ::closedir(d);
            return make_error(Errc::kInvalidArgument,
                              "file tree has too many entries (expected at most {}, found more; "
                              "stopped in {})",
                              kMaxRootfsEntries, guest);
        }
        names.emplace_back(e->d_name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());

    for (const auto& name : names) {
        std::string gp = (guest == "/" ? "" : guest) + "/" + name;
        if (gp.size() > kMaxRootfsPathBytes)
            return make_error(Errc::kInvalidArgument,
                              "{}...: path too long (expected at most {} bytes, found {})",
                              gp.substr(0, 64), kMaxRootfsPathBytes, gp.size());
        if (depth + 1 > kMaxRootfsDepth)
            return make_error(Errc::kInvalidArgument,
                              "{}: nested too deep (expected at most {} levels, found {})", gp,
                              kMaxRootfsDepth, depth + 1);
        Found f;
        f.fd = Fd(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!f.fd || ::fstat(f.fd.get(), &f.st) < 0)
            return make_errno_error(Errc::kIo, errno, "cannot open " + gp);
        if (S_ISLNK(f.st.st_mode)) {
            auto target = read_link(f.fd.get(), gp);
            if (!target)
                return std::unexpected(target.error());
            auto r = resolve_link(where, *target, gp);
            if (!r)
                return std::unexpected(r.error());
            f = std::move(*r);
        } else {
            f.where = where;
            f.where.push_back(name);
        }
        const struct stat& st = f.st;
        if (S_ISDIR(st.st_mode)) {
            for (const auto& a : ancestors)
                if (a.dev == st.st_dev && a.ino == st.st_ino)
                    return make_error(Errc::kInvalidArgument,
                                      "{}: directory loop (leads back to {}, which contains it)",
                                      gp, a.guest);
            if (auto s = add_node({gp, uint32_t(S_IFDIR | (st.st_mode & 0555)), 0, 0}); !s)
                return s;
            ancestors.push_back({st.st_dev, st.st_ino, gp});
            if (auto s = walk(f.fd.get(), f.where, gp, depth + 1, ancestors); !s)
                return s;
            ancestors.pop_back();
        } else if (S_ISREG(st.st_mode)) {
            auto [it, fresh] = file_index_.try_emplace({st.st_dev, st.st_ino}, files_.size());
            if (fresh) {
                image_bytes_ += uint64_t(st.st_size);
                files_.push_back({f.where, gp, st.st_dev, st.st_ino, uint64_t(st.st_size)});
            }
            if (auto s = add_node({gp, uint32_t(S_IFREG | (st.st_mode & 0555)),
                                   uint64_t(st.st_size), it->second});
                !s)
                return s;
        } else {
            return make_error(Errc::kInvalidArgument, "{}: not a regular file or directory", gp);
        }
    }
    return {};
}

// Opens a file again by the path the walk found (no link in it: every
// component is opened with O_NOFOLLOW beneath the root) and reads it, after
// checking on the opened descriptor that it is still the same file.
Status Packer::read_file(const FileData& f, uint8_t* out) {
    auto changed = [&] {
        return make_error(Errc::kIo, "{}: changed while the file tree was read", f.guest);
    };
    Fd dir;
    for (size_t i = 0; i + 1 < f.where.size(); i++) {
        int at = dir ? dir.get() : root_.get();
        Fd next(::openat(at, f.where[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!next)
            return changed();
        dir = std::move(next);
    }
    Fd fd(::openat(dir ? dir.get() : root_.get(), f.where.back().c_str(),
                   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != f.dev ||
        st.st_ino != f.ino || uint64_t(st.st_size) != f.size)
        return changed();
    uint64_t got = 0;
    while (got < f.size) {
        ssize_t r = ::read(fd.get(), out + got, f.size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return make_errno_error(Errc::kIo, errno, "cannot read " + f.guest);
        if (r == 0)
            return changed();
        got += uint64_t(r);
    }
    return {};
}

Result<std::vector<uint8_t>> Packer::pack() {
    struct stat st;
    if (::fstat(root_.get(), &st) < 0)
        return make_errno_error(Errc::kIo, errno, "cannot stat the file tree");
    if (auto s = add_node({"/", uint32_t(S_IFDIR | 0555), 0, 0}); !s)
        return std::unexpected(s.error());
    std::vector<Ancestor> ancestors{{st.st_dev, st.st_ino, "/"}};
    if (auto s = walk(root_.get(), {}, "/", 0, ancestors); !s)
        return std::unexpected(s.error());
    std::sort(nodes_.begin(), nodes_.end(),
              [](const Node& a, const Node& b) { return a.guest_path < b.guest_path; });

    uint64_t entries_off = sizeof(psn_fs_header);
    uint64_t strings_off = entries_off + nodes_.size() * sizeof(psn_fs_entry);
    uint64_t strings_size = 0;
    for (const auto& n : nodes_)
        strings_size += n.guest_path.size() + 1;
    uint64_t data_off = (strings_off + strings_size + 15) / 16 * 16;
    uint64_t end = data_off;
    for (auto& f : files_) {
        f.data_off = end;
        end += f.size;
    }
    if (end > kMaxRootfsBytes)
        return make_error(Errc::kInvalidArgument,
                          "file tree is too large (expected at most {} bytes, found {})",
                          kMaxRootfsBytes, end);
    std::vector<uint8_t> img(end, 0);
    psn_fs_header h{PSN_FS_MAGIC, nodes_.size(), entries_off};
    std::memcpy(img.data(), &h, sizeof h);
    uint64_t s = strings_off;
    for (size_t i = 0; i < nodes_.size(); i++) {
        const Node& n = nodes_[i];
        psn_fs_entry e{};
        e.path_off = s;
        e.mode = n.mode;
        e.size = n.size;
        if (S_ISREG(n.mode))
            e.data_off = files_[n.file].data_off;
        std::memcpy(img.data() + s, n.guest_path.c_str(), n.guest_path.size() + 1);
        s += n.guest_path.size() + 1;
        std::memcpy(img.data() + entries_off + i * sizeof e, &e, sizeof e);
    }
    for (const auto& f : files_)
        if (auto st2 = read_file(f, img.data() + f.data_off); !st2)
            return std::unexpected(st2.error());
    return img;
}

} // namespace

Result<std::vector<uint8_t>> build_rootfs_image(const std::string& dir) {
    // DIR itself is the user's choice and may be a link; everything beneath
    // it is resolved beneath this descriptor.
    Fd root(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) {
        if (errno == ENOTDIR)
            return make_error(Errc::kInvalidArgument, "{} is not a directory", dir);
        return make_errno_error(Errc::kIo, errno, "cannot open " + dir);
    }
    // The tree's real path, only to tell which absolute link targets lead
    // inside it; checked to be the directory that was opened.
    char real[PATH_MAX];
    struct stat a, b;
    if (!::realpath(dir.c_str(), real) || ::stat(real, &a) < 0 || ::fstat(root.get(), &b) < 0)
        return make_errno_error(Errc::kIo, errno, "cannot resolve " + dir);
    if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return make_error(Errc::kIo, "{}: changed while the file tree was read", dir);
    Components root_abs;
    std::deque<std::string> parts;
    push_front_components(real, parts);
    root_abs.assign(parts.begin(), parts.end());
    return Packer(std::move(root), std::move(root_abs)).pack();
}

} // namespace presnap::vmm
