// Traced requests as execution history (docs/formats/history.md): what
// `snaprun --trace` writes, and what a serving instance or snapgen can write
// the same way. A HistoryRecorder sits between a Session and its request
// source and response sink: it hashes each request and keeps its first bytes
// as it goes to the guest, watches each response (size, standard error, its
// first bytes), and when a traced request ends (its wait point, or the run
// stopping during it) hands that request's history line to `emit`. Memory
// stays bounded whatever the number of requests.
#pragma once

#include "presnap/analysis/history.h"
#include "presnap/analysis/pmap.h"
#include "presnap/runtime/io.h"
#include "presnap/runtime/trace.h"

#include <functional>
#include <span>
#include <string>

namespace presnap::runtime {

// What a traced run needs before it starts: the probability map read from
// `map_path`, its trace points in `executable` (the one booted, or the one a
// snapshot was made from) and the history's first lines.
struct TracePlan {
    analysis::ProbabilityMap map;
    std::vector<TracePoint> points;
    std::string preamble;
};
Result<TracePlan> plan_trace(const std::string& map_path, const std::string& executable, bool all);

struct HistoryRecorderOptions {
    // The map the trace points came from: RequestInfo::segments index it.
    const analysis::ProbabilityMap* map = nullptr;
    std::string snapshot; // which snapshot serves ("" for a cold boot)
    // A response starting with this counts as failed ("" for no such check).
    std::string error_prefix = "error";
};

class HistoryRecorder {
  public:
    // `in` and `out` are borrowed; `emit` gets each record's line, newline
    // included, and its error ends the run (Session::run returns it).
    HistoryRecorder(RequestSource& in, ResponseSink& out, HistoryRecorderOptions options,
                    std::function<Status(const std::string&)> emit);

    // Give these to Session::run() instead of `in` and `out`.
    RequestSource& source() { return source_; }
    ResponseSink& sink() { return sink_; }

    // The lines a history starts with: the header, then a declaration of
    // every segment `points` traces (a declared segment missing from a
    // request's list did not run in it).
    static std::string preamble(const analysis::HistoryHeader& header,
                                const analysis::ProbabilityMap& map,
                                std::span<const TracePoint> points);

  private:
    class Source final : public RequestSource {
      public:
        explicit Source(RequestSource& in) : in_(in) {}
        Result<Chunk> next(std::span<uint8_t> dst) override;
        analysis::HistoryRequest record() const;

      private:
        void add(std::string_view bytes);
        RequestSource& in_;
        bool in_request_ = false, held_newline_ = false;
        uint64_t hash_ = 0, len_ = 0;
        std::string head_;
    };
    class Sink final : public ResponseSink {
      public:
        Sink(HistoryRecorder& r, ResponseSink& out) : r_(r), out_(out) {}
        Status write(int fd, std::span<const uint8_t> bytes) override;
        Status end_response(const RequestInfo& info) override;
        Status end_unfinished(const RequestInfo& info) override;

      private:
        Status end(const RequestInfo& info, bool finished);
        HistoryRecorder& r_;
        ResponseSink& out_;
        bool wrote_stderr_ = false;
        std::string head_; // the response's first bytes
    };

    HistoryRecorderOptions opt_;
    std::function<Status(const std::string&)> emit_;
    Source source_;
    Sink sink_;
    uint64_t seq_ = 0;
};

} // namespace presnap::runtime
