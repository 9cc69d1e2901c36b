// Editing snapshot files in place: the file is read, changed in memory and
// written back atomically (write_snapshot's temporary-and-rename).
#pragma once

#include "presnap/error.h"
#include "presnap/snapshot/image.h"

#include <string>
#include <vector>

namespace presnap::snapshot {

// Replaces the WORKING_SET of the snapshot at `path` (everything else is kept,
// page data re-encoded as `options` says). The file's content hash changes:
// make diffs over it afterwards, not before.
Status replace_working_set(const std::string& path, const std::vector<PageRange>& working_set,
                           const WriteOptions& options);

} // namespace presnap::snapshot
