#include "presnap/snapshot/edit.h"

#include "presnap/snapshot/reader.h"

#include <span>

namespace presnap::snapshot {

Status replace_working_set(const std::string& path, const std::vector<PageRange>& working_set,
                           const WriteOptions& options) {
    auto f = SnapshotFile::open(path, OpenOptions{DataCheck::kFull});
    if (!f)
        return std::unexpected(f.error());
    SnapshotImage img;
    img.kind = f->kind();
    img.flags = f->flags();
    img.guest_memory_size = f->guest_memory_size();
    img.vcpu = f->vcpu_state();
    auto ms = f->monitor_state();
    img.monitor_state.assign(ms.begin(), ms.end());
    img.cpu_features = f->cpu_features();
    img.parent = f->parent();
    img.executable = f->executable();
    img.metadata_json = std::string(f->metadata_json());
    img.working_set = working_set;
    // Page data: raw runs borrowed from the open file, others decoded into
    // buffers that live until the write returns.
    std::vector<std::vector<uint8_t>> decoded;
    decoded.reserve(f->page_runs().size());
    for (const auto& run : f->page_runs()) {
        MemoryRun m;
        m.first_page = run.first_page;
        m.page_count = run.page_count;
        if (run.encoding == PageEncoding::kZero) {
            m.zero = true;
        } else if (run.raw()) {
            m.data = f->stored_bytes(run);
        } else {
            decoded.emplace_back(run.bytes());
            if (auto s = f->read_run(run, decoded.back()); !s)
                return s;
            m.data = decoded.back();
        }
        img.memory.push_back(m);
    }
    auto w = write_snapshot(path, img, options);
    if (!w)
        return std::unexpected(w.error());
    return {};
}

} // namespace presnap::snapshot
