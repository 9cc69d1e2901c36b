// Human- and machine-readable descriptions of a validated snapshot: what
// snapinfo prints. Kept in the library so that every tool describes a
// snapshot the same way and the JSON shape is versioned with the format.
#pragma once

#include <string>
#include <string_view>

#include "presnap/snapshot/reader.h"

namespace presnap::snapshot {

struct DescribeOptions {
    bool list_runs = false; // one line (or JSON object) per page run
};

// Multi-line text, ending in a newline.
std::string describe_text(const SnapshotFile& file, const DescribeOptions& options = {});

// One JSON object (no trailing newline). The metadata section is embedded as
// JSON. Keys are documented in man/snapinfo.1.
std::string describe_json(const SnapshotFile& file, const DescribeOptions& options = {});

// `text` as a JSON string literal, quotes included.
std::string json_quote(std::string_view text);

// Whether `text` is one well-formed JSON value (RFC 8259), nesting at most
// 64 deep. On failure `error_offset` is the byte where it went wrong.
bool is_valid_json(std::string_view text, std::size_t* error_offset = nullptr);

} // namespace presnap::snapshot
