#include "presnap/runtime/io.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace presnap::runtime {

Result<RequestSource::Chunk> FdRequestSource::next(std::span<uint8_t> dst) {
    Chunk c;
    while (c.len < dst.size()) {
        if (pos_ == len_) {
            if (eof_)
                break;
            ssize_t r = ::read(fd_, buf_, sizeof buf_);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return make_errno_error(Errc::kIo, errno, "cannot read requests");
            if (r == 0) {
                eof_ = true;
                break;
            }
            pos_ = 0;
            len_ = size_t(r);
        }
        size_t avail = std::min<size_t>(len_ - pos_, dst.size() - c.len);
        auto* nl = static_cast<uint8_t*>(std::memchr(buf_ + pos_, '\n', avail));
        size_t take = nl ? size_t(nl - (buf_ + pos_)) + 1 : avail;
        std::memcpy(dst.data() + c.len, buf_ + pos_, take);
        c.len += take;
        pos_ += take;
        if (nl) {
            c.ends_request = true;
            break;
        }
    }
    if (eof_ && pos_ == len_) {
        if (c.len > 0)
            c.ends_request = true; // a last line without a newline
        else
            c.eof = true;
    }
    return c;
}

MemoryRequestSource MemoryRequestSource::of_lines(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& l : lines) {
        text += l;
        text += '\n';
    }
    return MemoryRequestSource(std::move(text));
}

Result<RequestSource::Chunk> MemoryRequestSource::next(std::span<uint8_t> dst) {
    Chunk c;
    if (pos_ == text_.size()) {
        c.eof = true;
        return c;
    }
    size_t avail = std::min(text_.size() - pos_, dst.size());
    auto* start = text_.data() + pos_;
    auto* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
    size_t take = nl ? size_t(nl - start) + 1 : avail;
    std::memcpy(dst.data(), start, take);
    pos_ += take;
    c.len = take;
    c.ends_request = nl != nullptr || pos_ == text_.size();
    return c;
}

Status FdResponseSink::write(int fd, std::span<const uint8_t> bytes) {
    if (fd == 1 && closed_)
        return {};
    const uint8_t* p = bytes.data();
    size_t n = bytes.size();
    int to = fd == 1 ? out_fd_ : err_fd_;
    while (n) {
        ssize_t r = ::write(to, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EPIPE && fd == 1) {
            closed_ = true;
            return {};
        }
        if (r < 0)
            return make_errno_error(Errc::kIo, errno,
                                    fd == 1 ? "cannot write output" : "cannot write diagnostics");
        p += r;
        n -= size_t(r);
    }
    return {};
}

Status MemoryResponseSink::write(int fd, std::span<const uint8_t> bytes) {
    if (bytes.size() > max_ - kept_)
        return make_error(Errc::kGuest, "guest output exceeds the {} bytes kept in memory", max_);
    kept_ += bytes.size();
    (fd == 1 ? current_ : err_).append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return {};
}

Status MemoryResponseSink::end_response(const RequestInfo& info) {
    if (info.index == 0) {
        startup_ += current_;
        current_.clear();
        return {};
    }
    responses_.push_back(std::move(current_));
    current_.clear();
    infos_.push_back(info);
    return {};
}

std::string MemoryResponseSink::all_stdout() const {
    std::string s = startup_;
    for (const auto& r : responses_)
        s += r;
    return s + current_;
}

} // namespace presnap::runtime
