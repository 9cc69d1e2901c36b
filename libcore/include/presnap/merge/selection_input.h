// Reading selections (docs/formats/selection.md) for snapmerge: the text
// form ("presnap-selection 1", then "select ID..." lines) or the JSON-lines
// form (a {"format":"presnap-selection","version":1} header, then
// {"type":"selection","snapshots":[...]} lines). Untrusted input: sizes are
// bounded, ids are checked against the library later (resolve_ids).
#pragma once

#include "presnap/error.h"

#include <string>
#include <string_view>
#include <vector>

namespace presnap::merge {

inline constexpr size_t kMaxSelectionIds = 4096;

// Every selection of `text`, in order (one per request line). Errors name
// the line.
Result<std::vector<std::vector<std::string>>> parse_selections(std::string_view text);

} // namespace presnap::merge
