// Traced requests as history lines (presnap/runtime/history_recorder.h).
#include "presnap/runtime/history_recorder.h"

#include "presnap/analysis/hash.h"
#include "presnap/snapshot/image.h"

#include <cerrno>
#include <fstream>
#include <sstream>

#include <algorithm>

namespace presnap::runtime {

namespace {

// Response bytes kept to compare with the error prefix (at least).
constexpr size_t kResponseHead = 64;

} // namespace

HistoryRecorder::HistoryRecorder(RequestSource& in, ResponseSink& out,
                                 HistoryRecorderOptions options,
                                 std::function<Status(const std::string&)> emit)
    : opt_(std::move(options)), emit_(std::move(emit)), source_(in), sink_(*this, out) {}

Result<TracePlan> plan_trace(const std::string& map_path, const std::string& executable, bool all) {
    std::ifstream in(map_path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in)
        return std::unexpected(make_errno_error(Errc::kIo, errno, "cannot read the map")
                                   .error()
                                   .with_context(map_path));
    auto map = analysis::parse_pmap_text(text.str(), map_path);
    if (!map)
        return std::unexpected(map.error());
    TracePlan plan;
    plan.map = std::move(*map);
    auto points = trace_points(plan.map, executable, all);
    if (!points)
        return std::unexpected(Error{points.error().code,
                                     points.error().describe() +
                                         " (the map must come from pea-analyze --elf of this "
                                         "executable)",
                                     map_path});
    plan.points = std::move(*points);
    analysis::HistoryHeader h;
    h.program = executable.substr(executable.find_last_of('/') + 1);
    if (auto hx = snapshot::hash_executable(executable))
        h.program_hash = hx->content_hash.hex();
    plan.preamble = HistoryRecorder::preamble(h, plan.map, plan.points);
    return plan;
}

std::string HistoryRecorder::preamble(const analysis::HistoryHeader& header,
                                      const analysis::ProbabilityMap& map,
                                      std::span<const TracePoint> points) {
    std::string out = analysis::format_history_header(header);
    std::vector<uint8_t> declared(map.segments.size());
    for (const auto& p : points) {
        if (p.segment >= map.segments.size() || std::exchange(declared[p.segment], uint8_t(1)))
            continue;
        const auto& s = map.segments[p.segment];
        out += analysis::format_history_segment({s.id, s.sid, s.name});
    }
    return out;
}

Result<RequestSource::Chunk> HistoryRecorder::Source::next(std::span<uint8_t> dst) {
    auto c = in_.next(dst);
    if (!c || c->len == 0)
        return c;
    if (!in_request_) {
        hash_ = analysis::kFnvOffset;
        len_ = 0;
        head_.clear();
        held_newline_ = false;
    }
    std::string_view bytes(reinterpret_cast<const char*>(dst.data()), c->len);
    // A record's request is the line without its newline: a newline is held
    // back until more bytes show it was not the last.
    if (held_newline_)
        add("\n");
    held_newline_ = c->ends_request && bytes.back() == '\n';
    add(held_newline_ ? bytes.substr(0, bytes.size() - 1) : bytes);
    in_request_ = !c->ends_request;
    return c;
}

void HistoryRecorder::Source::add(std::string_view b) {
    hash_ = analysis::fnv1a64(b, hash_);
    len_ += b.size();
    if (head_.size() < analysis::kHistoryDefaultMaxBytes)
        head_.append(b.substr(0, analysis::kHistoryDefaultMaxBytes - head_.size()));
}

analysis::HistoryRequest HistoryRecorder::Source::record() const {
    analysis::HistoryRequest r;
    r.hash = hash_;
    r.length = len_;
    r.bytes = head_;
    return r;
}

Status HistoryRecorder::Sink::write(int fd, std::span<const uint8_t> bytes) {
    if (fd == 2)
        wrote_stderr_ = true;
    else if (size_t keep = std::max(kResponseHead, r_.opt_.error_prefix.size());
             head_.size() < keep)
        head_.append(reinterpret_cast<const char*>(bytes.data()),
                     std::min(bytes.size(), keep - head_.size()));
    return out_.write(fd, bytes);
}

Status HistoryRecorder::Sink::end_response(const RequestInfo& info) {
    if (auto s = out_.end_response(info); !s)
        return s;
    return end(info, true);
}

Status HistoryRecorder::Sink::end_unfinished(const RequestInfo& info) {
    if (auto s = out_.end_unfinished(info); !s)
        return s;
    return end(info, false);
}

Status HistoryRecorder::Sink::end(const RequestInfo& info, bool finished) {
    bool wrote_stderr = std::exchange(wrote_stderr_, false);
    std::string head = std::exchange(head_, {});
    if (info.index == 0 || !info.traced) // start-up output, or not sampled
        return {};
    const auto& p = r_.opt_.error_prefix;
    analysis::HistoryRequest rec = r_.source_.record();
    rec.seq = r_.seq_++;
    for (uint32_t i : info.segments)
        if (r_.opt_.map && i < r_.opt_.map->segments.size())
            rec.segments.push_back(r_.opt_.map->segments[i].id);
    rec.latency_us = info.us;
    rec.snapshot = r_.opt_.snapshot;
    rec.index = info.index;
    rec.response_len = info.response_bytes;
    rec.failed = !finished || wrote_stderr || (!p.empty() && head.starts_with(p));
    return r_.emit_(analysis::format_history_request(std::move(rec)));
}

} // namespace presnap::runtime
