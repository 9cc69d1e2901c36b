// Where a Session's requests come from and where its responses go.
//
// A RequestSource hands out request bytes in chunks that never cross a
// request boundary (a request is one line, newline included); a
// ResponseSink receives the guest's stdout and stderr bytes and is told when
// each response is complete (the wait point). Descriptor implementations
// serve snaprun; in-memory ones serve snapgen, merge verification and the
// serving mode, which must not go through temporary files.
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace presnap::runtime {

class RequestSource {
  public:
    struct Chunk {
        uint64_t len = 0;          // bytes placed in the buffer
        bool ends_request = false; // a newline (or the end of input) ended the request
        bool eof = false;          // no bytes, and none will ever come
    };
    virtual ~RequestSource() = default;
    // Fills `dst` with the next bytes of the current request, at most
    // dst.size(); stops after a newline.
    virtual Result<Chunk> next(std::span<uint8_t> dst) = 0;
};

// What the sink learns about a request when its response is complete.
struct RequestInfo {
    uint64_t index = 0;          // 1-based, counted from the session's start
    uint64_t request_bytes = 0;  // bytes delivered, newline included
    uint64_t response_bytes = 0; // stdout bytes of the response
    double us = 0;               // delivery to wait point, wall time
    uint64_t exits = 0;          // VM exits during the request (1 = the wait point only)
    uint64_t host_faults = 0;    // minor page faults of the vCPU thread during the request
    // Tracing (runtime/trace.h): whether this request was traced, and the
    // segment numbers of the trace points it reached, in first-hit order.
    bool traced = false;
    std::vector<uint32_t> segments;
};

class ResponseSink {
  public:
    virtual ~ResponseSink() = default;
    // Guest output: fd 1 (the response) or 2 (diagnostics), in order.
    virtual Status write(int fd, std::span<const uint8_t> bytes) = 0;
    // The response of request `info.index` is complete. Index 0: the
    // program reached its first wait point; what it wrote before is start-up
    // output, not a response.
    virtual Status end_response(const RequestInfo& info) {
        (void)info;
        return {};
    }
    // The program stopped during request `info.index` (it exited, crashed,
    // timed out or broke a limit) before its wait point; `info` has the
    // figures so far. The run's outcome says why.
    virtual Status end_unfinished(const RequestInfo& info) {
        (void)info;
        return {};
    }
};

// Requests as lines read from a descriptor, in chunks, so that a long line
// never has to fit in host memory at once. The descriptor is borrowed.
class FdRequestSource final : public RequestSource {
  public:
    explicit FdRequestSource(int fd) : fd_(fd) {}
    Result<Chunk> next(std::span<uint8_t> dst) override;

  private:
    int fd_;
    uint8_t buf_[64 * 1024];
    size_t pos_ = 0, len_ = 0;
    bool eof_ = false;
};

// Requests from memory: a text of lines (the last may lack its newline).
class MemoryRequestSource final : public RequestSource {
  public:
    explicit MemoryRequestSource(std::string text) : text_(std::move(text)) {}
    // One line per request; a newline is added to each.
    static MemoryRequestSource of_lines(const std::vector<std::string>& lines);
    Result<Chunk> next(std::span<uint8_t> dst) override;

  private:
    std::string text_;
    size_t pos_ = 0;
};

// Output to descriptors (borrowed). Write errors are errors, with one
// exception: a closed stdout pipe (EPIPE) ends the output quietly, as it
// does for cat, and is reported by closed() so the caller can stop.
class FdResponseSink : public ResponseSink {
  public:
    FdResponseSink(int out_fd, int err_fd) : out_fd_(out_fd), err_fd_(err_fd) {}
    Status write(int fd, std::span<const uint8_t> bytes) override;
    bool closed() const { return closed_; }

  private:
    int out_fd_, err_fd_;
    bool closed_ = false;
};

// Output kept in memory: one string per response, stderr concatenated.
// `max_bytes` bounds what is kept in all (further bytes are an error).
class MemoryResponseSink final : public ResponseSink {
  public:
    explicit MemoryResponseSink(uint64_t max_bytes = 256ull << 20) : max_(max_bytes) {}
    Status write(int fd, std::span<const uint8_t> bytes) override;
    Status end_response(const RequestInfo& info) override;

    // Output before the first wait point; completed responses, in order;
    // what the program wrote after the last wait point (before it exited or
    // was stopped).
    const std::string& startup() const { return startup_; }
    const std::vector<std::string>& responses() const { return responses_; }
    const std::vector<RequestInfo>& requests() const { return infos_; }
    const std::string& pending() const { return current_; }
    const std::string& err() const { return err_; }
    // All stdout bytes in order, as a native run would print them.
    std::string all_stdout() const;

  private:
    uint64_t max_, kept_ = 0;
    std::vector<std::string> responses_;
    std::vector<RequestInfo> infos_;
    std::string startup_, current_, err_;
};

// Discards output (replays whose responses do not matter).
class NullResponseSink final : public ResponseSink {
  public:
    Status write(int, std::span<const uint8_t>) override { return {}; }
};

} // namespace presnap::runtime
