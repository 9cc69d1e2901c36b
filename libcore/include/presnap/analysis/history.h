// Execution history (docs/formats/history.md, presnap-history(5)): JSON lines
// that `snaprun --trace` writes, one record per request, and that pea-analyze
// and snapselect learn from. LLVM-free (target presnap_pmap): a writer needs
// only the three format_* functions below and a file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "presnap/error.h"

namespace presnap::analysis {

inline constexpr int kHistoryVersion = 1;
// Writers should truncate stored request bytes to this many (the hash always
// covers the whole request).
inline constexpr size_t kHistoryDefaultMaxBytes = 256;
// The longest `user` a reader accepts.
inline constexpr size_t kHistoryMaxUserBytes = 256;

struct HistoryHeader {
    int version = kHistoryVersion;
    std::string program;      // free text, usually the executable's name
    std::string program_hash; // optional, e.g. xxh64 of the executable, "" if unknown
};

// Declares a segment a later request refers to: lets a reader that analyses a
// different program match the segment by its structural id.
struct HistorySegment {
    uint64_t id = 0;
    uint64_t sid = 0;
    std::string name;
};

struct HistoryRequest {
    uint64_t seq = 0;               // 0-based position in the trace
    uint64_t hash = 0;              // request_hash() of the full request
    uint64_t length = 0;            // full request length in bytes
    std::string bytes;              // possibly truncated request bytes
    bool truncated = false;         // bytes.size() < length
    std::vector<uint64_t> segments; // segment ids in first-hit order, no repeats
    double latency_us = 0;
    std::string snapshot; // which snapshot served it ("" = cold boot)
    // Optional keys (history.md, "Outcome keys"): written when the writer knows.
    std::optional<uint64_t> index;        // 1-based request number since the cold boot
    std::optional<uint64_t> response_len; // stdout bytes of its response
    std::optional<bool> failed;           // no wait point, stderr output, or an error response
    std::string user; // optional: who sent it ("" = not recorded); snapselect's per-user models
};

std::string format_history_header(const HistoryHeader& h);   // one line, with '\n'
std::string format_history_segment(const HistorySegment& s); // one line, with '\n'
// Truncates `r.bytes` to max_bytes (setting truncated) before writing.
std::string format_history_request(HistoryRequest r, size_t max_bytes = kHistoryDefaultMaxBytes);

struct History {
    HistoryHeader header;
    std::vector<HistorySegment> segments;
    std::vector<HistoryRequest> requests;
    size_t skipped = 0;          // malformed lines skipped (non-strict)
    std::vector<Error> problems; // the skipped lines' errors, in order
};

// Parses a whole history file. `name` is the file name for error contexts
// ("FILE:LINE"). strict: the first malformed line is an error; otherwise
// malformed lines are skipped and counted. A missing or wrong header is
// always an error.
Result<History> parse_history(std::string_view text, std::string_view name, bool strict);

} // namespace presnap::analysis
