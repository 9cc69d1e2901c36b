#include "presnap/library/build.h"
#include "presnap/library/scoped.h"

#include "../format/json.h"
#include "presnap/analysis/hash.h"
#include "presnap/analysis/pmap.h"
#include "presnap/runtime/history_recorder.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/version.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <optional>
#include <sys/file.h>
#include <thread>
#include <unistd.h>

namespace presnap::library {
namespace {

namespace fs = std::filesystem;
using Kind = runtime::RunOutcome::Kind;

double median(std::vector<double> v) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// One sample request, traced from the base.
struct Sample {
    std::string request;
    bool failed = false;
    double us = 0;
    std::vector<uint32_t> warm; // warmable segments it ran, sorted
};

// Runs `request` alone on `session` (restored from `chain` first) and
// reports its response, latency and trace.
struct Served {
    bool ok = false; // reached its wait point, no stderr, not an error response
    double us = 0;
    std::string response;
    std::vector<uint32_t> segments;
};
Result<Served> serve_one(runtime::Session& session,
                         std::span<const snapshot::SnapshotFile* const> chain,
                         const std::string& request, const std::string& error_prefix) {
    if (auto s = snapshot::restore_into(session, chain, {}); !s)
        return std::unexpected(s.error());
    auto in = runtime::MemoryRequestSource::of_lines({request});
    runtime::MemoryResponseSink out;
    auto o = session.run(in, out, runtime::AtEof::kStop);
    if (!o)
        return std::unexpected(o.error());
    Served r;
    if (o->kind == Kind::kWaiting && out.requests().size() == 1) {
        const auto& info = out.requests()[0];
        r.us = info.us;
        r.segments = info.segments;
        r.response = out.responses()[0];
        r.ok =
            out.err().empty() && (error_prefix.empty() || r.response.rfind(error_prefix, 0) != 0);
    }
    return r;
}

// Runs fn(i, worker) for every i in [0, n) on `jobs` threads (worker in
// [0, jobs)); the first error stops the others and is returned.
Status parallel_for(size_t n, int jobs, const std::function<Status(size_t, int)>& fn) {
    std::atomic<size_t> next{0};
    std::mutex mu;
    std::optional<Error> first_error;
    auto work = [&](int w) {
        for (;;) {
            {
                std::lock_guard lock(mu);
                if (first_error)
                    return;
            }
            size_t i = next++;
            if (i >= n)
                return;
            if (auto s = fn(i, w); !s) {
                std::lock_guard lock(mu);
                if (!first_error)
                    first_error = s.error();
                return;
            }
        }
    };
    std::vector<std::thread> threads;
    for (int w = 1; w < jobs; w++)
        threads.emplace_back(work, w);
    work(0);
    for (auto& t : threads)
        t.join();
    if (first_error)
        return std::unexpected(*first_error);
    return {};
}

std::string hex(uint64_t v) {
    return fmt::format("{:016x}", v);
}

// Builds the library directory's files in `tmp`.
Result<BuildReport> build_into(const BuildOptions& o, const fs::path& tmp) {
    auto say = [&](const std::string& m) {
        if (o.progress)
            o.progress(m);
    };
    auto plan = runtime::plan_trace(o.map_path, o.program.program, false);
    if (!plan)
        return std::unexpected(plan.error());
    const auto& segs = plan->map.segments;
    // The map travels with the library: snapselect's static priors and route
    // tokens come from it.
    {
        std::error_code ec;
        fs::copy_file(o.map_path, tmp / "map.pmap", fs::copy_options::overwrite_existing, ec);
        if (ec)
            return make_error(Errc::kIo, "cannot copy {} into the library: {}", o.map_path,
                              ec.message());
    }

    // The base snapshot.
    runtime::SessionOptions sopt = o.session;
    auto booted = snapshot::boot_for_capture(o.program, sopt);
    if (!booted)
        return std::unexpected(booted.error());
    auto warm_in = runtime::MemoryRequestSource::of_lines(o.warmup);
    runtime::NullResponseSink discard;
    auto wo = (*booted)->run(warm_in, discard, runtime::AtEof::kStop);
    if (!wo)
        return std::unexpected(wo.error());
    if (wo->kind != Kind::kWaiting)
        return make_error(Errc::kGuest,
                          "the program did not reach a wait point for the base "
                          "snapshot: {}",
                          wo->message.empty() ? "it exited" : wo->message);
    std::string base_path = (tmp / "base.snap").string();
    auto base_sum = snapshot::capture_to_file(**booted, base_path);
    if (!base_sum)
        return std::unexpected(base_sum.error());
    booted->reset();
    auto base = snapshot::SnapshotFile::open(base_path);
    if (!base)
        return std::unexpected(base.error());
    std::error_code ec;
    BuildReport report;
    report.base_bytes = base_sum->file_size;
    say(fmt::format("base snapshot: {} bytes", base_sum->file_size));

    // Trace every sample from the base, each in a fresh restore of a pooled
    // Session, one per job.
    const snapshot::SnapshotFile* base_chain[] = {&*base};
    runtime::SessionOptions topt = o.session;
    topt.trace = {plan->points, 1};
    topt.warn = nullptr;
    int jobs = std::max(1, o.jobs);
    std::vector<std::unique_ptr<runtime::Session>> tracers(static_cast<size_t>(jobs));
    std::vector<Sample> samples(o.requests.size());
    auto traced = parallel_for(o.requests.size(), jobs, [&](size_t i, int w) -> Status {
        auto& session = tracers[size_t(w)];
        if (!session) {
            auto s = snapshot::restore(base_chain, {topt});
            if (!s)
                return std::unexpected(s.error());
            session = std::move(*s);
        }
        auto r = serve_one(*session, base_chain, o.requests[i], o.error_prefix);
        if (!r)
            return std::unexpected(r.error());
        Sample& s = samples[i];
        s.request = o.requests[i];
        s.failed = !r->ok;
        s.us = r->us;
        for (uint32_t seg : r->segments)
            if (seg < segs.size() && segs[seg].warmable)
                s.warm.push_back(seg);
        std::sort(s.warm.begin(), s.warm.end());
        return {};
    });
    if (!traced)
        return std::unexpected(traced.error());
    tracers.clear();
    for (const auto& s : samples) {
        report.requests_traced++;
        report.requests_failed += s.failed;
    }
    say(fmt::format("traced {} requests from the base ({} failed)", samples.size(),
                    report.requests_failed));

    // Routes: requests that ran the same warmable segments without error.
    std::map<std::vector<uint32_t>, std::vector<const Sample*>> routes;
    for (const auto& s : samples)
        if (!s.failed && !s.warm.empty())
            routes[s.warm].push_back(&s);
    struct Route {
        std::vector<uint32_t> warm;
        std::vector<const Sample*> samples; // cheapest first
        double weight = 0, cost = 0;
    };
    std::vector<Route> ranked;
    for (auto& [warm, list] : routes) {
        Route r{warm, list};
        std::sort(r.samples.begin(), r.samples.end(),
                  [](const Sample* a, const Sample* b) { return a->us < b->us; });
        for (uint32_t seg : warm)
            r.weight = std::max(r.weight, segs[seg].weight);
        std::vector<double> us;
        for (const Sample* s : r.samples)
            us.push_back(s->us);
        r.cost = median(us);
        ranked.push_back(std::move(r));
    }
    std::sort(ranked.begin(), ranked.end(),
              [](const Route& a, const Route& b) { return a.weight * a.cost > b.weight * b.cost; });

    // One diff per route, made on the jobs' threads (each with its own
    // Sessions), then kept in rank order within the budget.
    runtime::SessionOptions dopt = o.session;
    dopt.warn = nullptr;
    dopt.track_dirty = true;
    runtime::SessionOptions bopt = o.session; // benefit runs: untraced
    bopt.warn = nullptr;
    struct Made {
        SnapshotEntry entry;
        std::string problem; // not made, and why
    };
    std::vector<Made> made(ranked.size());
    std::vector<std::unique_ptr<runtime::Session>> timers(static_cast<size_t>(jobs));
    std::mutex say_mu;
    size_t routes_to_make = std::min(ranked.size(), o.max_snapshots);
    auto built = parallel_for(routes_to_make, jobs, [&](size_t k, int w) -> Status {
        const Route& route = ranked[k];
        Made& m = made[k];
        const Sample* warm = route.samples.front();
        const Sample* held = route.samples.size() > 1 ? route.samples[1] : warm;
        snapshot::RestoreOptions ro;
        ro.session = dopt;
        auto s = snapshot::restore(base_chain, ro);
        if (!s)
            return std::unexpected(s.error());
        if (auto mw = set_mmap_window(**s, k, routes_to_make); !mw) // merge rule (d)
            return std::unexpected(mw.error());
        auto in = runtime::MemoryRequestSource::of_lines({warm->request});
        runtime::MemoryResponseSink warm_out;
        auto wr = (*s)->run(in, warm_out, runtime::AtEof::kStop);
        if (!wr)
            return std::unexpected(wr.error());
        if (wr->kind != Kind::kWaiting) {
            m.problem = fmt::format("warm-up '{}' did not reach its wait point", warm->request);
            return {};
        }
        auto cap = snapshot::capture(**s);
        if (!cap)
            return std::unexpected(cap.error());
        auto diff = snapshot::to_memory(cap->image);
        if (!diff)
            return std::unexpected(diff.error());
        const snapshot::SnapshotFile* chain[] = {&*base, &*diff};
        // The working set of a later request of the route, and the benefit:
        // the held-out request from the base and from the snapshot.
        auto rep = snapshot::replay(chain, {held->request}, bopt);
        if (!rep)
            return std::unexpected(rep.error());
        snapshot::set_working_set(*cap, rep->touched);
        auto& timer = timers[size_t(w)];
        if (!timer) {
            auto t = snapshot::restore(base_chain, {bopt});
            if (!t)
                return std::unexpected(t.error());
            timer = std::move(*t);
        }
        std::vector<double> from_base, from_snap;
        for (int r = 0; r < o.benefit_runs; r++) {
            auto b = serve_one(*timer, base_chain, held->request, o.error_prefix);
            auto d = serve_one(*timer, chain, held->request, o.error_prefix);
            if (!b || !d)
                return std::unexpected(!b ? b.error() : d.error());
            from_base.push_back(b->us);
            from_snap.push_back(d->us);
        }
        SnapshotEntry& e = m.entry;
        e.warmup = warm->request;
        e.held_out = held->request;
        e.segments = route.warm;
        e.weight = route.weight;
        e.base_us = median(from_base);
        e.snapshot_us = median(from_snap);
        e.requests_in_route = route.samples.size();
        // What was monitored while the snapshot was made.
        e.warmup_response = warm_out.all_stdout();
        if (!warm_out.requests().empty()) {
            e.warmup_us = warm_out.requests()[0].us;
            e.warmup_exits = warm_out.requests()[0].exits;
        }
        e.pages_dirtied = cap->pages_dirtied;
        e.pages_touched = rep->touched.size();
        if (e.snapshot_us >= e.base_us) {
            m.problem = fmt::format("no benefit ({:.0f} us from the snapshot, {:.0f} us from the "
                                    "base)",
                                    e.snapshot_us, e.base_us);
            return {};
        }
        e.file = fmt::format("route-{}.snap", k);
        auto sum = snapshot::write_snapshot((tmp / e.file).string(), cap->image);
        if (!sum)
            return std::unexpected(sum.error());
        e.pages = sum->pages_stored;
        e.bytes = sum->file_size;
        // Merge rule (c): the bytes a steady-state request of the route rewrites.
        if (auto sc = learn_and_write_scoped(chain, {held->request, warm->request}, bopt,
                                             (tmp / fmt::format("route-{}.scoped", k)).string());
            !sc)
            return std::unexpected(sc.error());
        std::lock_guard lock(say_mu);
        say(fmt::format("route {}: '{}' {:.0f} -> {:.0f} us", k + 1, e.warmup, e.base_us,
                        e.snapshot_us));
        return {};
    });
    timers.clear();
    if (!built)
        return std::unexpected(built.error());
    uint64_t bytes_used = 0;
    for (size_t k = 0; k < ranked.size(); k++) {
        std::string names;
        for (uint32_t seg : ranked[k].warm)
            names += (names.empty() ? "" : " ") + segs[seg].name;
        if (k >= routes_to_make) {
            report.dropped.push_back(fmt::format("{}: over --max-snapshots", names));
            continue;
        }
        Made& m = made[k];
        if (!m.problem.empty()) {
            report.dropped.push_back(names + ": " + m.problem);
            continue;
        }
        fs::path made_path = tmp / m.entry.file;
        if (o.max_bytes && bytes_used + m.entry.bytes > o.max_bytes) {
            fs::remove(made_path, ec);
            fs::remove(fs::path(made_path).replace_extension(".scoped"), ec);
            report.dropped.push_back(fmt::format("{}: over --max-bytes", names));
            continue;
        }
        bytes_used += m.entry.bytes;
        m.entry.file = fmt::format("s{:03}.snap", report.snapshots.size() + 1);
        fs::rename(made_path, tmp / m.entry.file, ec);
        if (ec)
            return make_error(Errc::kIo, "cannot rename {}: {}", made_path.string(), ec.message());
        fs::rename(fs::path(made_path).replace_extension(".scoped"),
                   (tmp / m.entry.file).replace_extension(".scoped"), ec);
        if (ec)
            return make_error(Errc::kIo, "cannot rename the scoped bytes of {}: {}",
                              made_path.string(), ec.message());
        report.snapshots.push_back(std::move(m.entry));
    }

    // The manifest.
    namespace json = analysis::json;
    std::string m =
        fmt::format("{{\"format\":\"presnap-library\",\"version\":1,\"generator\":\"presnap {}\","
                    "\"program\":{},\"base\":\"base.snap\",\"map\":\"map.pmap\",\"base_bytes\":{},"
                    "\"requests\":{},"
                    "\"failed\":{}}}\n",
                    kVersion, json::quote(o.program.program), report.base_bytes,
                    report.requests_traced, report.requests_failed);
    for (const auto& e : report.snapshots) {
        std::string ids, names;
        for (uint32_t seg : e.segments) {
            ids += fmt::format("{}\"{}\"", ids.empty() ? "" : ",", hex(segs[seg].id));
            names += fmt::format("{}{}", names.empty() ? "" : ",", json::quote(segs[seg].name));
        }
        m += fmt::format(
            "{{\"type\":\"snapshot\",\"file\":\"{}\",\"segments\":[{}],\"names\":[{}],"
            "\"weight\":{:.6f},\"base_us\":{:.1f},\"snapshot_us\":{:.1f},\"benefit_us\":{:.1f},"
            "\"pages\":{},\"bytes\":{},\"route_requests\":{},\"warmup\":{},\"held_out\":{},"
            "\"pages_dirtied\":{},\"pages_touched\":{},\"warmup_us\":{:.1f},\"warmup_exits\":{},"
            "\"warmup_response\":{}}}\n",
            e.file, ids, names, e.weight, e.base_us, e.snapshot_us, e.base_us - e.snapshot_us,
            e.pages, e.bytes, e.requests_in_route, json::quote(e.warmup), json::quote(e.held_out),
            e.pages_dirtied, e.pages_touched, e.warmup_us, e.warmup_exits,
            json::quote(e.warmup_response));
    }
    std::string mpath = (tmp / "manifest.jsonl").string();
    FILE* f = std::fopen(mpath.c_str(), "wb");
    if (!f || std::fwrite(m.data(), 1, m.size(), f) != m.size() || std::fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        int e = errno;
        if (f)
            std::fclose(f);
        return make_errno_error(Errc::kIo, e, "cannot write " + mpath);
    }
    std::fclose(f);
    return report;
}

} // namespace

Result<BuildReport> build_library(const BuildOptions& o, const std::string& dir_arg) {
    fs::path dir = fs::absolute(dir_arg).lexically_normal();
    if (dir.filename().empty())
        dir = dir.parent_path();
    // One writer at a time.
    std::string lock_path = dir.string() + ".lock";
    int lock = ::open(lock_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0)
        return make_errno_error(Errc::kIo, errno, "cannot create " + lock_path);
    if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
        ::close(lock);
        return make_error(Errc::kIo, "{}: another snapgen is writing this library (lock {})",
                          dir.string(), lock_path);
    }
    struct Unlock {
        int fd;
        ~Unlock() { ::close(fd); }
    } unlock{lock};
    // Under the lock, any DIR.tmp-* is what a killed build left: remove it.
    std::error_code ec;
    std::string stale_prefix = dir.filename().string() + ".tmp-";
    for (const auto& e : fs::directory_iterator(dir.parent_path(), ec))
        if (e.path().filename().string().rfind(stale_prefix, 0) == 0)
            fs::remove_all(e.path(), ec);
    fs::path tmp = dir.string() + fmt::format(".tmp-{}", getpid());
    if (!fs::create_directories(tmp, ec))
        return make_error(Errc::kIo, "cannot create {}: {}", tmp.string(), ec.message());
    auto report = build_into(o, tmp);
    if (!report) {
        fs::remove_all(tmp, ec);
        return report;
    }
    // Swap the new library in whole: the old one stays complete until then.
    if (fs::exists(dir)) {
        if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
            int e = errno;
            fs::remove_all(tmp, ec);
            return make_errno_error(Errc::kIo, e, "cannot replace " + dir.string());
        }
        fs::remove_all(tmp, ec); // now the old library
    } else if (::rename(tmp.c_str(), dir.c_str()) != 0) {
        int e = errno;
        fs::remove_all(tmp, ec);
        return make_errno_error(Errc::kIo, e, "cannot create " + dir.string());
    }
    return report;
}

} // namespace presnap::library
