// Opening snapshot files the way every tool does: "-" is standard input, a
// pipe or FIFO path (`<(cat x.snap)`) is read into memory by the reader, a
// regular file is mapped.
#pragma once

#include "presnap/snapshot/reader.h"
#include "presnap/snapshot/session_snapshots.h"

#include <string>
#include <vector>

namespace presnap::tools {

inline Result<snapshot::SnapshotFile> open_snapshot(const std::string& path,
                                                    const snapshot::OpenOptions& options = {}) {
    if (path != "-")
        return snapshot::SnapshotFile::open(path, options);
    auto f = snapshot::SnapshotFile::open("/dev/stdin", options);
    if (!f) {
        Error e = f.error();
        e.context = "-";
        return std::unexpected(e);
    }
    return f;
}

// snapshot::open_chain, with "-" for standard input.
inline Result<std::vector<snapshot::SnapshotFile>>
open_snapshot_chain(const std::vector<std::string>& paths,
                    snapshot::DataCheck data_check = snapshot::DataCheck::kSection) {
    std::vector<snapshot::SnapshotFile> files;
    for (const auto& p : paths) {
        snapshot::OpenOptions oo;
        oo.data_check = data_check;
        auto f = open_snapshot(p, oo);
        if (!f)
            return std::unexpected(f.error());
        files.push_back(std::move(*f));
    }
    return files;
}

} // namespace presnap::tools
