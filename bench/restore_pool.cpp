// Restore into a pooled VM, measured: for a library snapshot (or the base),
// N rounds of: wipe the used VM (Session::reset), restore the chain into it
// (snapshot::restore_into), optionally prefetch the recorded working set
// (MADV_POPULATE_WRITE), answer the snapshot's held-out request. Also times
// opening the chain's files (the reader's validation, page data checked as
// by default) and the checks of the saved monitor and vCPU state that every
// restore runs (validate_monitor_state, validate_vcpu_state). Prints one
// JSON object of medians. Used by bench/run; see docs/serving.md.
//
//   restore_pool LIB_DIR ID|base ROUNDS
#include "presnap/library/library.h"
#include "presnap/runtime/io.h"
#include "presnap/snapshot/monitor_state.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/vmm/vcpu_state.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <linux/kvm.h>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/mman.h>
#include <vector>

using namespace presnap;
using Clock = std::chrono::steady_clock;

static double us(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::micro>(b - a).count();
}
static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: restore_pool LIB_DIR ID|base ROUNDS\n");
        return 2;
    }
    auto lib = library::open_library(argv[1]);
    if (!lib) {
        std::fprintf(stderr, "restore_pool: error: %s\n", lib.error().describe().c_str());
        return 1;
    }
    std::string id = argv[2];
    std::vector<std::string> paths{lib->base_path};
    std::string request = lib->snapshots.empty() ? "" : lib->snapshots.front().held_out;
    if (id != "base") {
        const library::Entry* e = lib->find(id);
        if (!e) {
            std::fprintf(stderr, "restore_pool: error: no snapshot %s\n", id.c_str());
            return 1;
        }
        paths.push_back(e->path);
        request = e->held_out;
    }
    auto files = snapshot::open_chain(paths);
    if (!files) {
        std::fprintf(stderr, "restore_pool: error: %s\n", files.error().describe().c_str());
        return 1;
    }
    int rounds = std::max(1, std::atoi(argv[3]));
    std::vector<double> open_us;
    for (int i = 0; i < rounds; i++) {
        auto t0 = Clock::now();
        if (!snapshot::open_chain(paths))
            return 1;
        open_us.push_back(us(t0, Clock::now()));
    }
    auto links = snapshot::links_of(*files);
    std::vector<snapshot::PageRange> ws;
    for (const auto& f : *files)
        for (const auto& r : f.working_set())
            ws.push_back(r);
    auto session = runtime::Session::create(files->front().guest_memory_size(), {});
    if (!session) {
        std::fprintf(stderr, "restore_pool: error: %s\n", session.error().describe().c_str());
        return 1;
    }
    nlohmann::ordered_json out = {{"library", lib->dir}, {"snapshot", id}, {"rounds", rounds}};
    for (bool prefetch : {false, true}) {
        std::vector<double> reset_us, restore_us, prefetch_us, request_us, faults;
        uint64_t pages = 0;
        for (int i = 0; i < rounds; i++) {
            auto t0 = Clock::now();
            if (!(*session)->reset())
                return 1;
            auto t1 = Clock::now();
            if (auto s = snapshot::restore_into(**session, links, {}); !s) {
                std::fprintf(stderr, "restore_pool: error: %s\n", s.error().describe().c_str());
                return 1;
            }
            auto t2 = Clock::now();
            pages = 0;
            if (prefetch)
                for (const auto& r : ws) {
                    auto span = (*session)->memory().span(r.first_page * 4096, r.page_count * 4096);
                    if (span && madvise(span->data(), span->size(), MADV_POPULATE_WRITE) == 0)
                        pages += r.page_count;
                }
            auto t3 = Clock::now();
            auto src = runtime::MemoryRequestSource::of_lines({request});
            runtime::MemoryResponseSink sink;
            auto o = (*session)->run(src, sink, runtime::AtEof::kStop);
            if (!o || o->kind != runtime::RunOutcome::Kind::kWaiting || sink.requests().empty()) {
                std::fprintf(stderr, "restore_pool: error: the request failed\n");
                return 1;
            }
            reset_us.push_back(us(t0, t1));
            restore_us.push_back(us(t1, t2));
            prefetch_us.push_back(us(t2, t3));
            request_us.push_back(sink.requests().back().us);
            faults.push_back(double(sink.requests().back().host_faults));
        }
        out[prefetch ? "prefetch" : "lazy"] = {
            {"reset_us", median(reset_us)},       {"restore_us", median(restore_us)},
            {"prefetch_us", median(prefetch_us)}, {"prefetched_pages", pages},
            {"request_us", median(request_us)},   {"request_faults", median(faults)}};
    }
    // The state checks of one restore, timed alone (the memory is the last
    // restore's, where the guest kernel header is read from).
    const snapshot::SnapshotFile& top = files->back();
    auto ms = snapshot::decode_monitor_state(top.monitor_state());
    auto kh = (*session)->memory().read_obj<psn_kernel_header>(PSN_KERNEL_BASE);
    const snapshot::VcpuState vcpu = top.vcpu_state();
    // XCR0 expected: the one the snapshot saved (a restore compares it with
    // this host's; the comparison costs the same).
    kvm_xcrs xcrs{};
    std::memcpy(&xcrs, vcpu.xcrs.data(), std::min(sizeof xcrs, vcpu.xcrs.size()));
    if (!ms || !kh)
        return 1;
    std::vector<double> checks_us;
    for (int i = 0; i < 1000; i++) {
        auto t0 = Clock::now();
        auto layout = runtime::validate_monitor_state(*ms, *kh);
        if (!layout ||
            !vmm::validate_vcpu_state(vcpu, {*layout, kh->syscall_entry, xcrs.xcrs[0].value})) {
            std::fprintf(stderr, "restore_pool: error: the saved state fails its checks\n");
            return 1;
        }
        checks_us.push_back(us(t0, Clock::now()));
    }
    out["open_us"] = median(open_us);
    out["state_checks_us"] = median(checks_us);
    std::printf("%s\n", out.dump().c_str());
    return 0;
}
