// Replay: requests on a fresh restore, for the working set and timings of
// what a snapshot's later requests do (snapgen), and for verification.
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/vmm/x86_64.h"

namespace presnap::snapshot {

Result<ReplayResult> replay(std::span<const SnapshotFile* const> chain,
                            const std::vector<std::string>& requests,
                            const runtime::SessionOptions& options) {
    RestoreOptions ro;
    ro.session = options;
    ro.record_working_set = true;
    auto session = restore(chain, ro);
    if (!session)
        return std::unexpected(session.error());
    auto in = runtime::MemoryRequestSource::of_lines(requests);
    runtime::MemoryResponseSink out;
    auto o = (*session)->run(in, out, runtime::AtEof::kStop);
    if (!o)
        return std::unexpected(o.error());
    ReplayResult r;
    r.outcome = *o;
    r.responses = out.responses();
    r.requests = out.requests();
    r.stats = (*session)->stats();
    if (o->kind == runtime::RunOutcome::Kind::kWaiting) {
        auto touched = vmm::accessed_pages((*session)->memory(), (*session)->layout(), false);
        if (!touched)
            return std::unexpected(touched.error());
        r.touched = std::move(*touched);
    }
    return r;
}

} // namespace presnap::snapshot
