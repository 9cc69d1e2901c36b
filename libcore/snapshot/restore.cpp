// Restore: a chain of snapshots into a new Session. Memory first (each
// link's runs over the ones before), then the monitor and vCPU state, which
// the Session checks against the memory it now has.
#include "presnap/snapshot/cpu_features.h"
#include "presnap/snapshot/monitor_state.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/vmm/x86_64.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sys/mman.h>

namespace presnap::snapshot {
namespace {

// Raw and zero runs are mapped (copy-on-write from the file, or fresh zero
// pages), never copied, up to kMaxMappedRuns mappings per restore; past
// that, runs are copied. A mapping costs a VMA, and each one also splits the
// anonymous guest memory around it, while vm.max_map_count is 65,530 per
// process: without the cap a snapshot of scattered pages could be written
// but not restored.
constexpr uint64_t kMaxMappedRuns = 16384;

Status load_memory(runtime::Session& session, const SnapshotFile& f, uint64_t& mapped_runs) {
    vmm::GuestMemory& mem = session.memory();
    for (const auto& run : f.page_runs()) {
        uint64_t gpa = run.first_page * kPageSize;
        auto dst = mem.span(gpa, run.bytes());
        if (!dst)
            return std::unexpected(dst.error().with_context(f.path()));
        bool map = mapped_runs < kMaxMappedRuns;
        // Raw pages, in the file or in its page store: mapped from there.
        if (run.raw() && f.run_fd(run) >= 0 && map) {
            void* p = mmap(dst->data(), run.bytes(), PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_FIXED, f.run_fd(run), off_t(run.file_offset));
            if (p == MAP_FAILED)
                return std::unexpected(make_errno_error(Errc::kIo, errno, "mmap of snapshot pages")
                                           .error()
                                           .with_context(run.encoding == PageEncoding::kStore
                                                             ? f.page_store()->path
                                                             : f.path()));
            mapped_runs++;
        } else if (run.encoding == PageEncoding::kZero && map) {
            void* p = mmap(dst->data(), run.bytes(), PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED)
                return make_errno_error(Errc::kIo, errno, "mmap of zero pages");
            mapped_runs++;
        } else if (auto s = f.read_run(run, *dst); !s) {
            return std::unexpected(s.error().with_context(f.path()));
        }
    }
    return {};
}

} // namespace

std::vector<PageRange> to_ranges(std::span<const uint64_t> pages) {
    std::vector<PageRange> out;
    for (uint64_t p : pages) {
        if (!out.empty() && out.back().first_page + out.back().page_count == p)
            out.back().page_count++;
        else
            out.push_back({p, 1});
    }
    return out;
}

Result<std::string> recorded_executable(const SnapshotFile& f) {
    const auto& info = f.executable();
    if (!info)
        return make_error(Errc::kInvalidArgument, "{}: records no executable", f.path());
    auto now = hash_executable(info->path);
    if (!now || now->content_hash != info->content_hash)
        return make_error(Errc::kInvalidArgument,
                          "{}: the executable it was made from is not at {} any more (expected "
                          "content hash {})",
                          f.path(), info->path, info->content_hash.hex());
    return info->path;
}

std::vector<const SnapshotFile*> links_of(const std::vector<SnapshotFile>& files) {
    std::vector<const SnapshotFile*> links;
    for (const auto& f : files)
        links.push_back(&f);
    return links;
}

Status check_chain(std::span<const SnapshotFile* const> chain) {
    if (chain.empty())
        return make_error(Errc::kInvalidArgument, "no snapshot to restore");
    CpuFeatures host = host_cpu_features();
    for (size_t i = 0; i < chain.size(); i++) {
        const SnapshotFile& f = *chain[i];
        bool want_full = i == 0;
        if ((f.kind() == SnapshotKind::kFull) != want_full)
            return make_error(Errc::kInvalidArgument, "{}: is a {} snapshot (expected a {} one{})",
                              f.path(), want_full ? "diff" : "full", want_full ? "full" : "diff",
                              want_full ? " first" : " after the first");
        if (!want_full)
            if (auto s = f.verify_parent(*chain[i - 1]); !s)
                return std::unexpected(s.error().with_context(f.path()));
        if (auto s = f.check_host(host); !s)
            return std::unexpected(s.error().with_context(f.path()));
    }
    return {};
}

Result<std::vector<SnapshotFile>> open_chain(const std::vector<std::string>& paths,
                                             DataCheck data_check) {
    std::vector<SnapshotFile> files;
    for (const auto& p : paths) {
        OpenOptions oo;
        oo.data_check = data_check;
        auto f = SnapshotFile::open(p, oo);
        if (!f)
            return std::unexpected(f.error());
        files.push_back(std::move(*f));
    }
    return files;
}

namespace {

// The monitor state of the chain's last link, checked against the chain.
Result<MonitorState> chain_state(std::span<const SnapshotFile* const> chain) {
    if (auto s = check_chain(chain); !s)
        return std::unexpected(s.error());
    const SnapshotFile& last = *chain.back();
    auto ms = decode_monitor_state(last.monitor_state());
    if (!ms)
        return std::unexpected(ms.error().with_context(last.path()));
    if (ms->mem_size != last.guest_memory_size())
        return make_error(Errc::kFormat, "{}: monitor state says {} bytes of memory, the header {}",
                          last.path(), ms->mem_size, last.guest_memory_size());
    for (const SnapshotFile* f : chain)
        if (f->guest_memory_size() != ms->mem_size)
            return make_error(Errc::kFormat, "{}: has {} bytes of memory, the chain {}", f->path(),
                              f->guest_memory_size(), ms->mem_size);
    return ms;
}

// Memory, state and working set of `chain` into a Session fresh from
// create() or reset().
Status load(runtime::Session& s, std::span<const SnapshotFile* const> chain, const MonitorState& ms,
            const RestoreOptions& options) {
    const SnapshotFile& last = *chain.back();
    uint64_t mapped_runs = 0;
    std::vector<uint64_t> ws_pages;
    for (const SnapshotFile* f : chain) {
        if (auto st = load_memory(s, *f, mapped_runs); !st)
            return st;
        if (options.prefetch)
            for (const auto& r : f->working_set())
                for (uint64_t p = 0; p < r.page_count; p++)
                    ws_pages.push_back(r.first_page + p);
    }
    if (auto st = s.resume(ms, last.vcpu_state()); !st)
        return std::unexpected(st.error().with_context(last.path()));
    s.executable = last.executable();
    s.parent = last.content_hash();

    // Working set: accessed bits cleared (a new one will be recorded), or
    // the recorded one prefetched in bulk.
    if (options.record_working_set)
        if (auto a = vmm::accessed_pages(s.memory(), s.layout(), true); !a)
            return std::unexpected(a.error());
    if (options.prefetch) {
        std::sort(ws_pages.begin(), ws_pages.end());
        ws_pages.erase(std::unique(ws_pages.begin(), ws_pages.end()), ws_pages.end());
        uint64_t prefetched = 0;
        for (const auto& r : to_ranges(ws_pages)) {
            auto span =
                s.memory().span(r.first_page * vmm::kPageSize, r.page_count * vmm::kPageSize);
            if (!span)
                return std::unexpected(span.error().with_context(last.path()));
            // Copies each page into this process's memory now, in bulk, so the
            // guest does not fault on it one page at a time.
            if (madvise(span->data(), span->size(), MADV_POPULATE_WRITE) != 0)
                return make_errno_error(Errc::kIo, errno, "madvise(MADV_POPULATE_WRITE)");
            prefetched += r.page_count;
        }
        s.stats().prefetched_pages = prefetched;
    }
    return {};
}

double us_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

Result<std::unique_ptr<runtime::Session>> restore(std::span<const SnapshotFile* const> chain,
                                                  const RestoreOptions& options) {
    auto t0 = std::chrono::steady_clock::now();
    auto ms = chain_state(chain);
    if (!ms)
        return std::unexpected(ms.error());
    auto session = runtime::Session::create(ms->mem_size, options.session);
    if (!session)
        return std::unexpected(session.error());
    if (auto s = load(**session, chain, *ms, options); !s)
        return std::unexpected(s.error());
    (*session)->stats().restore_us = us_since(t0);
    return std::move(*session);
}

Status restore_into(runtime::Session& session, std::span<const SnapshotFile* const> chain,
                    const RestoreOptions& options) {
    auto t0 = std::chrono::steady_clock::now();
    auto ms = chain_state(chain);
    if (!ms)
        return std::unexpected(ms.error());
    if (ms->mem_size != session.memory_size())
        return make_error(Errc::kInvalidArgument,
                          "{}: needs {} bytes of guest memory, the pooled session has {}",
                          chain.back()->path(), ms->mem_size, session.memory_size());
    if (auto s = session.reset(); !s)
        return s;
    if (auto s = load(session, chain, *ms, options); !s)
        return s;
    session.stats().restore_us = us_since(t0);
    return {};
}

} // namespace presnap::snapshot
