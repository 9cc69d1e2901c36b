// Inside the serving mode: what chooser.cpp, predicted.cpp and server.cpp
// share.
#pragma once

#include "presnap/library/library.h"
#include "presnap/serve/server.h"
#include "presnap/snapshot/reader.h"

#include <memory>
#include <span>
#include <string>
#include <vector>

namespace presnap::serve::detail {

// A composite ready to restore: its chain, base first, owned.
struct Composite {
    std::string key; // the chosen ids joined by spaces, "all" for warm-all, "" for the base
    std::vector<std::string> ids;
    std::vector<snapshot::SnapshotFile> files;
    std::vector<const snapshot::SnapshotFile*> links;
    double build_us = 0;
};

// predicted.cpp: the library's model (select/) as a Chooser, and a
// composite of several library snapshots (merge/).
Result<std::unique_ptr<Chooser>> make_predicted_chooser(const library::Library& lib);
Result<std::vector<snapshot::SnapshotFile>> merged_chain(const library::Library& lib,
                                                         std::span<const std::string> ids,
                                                         const runtime::SessionOptions& session);

} // namespace presnap::serve::detail
