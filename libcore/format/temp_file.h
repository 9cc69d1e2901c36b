// Writing files whole (not installed): the snapshot writer and the page store
// both write under a temporary name beside the target, flush it, and rename
// it over the target, so a reader never sees a half-written file.
#pragma once

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "presnap/error.h"

namespace presnap::snapshot::detail {

// All of `size` bytes, at the file position (offset < 0) or at `offset`.
inline Status write_all(int fd, const std::uint8_t* data, std::size_t size,
                        std::int64_t offset = -1) {
    while (size > 0) {
        ssize_t n = offset < 0 ? ::write(fd, data, size) : ::pwrite(fd, data, size, offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return make_errno_error(Errc::kIo, errno, "write");
        data += n;
        size -= static_cast<std::size_t>(n);
        if (offset >= 0)
            offset += n;
    }
    return {};
}

// "DIR/.NAME.tmp.XXXXXX", mode 0644, for `target`; removed unless commit()
// fsyncs it, renames it over `target` and fsyncs the directory.
class TempFile {
  public:
    static Result<TempFile> create(const std::filesystem::path& target) {
        TempFile t;
        t.target_ = target;
        t.dir_ = target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
        t.tmp_ = (t.dir_ / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
        t.fd_ = ::mkostemp(t.tmp_.data(), O_CLOEXEC);
        if (t.fd_ < 0) {
            int e = errno;
            t.tmp_.clear();
            return make_errno_error(Errc::kIo, e, "create temporary file in " + t.dir_.string());
        }
        if (::fchmod(t.fd_, 0644) != 0)
            return make_errno_error(Errc::kIo, errno, "fchmod " + t.tmp_);
        return t;
    }
    TempFile() = default;
    TempFile(TempFile&& o) noexcept
        : target_(std::move(o.target_)), dir_(std::move(o.dir_)), tmp_(std::move(o.tmp_)),
          fd_(std::exchange(o.fd_, -1)) {
        o.tmp_.clear();
    }
    TempFile& operator=(TempFile&&) = delete;
    ~TempFile() {
        if (fd_ >= 0)
            ::close(fd_);
        if (!tmp_.empty())
            ::unlink(tmp_.c_str());
    }
    int fd() const { return fd_; }
    const std::string& path() const { return tmp_; }
    Status commit() {
        if (::fsync(fd_) != 0)
            return make_errno_error(Errc::kIo, errno, "fsync " + tmp_);
        int rc = ::close(fd_);
        fd_ = -1;
        if (rc != 0)
            return make_errno_error(Errc::kIo, errno, "close " + tmp_);
        if (::rename(tmp_.c_str(), target_.c_str()) != 0)
            return make_errno_error(Errc::kIo, errno, "rename to " + target_.string());
        tmp_.clear();
        // Make the rename itself durable.
        if (int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
            ::fsync(dfd);
            ::close(dfd);
        }
        return {};
    }

  private:
    std::filesystem::path target_, dir_;
    std::string tmp_;
    int fd_ = -1;
};

} // namespace presnap::snapshot::detail
