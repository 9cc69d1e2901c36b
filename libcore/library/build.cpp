#include "presnap/library/build.h"
#include "presnap/library/scoped.h"

#include "../format/json.h"
#include "../format/jsonl.h"
#include "presnap/analysis/hash.h"
#include "presnap/analysis/history.h"
#include "presnap/analysis/pmap.h"
#include "presnap/guest_abi.h"
#include "presnap/library/library.h"
#include "presnap/runtime/history_recorder.h"
#include "presnap/snapshot/page_store.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/version.h"
#include "presnap/vmm/syscall_names.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <sys/file.h>
#include <thread>
#include <tuple>
#include <unistd.h>

namespace presnap::library {
namespace {

namespace fs = std::filesystem;
using Kind = runtime::RunOutcome::Kind;

constexpr uint64_t kMaxShardBytes = 256ull << 20; // shard.jsonl
constexpr uint64_t kMaxHistoryBytes = 1ull << 30; // --history
constexpr unsigned kMaxShards = 4096;

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

// The guest kernel's counters, if its header names them (kernels before
// them say 0). Read from guest memory, so checked: inside the kernel image,
// with the magic.
std::optional<psn_stats> read_counters(runtime::Session& session) {
    auto& mem = session.memory();
    auto kh = mem.read_obj<psn_kernel_header>(PSN_KERNEL_BASE);
    if (!kh || kh->stats_addr == 0 || kh->stats_addr % 8 || kh->stats_addr < PSN_KERNEL_BASE ||
        kh->image_end > PSN_KERNEL_LIMIT || kh->stats_addr > kh->image_end ||
        kh->image_end - kh->stats_addr < sizeof(psn_stats))
        return std::nullopt;
    auto st = mem.read_obj<psn_stats>(kh->stats_addr);
    if (!st || st->magic != PSN_STATS_MAGIC)
        return std::nullopt;
    return *st;
}

// What the counters say happened between `before` and `after`. They live
// in memory the program could overwrite: figures no guest of `mem_size`
// bytes could produce in one request leave the entry without counters.
void record_counters(const psn_stats& before, const psn_stats& after, uint64_t mem_size,
                     SnapshotEntry& e) {
    constexpr uint64_t kMaxCalls = 1ull << 40;
    auto growth = [](uint64_t b, uint64_t a) { return static_cast<int64_t>(a - b); };
    int64_t brk = growth(before.brk_bytes, after.brk_bytes);
    int64_t mapped = growth(before.mmap_bytes, after.mmap_bytes);
    int64_t unmapped = growth(before.munmap_bytes, after.munmap_bytes);
    if (brk <= -static_cast<int64_t>(mem_size) || brk >= static_cast<int64_t>(mem_size) ||
        mapped < 0 || unmapped < 0 || static_cast<uint64_t>(mapped) > kMaxCalls ||
        static_cast<uint64_t>(unmapped) > kMaxCalls)
        return;
    std::vector<std::pair<std::string, uint64_t>> calls;
    for (uint32_t nr = 0; nr < PSN_STATS_SYSCALLS; nr++) {
        uint64_t n = after.syscalls[nr] - before.syscalls[nr];
        if (n > kMaxCalls)
            return;
        if (n)
            calls.emplace_back(
                nr == PSN_STATS_SYSCALLS - 1 ? std::string("other") : vmm::syscall_name(nr), n);
    }
    e.counted = true;
    e.brk_growth = brk;
    e.mmap_growth = mapped - unmapped;
    e.syscalls = std::move(calls);
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

// Writes `bytes` to `path` and flushes it to disk.
Status write_synced(const fs::path& path, std::string_view bytes) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() ||
        std::fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        if (f)
            std::fclose(f);
        return make_errno_error(Errc::kIo, e, "cannot write " + path.string());
    }
    if (std::fclose(f) != 0)
        return make_errno_error(Errc::kIo, errno, "cannot write " + path.string());
    return {};
}

// A library's header facts, the same in every shard of one build.
struct Head {
    std::string program;
    uint64_t base_bytes = 0, requests = 0, failed = 0;
    bool deterministic = false;
};

// One ranked route: made (entry.file is route-K.snap in the directory), or
// not made and why.
struct RouteResult {
    bool tried = false;
    std::string problem;
    std::string names; // the route's segment names, for messages
    SnapshotEntry entry;
};

// The manifest keys of the guest kernel's counters, each followed by a
// comma; none when the guest kernel had no counters.
std::string counter_keys(const SnapshotEntry& e) {
    if (!e.counted)
        return {};
    std::string sys;
    for (const auto& [name, n] : e.syscalls)
        sys += fmt::format("{}{}:{}", sys.empty() ? "" : ",", analysis::json::quote(name), n);
    return fmt::format("\"brk_growth\":{},\"mmap_growth\":{},\"syscalls\":{{{}}},", e.brk_growth,
                       e.mmap_growth, sys);
}

// The last step of writing a library: its diff snapshots, made standalone,
// become thin files whose pages are in one page store (each distinct page
// once), in manifest order so that a single build and a combine agree byte
// for byte. Fills the sizes the manifest and the summary report.
Status pack(const fs::path& tmp, const Head& head, BuildReport& report) {
    report.standalone_bytes = head.base_bytes;
    report.library_bytes = head.base_bytes;
    for (const auto& e : report.snapshots)
        report.standalone_bytes += e.bytes;
    if (report.snapshots.empty())
        return {};
    std::vector<std::string> files;
    for (const auto& e : report.snapshots)
        files.push_back(e.file);
    auto packed = snapshot::pack_snapshots(tmp.string(), files, kStoreName);
    if (!packed)
        return std::unexpected(packed.error());
    report.store = packed->store;
    report.store_bytes = packed->store_bytes;
    report.store_pages = packed->store_pages;
    report.library_bytes += packed->store_bytes;
    for (size_t i = 0; i < report.snapshots.size(); i++) {
        SnapshotEntry& e = report.snapshots[i];
        e.file_bytes = packed->files[i].bytes;
        e.store_added_bytes = packed->files[i].new_pages * snapshot::kPageSize;
        report.library_bytes += e.file_bytes;
    }
    return {};
}

// Keeps the made routes in rank order within the budget, names them
// sNNN.snap and writes the manifest (and, deterministic, timings.jsonl):
// what a single build and combine_shards share, so that they agree byte for
// byte.
Status finish(const fs::path& tmp, const Head& head, std::vector<RouteResult>& results,
              uint64_t max_bytes, BuildReport& report) {
    std::error_code ec;
    uint64_t bytes_used = 0;
    for (auto& r : results) {
        if (!r.tried) {
            report.dropped.push_back(fmt::format("{}: over --max-snapshots", r.names));
            continue;
        }
        if (!r.problem.empty()) {
            report.dropped.push_back(r.names + ": " + r.problem);
            continue;
        }
        fs::path made_path = tmp / r.entry.file;
        if (max_bytes && bytes_used + r.entry.bytes > max_bytes) {
            fs::remove(made_path, ec);
            fs::remove(fs::path(made_path).replace_extension(".scoped"), ec);
            report.dropped.push_back(fmt::format("{}: over --max-bytes", r.names));
            continue;
        }
        bytes_used += r.entry.bytes;
        r.entry.file = fmt::format("s{:03}.snap", report.snapshots.size() + 1);
        fs::rename(made_path, tmp / r.entry.file, ec);
        if (ec)
            return make_error(Errc::kIo, "cannot rename {}: {}", made_path.string(), ec.message());
        // Merge rule (c)'s request-scoped bytes follow their snapshot.
        fs::rename(fs::path(made_path).replace_extension(".scoped"),
                   (tmp / r.entry.file).replace_extension(".scoped"), ec);
        if (ec)
            return make_error(Errc::kIo, "cannot rename the scoped bytes of {}: {}",
                              made_path.string(), ec.message());
        report.snapshots.push_back(r.entry);
    }
    if (auto s = pack(tmp, head, report); !s)
        return s;

    namespace json = analysis::json;
    std::string m = fmt::format(
        "{{\"format\":\"presnap-library\",\"version\":1,\"generator\":\"presnap {}\","
        "\"program\":{},\"base\":\"base.snap\",\"map\":\"map.pmap\",\"base_bytes\":{},"
        "\"requests\":{},\"failed\":{}{}{}}}\n",
        kVersion, json::quote(head.program), head.base_bytes, head.requests, head.failed,
        head.deterministic ? ",\"deterministic\":true,\"timings\":\"timings.jsonl\"" : "",
        report.store.empty()
            ? fmt::format(",\"library_bytes\":{},\"standalone_bytes\":{}", report.library_bytes,
                          report.standalone_bytes)
            : fmt::format(",\"store\":{},\"store_bytes\":{},\"store_pages\":{},"
                          "\"library_bytes\":{},\"standalone_bytes\":{}",
                          json::quote(report.store), report.store_bytes, report.store_pages,
                          report.library_bytes, report.standalone_bytes));
    std::string timings;
    for (const auto& e : report.snapshots) {
        std::string ids, names;
        for (size_t i = 0; i < e.segment_ids.size(); i++) {
            ids += fmt::format("{}\"{}\"", i ? "," : "", hex(e.segment_ids[i]));
            names += fmt::format("{}{}", i ? "," : "", json::quote(e.names[i]));
        }
        std::string timing_keys =
            fmt::format("\"base_us\":{:.1f},\"snapshot_us\":{:.1f},\"benefit_us\":{:.1f}",
                        e.base_us, e.snapshot_us, e.base_us - e.snapshot_us);
        std::string warmup_keys =
            fmt::format("\"warmup_us\":{:.1f},\"warmup_exits\":{}", e.warmup_us, e.warmup_exits);
        if (head.deterministic)
            timings += fmt::format("{{\"type\":\"timings\",\"file\":\"{}\",{},{}}}\n", e.file,
                                   timing_keys, warmup_keys);
        m += fmt::format(
            "{{\"type\":\"snapshot\",\"file\":\"{}\",\"segments\":[{}],\"names\":[{}],"
            "\"weight\":{:.6f},{}\"pages\":{},\"bytes\":{},\"file_bytes\":{},"
            "\"store_added_bytes\":{},\"route_requests\":{},\"warmup\":{},"
            "\"held_out\":{},\"pages_dirtied\":{},\"pages_touched\":{},{}\"segments_saved\":{},"
            "{}\"warmup_response\":{}}}\n",
            e.file, ids, names, e.weight, head.deterministic ? "" : timing_keys + ",", e.pages,
            e.bytes, e.file_bytes, e.store_added_bytes, e.requests_in_route, json::quote(e.warmup),
            json::quote(e.held_out), e.pages_dirtied, e.pages_touched,
            head.deterministic ? "" : warmup_keys + ",", e.segments_saved, counter_keys(e),
            json::quote(e.warmup_response));
    }
    if (head.deterministic) {
        timings = "{\"format\":\"presnap-library-timings\",\"version\":1}\n" + timings;
        if (auto s = write_synced(tmp / "timings.jsonl", timings); !s)
            return s;
    }
    return write_synced(tmp / "manifest.jsonl", m);
}

// ---- Shard files (shard.jsonl) ----

constexpr const char* kShardFormat = "presnap-library-shard";

struct ShardHead {
    Head head;
    unsigned shard = 0, shards = 0;
    std::string base_hash; // 32 hex digits
    uint64_t map_hash = 0, plan_hash = 0;
    uint64_t routes = 0, to_make = 0, max_bytes = 0;
};

std::string entry_json(const SnapshotEntry& e) {
    namespace json = analysis::json;
    std::string ids, names, segs;
    for (size_t i = 0; i < e.segment_ids.size(); i++) {
        ids += fmt::format("{}\"{}\"", i ? "," : "", hex(e.segment_ids[i]));
        names += fmt::format("{}{}", i ? "," : "", json::quote(e.names[i]));
    }
    return fmt::format(
        "\"file\":{},\"segments\":[{}],\"names\":[{}],\"weight\":{},\"base_us\":{},"
        "\"snapshot_us\":{},\"pages\":{},\"bytes\":{},\"route_requests\":{},\"warmup\":{},"
        "\"held_out\":{},\"pages_dirtied\":{},\"pages_touched\":{},\"warmup_us\":{},"
        "\"warmup_exits\":{},\"segments_saved\":{},{}\"warmup_response\":{}",
        json::quote(e.file), ids, names, e.weight, e.base_us, e.snapshot_us, e.pages, e.bytes,
        e.requests_in_route, json::quote(e.warmup), json::quote(e.held_out), e.pages_dirtied,
        e.pages_touched, e.warmup_us, e.warmup_exits, e.segments_saved, counter_keys(e),
        json::quote(e.warmup_response));
}

std::string shard_json(const ShardHead& h, const std::vector<RouteResult>& results) {
    namespace json = analysis::json;
    std::string s = fmt::format(
        "{{\"format\":\"{}\",\"version\":1,\"shard\":{},\"shards\":{},\"program\":{},"
        "\"base_hash\":\"{}\",\"map_hash\":\"{}\",\"plan_hash\":\"{}\",\"routes\":{},"
        "\"to_make\":{},\"max_bytes\":{},\"base_bytes\":{},\"requests\":{},\"failed\":{}}}\n",
        kShardFormat, h.shard, h.shards, json::quote(h.head.program), h.base_hash, hex(h.map_hash),
        hex(h.plan_hash), h.routes, h.to_make, h.max_bytes, h.head.base_bytes, h.head.requests,
        h.head.failed);
    for (size_t k = 0; k < results.size(); k++) {
        const RouteResult& r = results[k];
        if (!r.tried)
            continue;
        s += fmt::format("{{\"type\":\"route\",\"rank\":{},\"names\":{},\"problem\":{}", k,
                         json::quote(r.names), json::quote(r.problem));
        if (r.problem.empty())
            s += ",\"entry\":{" + entry_json(r.entry) + "}";
        s += "}\n";
    }
    return s;
}

// The number of a syscall name as record_counters writes it.
std::optional<uint32_t> syscall_number(const std::string& name) {
    static const std::map<std::string, uint32_t> numbers = [] {
        std::map<std::string, uint32_t> m;
        for (uint32_t nr = 0; nr + 1 < PSN_STATS_SYSCALLS; nr++)
            m.emplace(vmm::syscall_name(nr), nr);
        m["other"] = PSN_STATS_SYSCALLS - 1;
        return m;
    }();
    auto it = numbers.find(name);
    if (it == numbers.end())
        return std::nullopt;
    return it->second;
}

// Reads a shard directory's shard.jsonl, checked field by field: the file
// is input like any other (it may come from another machine).
struct Shard {
    fs::path dir;
    ShardHead head;
    std::map<uint64_t, RouteResult> routes; // by rank
};

Result<Shard> read_shard(const std::string& dir_arg) {
    namespace json = analysis::json;
    Shard sh;
    std::error_code ec;
    sh.dir = fs::absolute(dir_arg, ec).lexically_normal();
    if (sh.dir.filename().empty())
        sh.dir = sh.dir.parent_path();
    fs::path path = sh.dir / "shard.jsonl";
    if (!fs::is_regular_file(path, ec))
        return make_error(Errc::kFormat,
                          "{}: not a library shard (no shard.jsonl; snapgen --shard I/N makes one)",
                          dir_arg);
    auto text = jsonl::read_file(path.string(), kMaxShardBytes);
    if (!text)
        return std::unexpected(text.error());
    jsonl::Lines lines(*text, path.string());
    bool header = false;
    json::Value v;
    for (;;) {
        auto more = lines.next(v);
        if (!more)
            return std::unexpected(more.error());
        if (!*more)
            break;
        jsonl::Fields f(v);
        if (!header) {
            if (f.string("format") != kShardFormat || f.number("version") != 1)
                return lines.fail(fmt::format("not a version 1 {} header", kShardFormat));
            ShardHead& h = sh.head;
            h.shard = static_cast<unsigned>(f.count("shard", jsonl::Need::kRequired, kMaxShards));
            h.shards = static_cast<unsigned>(f.count("shards", jsonl::Need::kRequired, kMaxShards));
            h.head.program = f.string("program");
            h.head.deterministic = true;
            h.base_hash = f.string("base_hash");
            h.map_hash = f.hex64("map_hash");
            h.plan_hash = f.hex64("plan_hash");
            h.routes = f.count("routes");
            h.to_make = f.count("to_make");
            h.max_bytes = f.count("max_bytes");
            h.head.base_bytes = f.count("base_bytes");
            h.head.requests = f.count("requests");
            h.head.failed = f.count("failed");
            if (f.ok() && (h.shards == 0 || h.shard == 0 || h.shard > h.shards))
                f.fail(fmt::format("shard {}/{} is out of range", h.shard, h.shards));
            if (f.ok() && (h.to_make > h.routes || h.routes > kMaxLibrarySnapshots))
                f.fail(fmt::format("{} routes to make of {} is out of range", h.to_make, h.routes));
            if (!f.ok())
                return lines.fail(f.error());
            header = true;
            continue;
        }
        if (f.string("type") != "route")
            return lines.fail(f.ok() ? "unknown record type" : f.error());
        uint64_t rank = f.count("rank");
        RouteResult r;
        r.tried = true;
        r.names = f.string("names");
        r.problem = f.string("problem");
        if (!f.ok())
            return lines.fail(f.error());
        if (rank >= sh.head.to_make || rank % sh.head.shards != sh.head.shard - 1)
            return lines.fail(
                fmt::format("route rank {} does not belong to shard {}/{} (of {} routes)", rank,
                            sh.head.shard, sh.head.shards, sh.head.to_make));
        if (sh.routes.count(rank))
            return lines.fail(fmt::format("route rank {} is listed twice", rank));
        if (r.problem.empty()) {
            const json::Value* e = f.object("entry");
            if (!e)
                return lines.fail("a made route without an \"entry\" object");
            jsonl::Fields g(*e);
            SnapshotEntry& x = r.entry;
            x.file = g.string("file");
            if (g.ok() && x.file != fmt::format("route-{}.snap", rank))
                g.fail(fmt::format("\"file\" must be route-{}.snap", rank));
            const json::Value* segs = g.array("segments");
            const json::Value* names = g.array("names");
            if (!segs || !names || segs->array.size() != names->array.size() ||
                segs->array.size() > 1u << 16)
                return lines.fail("\"segments\" and \"names\" must be arrays of one length");
            for (size_t i = 0; i < segs->array.size(); i++) {
                const auto& b = names->array[i];
                auto id = jsonl::as_hex64(segs->array[i]);
                if (!id || b.type != json::Value::Type::kString)
                    return lines.fail("\"segments\" must hold 16-hex-digit ids, \"names\" strings");
                x.segment_ids.push_back(*id);
                x.names.push_back(b.string);
            }
            x.weight = g.number("weight");
            x.base_us = g.number("base_us");
            x.snapshot_us = g.number("snapshot_us");
            x.pages = g.count("pages");
            x.bytes = g.count("bytes");
            x.requests_in_route = g.count("route_requests");
            x.warmup = g.string("warmup");
            x.held_out = g.string("held_out");
            x.pages_dirtied = g.count("pages_dirtied");
            x.pages_touched = g.count("pages_touched");
            x.warmup_us = g.number("warmup_us");
            x.warmup_exits = g.count("warmup_exits");
            x.segments_saved = g.count("segments_saved");
            x.warmup_response = g.string("warmup_response");
            if (g.has("syscalls")) {
                x.counted = true;
                x.brk_growth = g.integer("brk_growth");
                x.mmap_growth = g.integer("mmap_growth");
                const json::Value* sys = g.object("syscalls");
                if (!g.ok())
                    return lines.fail(g.error());
                if (sys->object.size() > PSN_STATS_SYSCALLS)
                    return lines.fail(fmt::format(
                        "\"syscalls\" must be an object of at most {} counts", PSN_STATS_SYSCALLS));
                // In number order, as written: the object's own order is
                // lost by the parser, so the names are sorted back by number.
                std::vector<std::tuple<uint32_t, std::string, uint64_t>> by_nr;
                for (const auto& [name, count_v] : sys->object) {
                    auto n = jsonl::as_count(count_v);
                    if (!n || *n < 1)
                        return lines.fail(
                            fmt::format("syscall count of {} is not a positive count (found {})",
                                        jsonl::shown(name), jsonl::shown(count_v)));
                    auto nr = syscall_number(name);
                    if (!nr)
                        return lines.fail(
                            fmt::format("{} is not a syscall name", jsonl::shown(name)));
                    by_nr.emplace_back(*nr, name, *n);
                }
                std::sort(by_nr.begin(), by_nr.end());
                for (auto& [nr, name, n] : by_nr)
                    x.syscalls.emplace_back(std::move(name), n);
            }
            if (g.ok() && (x.weight < 0 || x.weight > 1))
                g.fail("\"weight\" is not a probability");
            if (!g.ok())
                return lines.fail(g.error());
        }
        sh.routes.emplace(rank, std::move(r));
    }
    if (!header)
        return lines.fail_file("empty");
    return sh;
}

// ---- Building ----

// Samples from a history file (docs/formats/history.md) instead of traces:
// every request must name segments of this map, and only complete requests
// with a known outcome are used.
Result<std::vector<Sample>> samples_from_history(const std::string& path,
                                                 const analysis::ProbabilityMap& map,
                                                 uint64_t& skipped) {
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    if (ec)
        return make_error(Errc::kIo, "cannot read {}: {}", path, ec.message());
    if (size > kMaxHistoryBytes)
        return make_error(Errc::kFormat, "{}: {} bytes, more than the limit of {} MiB", path, size,
                          kMaxHistoryBytes >> 20);
    std::string text(size, '\0');
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f)
        return make_errno_error(Errc::kIo, errno, "cannot open " + path);
    text.resize(std::fread(text.data(), 1, text.size(), f));
    std::fclose(f);
    auto h = analysis::parse_history(text, path, true);
    if (!h)
        return std::unexpected(h.error());
    std::map<uint64_t, uint32_t> index;
    for (size_t i = 0; i < map.segments.size(); i++)
        index.emplace(map.segments[i].id, static_cast<uint32_t>(i));
    std::vector<Sample> out;
    for (const auto& r : h->requests) {
        std::vector<uint32_t> warm;
        for (uint64_t id : r.segments) {
            auto it = index.find(id);
            if (it == index.end())
                return make_error(Errc::kFormat,
                                  "{}: request {} ran segment {}, which the map does not have "
                                  "(a history of another program or build?)",
                                  path, r.seq, hex(id));
            if (map.segments[it->second].warmable)
                warm.push_back(it->second);
        }
        if (r.truncated || !r.failed || r.bytes.find('\n') != std::string::npos) {
            skipped++; // not replayable, or its outcome is unknown
            continue;
        }
        std::sort(warm.begin(), warm.end());
        warm.erase(std::unique(warm.begin(), warm.end()), warm.end());
        Sample s;
        s.request = r.bytes;
        s.failed = *r.failed;
        s.us = std::isfinite(r.latency_us) ? r.latency_us : 0;
        s.warm = std::move(warm);
        out.push_back(std::move(s));
    }
    return out;
}

// Builds the library directory's files (or a shard's) in `tmp`.
Result<BuildReport> build_into(const BuildOptions& o, const fs::path& tmp) {
    auto say = [&](const std::string& m) {
        if (o.progress)
            o.progress(m);
    };
    std::mutex progress_mu;
    BuildProgress progress;
    auto tick = [&](BuildProgress::Phase phase, size_t done, size_t total, size_t made) {
        if (!o.on_progress)
            return;
        std::lock_guard lock(progress_mu);
        progress.phase = phase;
        progress.done = done;
        progress.total = total;
        progress.snapshots = made;
        o.on_progress(progress);
    };
    const bool sharded = o.shards > 0;
    tick(BuildProgress::Phase::kBase, 0, 1, 0);
    auto plan = runtime::plan_trace(o.map_path, o.program.program, false);
    if (!plan)
        return std::unexpected(plan.error());
    const auto& segs = plan->map.segments;
    // The map travels with the library: snapselect's static priors and route
    // tokens come from it.
    std::string map_bytes;
    {
        std::error_code ec;
        fs::copy_file(o.map_path, tmp / "map.pmap", fs::copy_options::overwrite_existing, ec);
        if (ec)
            return make_error(Errc::kIo, "cannot copy {} into the library: {}", o.map_path,
                              ec.message());
        std::ifstream in(tmp / "map.pmap", std::ios::binary);
        map_bytes.assign(std::istreambuf_iterator<char>(in), {});
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
    report.shard = sharded;
    report.base_bytes = base_sum->file_size;
    say(fmt::format("base snapshot: {} bytes", base_sum->file_size));

    // Trace every sample from the base, each in a fresh restore of a pooled
    // Session, one per job (or read the traces from a history).
    const snapshot::SnapshotFile* base_chain[] = {&*base};
    runtime::SessionOptions topt = o.session;
    topt.trace = {plan->points, 1};
    topt.warn = nullptr;
    int jobs = std::max(1, o.jobs);
    std::vector<std::unique_ptr<runtime::Session>> tracers(static_cast<size_t>(jobs));
    auto tracer = [&](int w) -> Result<runtime::Session*> {
        auto& session = tracers[size_t(w)];
        if (!session) {
            auto s = snapshot::restore(base_chain, {topt});
            if (!s)
                return std::unexpected(s.error());
            session = std::move(*s);
        }
        return session.get();
    };
    std::vector<Sample> samples;
    if (!o.history_path.empty()) {
        auto h = samples_from_history(o.history_path, plan->map, report.history_skipped);
        if (!h)
            return std::unexpected(h.error());
        samples = std::move(*h);
        say(fmt::format("read {} requests from {} ({} not usable)", samples.size(), o.history_path,
                        report.history_skipped));
    } else {
        samples.resize(o.requests.size());
        std::atomic<size_t> traced_count{0};
        auto traced = parallel_for(o.requests.size(), jobs, [&](size_t i, int w) -> Status {
            auto session = tracer(w);
            if (!session)
                return std::unexpected(session.error());
            auto r = serve_one(**session, base_chain, o.requests[i], o.error_prefix);
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
            tick(BuildProgress::Phase::kTrace, ++traced_count, o.requests.size(), 0);
            return {};
        });
        if (!traced)
            return std::unexpected(traced.error());
    }
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
    if (!o.history_path.empty()) {
        // A history is a claim, and a request served by a warm process does
        // not rerun the initialisers an earlier one ran: trace the first
        // request of each claimed route from the base, and file the route's
        // requests under what that trace shows.
        std::vector<std::pair<std::vector<uint32_t>, std::vector<const Sample*>>> claims(
            routes.begin(), routes.end());
        std::vector<std::optional<std::vector<uint32_t>>> traced(claims.size());
        auto checked = parallel_for(claims.size(), jobs, [&](size_t i, int w) -> Status {
            auto session = tracer(w);
            if (!session)
                return std::unexpected(session.error());
            auto t =
                serve_one(**session, base_chain, claims[i].second.front()->request, o.error_prefix);
            if (!t)
                return std::unexpected(t.error());
            std::vector<uint32_t> ran;
            for (uint32_t seg : t->segments)
                if (seg < segs.size() && segs[seg].warmable)
                    ran.push_back(seg);
            std::sort(ran.begin(), ran.end());
            if (t->ok && !ran.empty())
                traced[i] = std::move(ran);
            tick(BuildProgress::Phase::kTrace, i + 1, claims.size(), 0);
            return {};
        });
        if (!checked)
            return std::unexpected(checked.error());
        routes.clear();
        for (size_t i = 0; i < claims.size(); i++) {
            if (!traced[i]) {
                report.history_skipped += claims[i].second.size();
                say(fmt::format("'{}' failed or ran no warmable segment when traced from the "
                                "base: its history route is not used",
                                claims[i].second.front()->request));
                continue;
            }
            auto& list = routes[*traced[i]];
            list.insert(list.end(), claims[i].second.begin(), claims[i].second.end());
        }
        for (auto& [warm, list] : routes) // file order (samples is in file order)
            std::sort(list.begin(), list.end());
    }
    struct Route {
        std::vector<uint32_t> warm;
        std::vector<const Sample*> samples; // the warm-up first, then the held-out
        double weight = 0, cost = 0;
    };
    std::vector<Route> ranked;
    for (auto& [warm, list] : routes) {
        Route r{warm, list};
        // Deterministic: file order. Otherwise the cheapest first.
        if (!o.deterministic)
            std::stable_sort(r.samples.begin(), r.samples.end(),
                             [](const Sample* a, const Sample* b) { return a->us < b->us; });
        for (uint32_t seg : warm)
            r.weight = std::max(r.weight, segs[seg].weight);
        std::vector<double> us;
        for (const Sample* s : r.samples)
            us.push_back(s->us);
        r.cost = median(us);
        ranked.push_back(std::move(r));
    }
    // (std::map gave them in segment-set order: the last tie-break.)
    if (o.deterministic)
        std::stable_sort(ranked.begin(), ranked.end(), [](const Route& a, const Route& b) {
            if (a.weight != b.weight)
                return a.weight > b.weight;
            return a.warm.size() > b.warm.size();
        });
    else
        std::stable_sort(ranked.begin(), ranked.end(), [](const Route& a, const Route& b) {
            return a.weight * a.cost > b.weight * b.cost;
        });
    report.routes = ranked.size();

    // One diff per route, made on the jobs' threads (each with its own
    // Sessions), then kept in rank order within the budget.
    runtime::SessionOptions dopt = o.session;
    dopt.warn = nullptr;
    dopt.track_dirty = true;
    runtime::SessionOptions bopt = o.session; // benefit runs: untraced
    bopt.warn = nullptr;
    std::vector<RouteResult> results(ranked.size());
    for (size_t k = 0; k < ranked.size(); k++)
        for (uint32_t seg : ranked[k].warm)
            results[k].names += (results[k].names.empty() ? "" : " ") + segs[seg].name;
    size_t routes_to_make = std::min(ranked.size(), o.max_snapshots);
    std::vector<size_t> mine; // ranks this build makes
    for (size_t k = 0; k < routes_to_make; k++)
        if (!sharded || k % o.shards == o.shard - 1)
            mine.push_back(k);
    std::vector<std::unique_ptr<runtime::Session>> timers(static_cast<size_t>(jobs));
    std::mutex say_mu;
    std::atomic<size_t> routes_done{0}, routes_made{0};
    tick(BuildProgress::Phase::kSnapshots, 0, mine.size(), 0);
    auto built = parallel_for(mine.size(), jobs, [&](size_t i, int w) -> Status {
        size_t k = mine[i];
        const Route& route = ranked[k];
        RouteResult& m = results[k];
        m.tried = true;
        const Sample* warm = route.samples.front();
        const Sample* held = route.samples.size() > 1 ? route.samples[1] : warm;
        auto trace_session = tracer(w);
        if (!trace_session)
            return std::unexpected(trace_session.error());
        snapshot::RestoreOptions ro;
        ro.session = dopt;
        auto s = snapshot::restore(base_chain, ro);
        if (!s)
            return std::unexpected(s.error());
        if (auto mw = set_mmap_window(**s, k, routes_to_make); !mw) // merge rule (d)
            return std::unexpected(mw.error());
        auto counters_before = read_counters(**s);
        auto in = runtime::MemoryRequestSource::of_lines({warm->request});
        runtime::MemoryResponseSink warm_out;
        auto wr = (*s)->run(in, warm_out, runtime::AtEof::kStop);
        if (!wr)
            return std::unexpected(wr.error());
        if (wr->kind != Kind::kWaiting) {
            m.problem = fmt::format("warm-up '{}' did not reach its wait point", warm->request);
            tick(BuildProgress::Phase::kSnapshots, ++routes_done, mine.size(), routes_made);
            return {};
        }
        if (auto after = read_counters(**s); counters_before && after)
            record_counters(*counters_before, *after, base->guest_memory_size(), m.entry);
        auto cap = snapshot::capture(**s);
        if (!cap)
            return std::unexpected(cap.error());
        // (The capture's pages are the Session's memory: it stays until
        // the file is written.)
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
        // The held-out request traced from the base and from the snapshot:
        // the traced segments (functions, warmable segments, route sites)
        // it no longer runs are the work the snapshot saves it.
        auto traced_base = serve_one(**trace_session, base_chain, held->request, o.error_prefix);
        if (!traced_base)
            return std::unexpected(traced_base.error());
        auto t = serve_one(**trace_session, chain, held->request, o.error_prefix);
        if (!t)
            return std::unexpected(t.error());
        SnapshotEntry& e = m.entry;
        for (uint32_t seg : traced_base->segments)
            e.segments_saved +=
                std::find(t->segments.begin(), t->segments.end(), seg) == t->segments.end();
        auto& timer = timers[size_t(w)];
        if (!timer) {
            auto tm = snapshot::restore(base_chain, {bopt});
            if (!tm)
                return std::unexpected(tm.error());
            timer = std::move(*tm);
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
        e.warmup = warm->request;
        e.held_out = held->request;
        e.segments = route.warm;
        for (uint32_t seg : route.warm) {
            e.segment_ids.push_back(segs[seg].id);
            e.names.push_back(segs[seg].name);
        }
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
        if (o.deterministic ? e.segments_saved == 0 : e.snapshot_us >= e.base_us) {
            m.problem = o.deterministic
                            ? fmt::format("no benefit ('{}' traced from the snapshot ran every "
                                          "segment it ran from the base)",
                                          held->request)
                            : fmt::format("no benefit ({:.0f} us from the snapshot, {:.0f} us "
                                          "from the base)",
                                          e.snapshot_us, e.base_us);
            tick(BuildProgress::Phase::kSnapshots, ++routes_done, mine.size(), routes_made);
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
        {
            std::lock_guard lock(say_mu);
            say(fmt::format("route {}: '{}' {:.0f} -> {:.0f} us", k + 1, e.warmup, e.base_us,
                            e.snapshot_us));
        }
        tick(BuildProgress::Phase::kSnapshots, ++routes_done, mine.size(), ++routes_made);
        return {};
    });
    timers.clear();
    tracers.clear();
    if (!built)
        return std::unexpected(built.error());
    tick(BuildProgress::Phase::kWrite, 0, 1, routes_made);

    Head head{o.program.program, report.base_bytes, report.requests_traced, report.requests_failed,
              o.deterministic};
    if (sharded) {
        ShardHead sh;
        sh.head = head;
        sh.shard = o.shard;
        sh.shards = o.shards;
        sh.base_hash = base->content_hash().hex();
        sh.map_hash = analysis::fnv1a64(map_bytes);
        // The plan every shard must share: routes in rank order, their
        // warm-up and held-out requests.
        uint64_t ph = analysis::kFnvOffset;
        for (const Route& r : ranked) {
            for (uint32_t seg : r.warm)
                ph = analysis::fnv1a64(hex(segs[seg].id), ph);
            ph = analysis::fnv1a64(fmt::format("|{}|", r.samples.front()->request), ph);
            ph = analysis::fnv1a64(
                fmt::format("{}\n", (r.samples.size() > 1 ? r.samples[1] : r.samples[0])->request),
                ph);
        }
        sh.plan_hash = ph;
        sh.routes = ranked.size();
        sh.to_make = routes_to_make;
        sh.max_bytes = o.max_bytes;
        for (const auto& r : results)
            if (r.tried && r.problem.empty())
                report.snapshots.push_back(r.entry);
            else if (r.tried)
                report.dropped.push_back(r.names + ": " + r.problem);
        if (auto s = write_synced(tmp / "shard.jsonl", shard_json(sh, results)); !s)
            return std::unexpected(s.error());
        return report;
    }
    if (auto s = finish(tmp, head, results, o.max_bytes, report); !s)
        return std::unexpected(s.error());
    return report;
}

// Runs `fill(tmp)` under DIR.lock and swaps tmp in as DIR when it succeeds.
Result<BuildReport> locked_swap(const std::string& dir_arg,
                                const std::function<Result<BuildReport>(const fs::path&)>& fill) {
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
    auto report = fill(tmp);
    if (!report) {
        fs::remove_all(tmp, ec);
        return report;
    }
    // Every file is on disk before the directory is swapped in.
    if (int d = ::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
        fsync(d);
        ::close(d);
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

// Copies `from` to `to` and flushes it.
Status copy_synced(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    if (ec)
        return make_error(Errc::kIo, "cannot copy {} to {}: {}", from.string(), to.string(),
                          ec.message());
    int fd = ::open(to.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            ::close(fd);
        return make_errno_error(Errc::kIo, e, "cannot flush " + to.string());
    }
    ::close(fd);
    return {};
}

Result<BuildReport> combine_into(std::span<const std::string> dirs, const fs::path& tmp,
                                 const std::function<void(const std::string&)>& progress) {
    if (dirs.empty())
        return make_error(Errc::kInvalidArgument, "--combine needs at least one shard");
    std::vector<Shard> shards;
    for (const auto& d : dirs) {
        auto s = read_shard(d);
        if (!s)
            return std::unexpected(s.error());
        shards.push_back(std::move(*s));
    }
    const ShardHead& first = shards[0].head;
    auto differ = [&](const Shard& s, const char* what) {
        return make_error(Errc::kFormat, "{} and {} are not shards of one build: their {} differ",
                          shards[0].dir.string(), s.dir.string(), what);
    };
    std::vector<const Shard*> by_index(first.shards + 1, nullptr);
    for (const Shard& s : shards) {
        const ShardHead& h = s.head;
        if (h.shards != first.shards)
            return differ(s, "shard counts");
        if (h.head.program != first.head.program)
            return differ(s, "programs");
        if (h.map_hash != first.map_hash)
            return differ(s, "maps");
        if (h.base_hash != first.base_hash || h.head.base_bytes != first.head.base_bytes)
            return differ(s, "base snapshots");
        if (h.plan_hash != first.plan_hash || h.routes != first.routes ||
            h.to_make != first.to_make || h.head.requests != first.head.requests ||
            h.head.failed != first.head.failed)
            return differ(s, "plans (sample requests, traces or --max-snapshots)");
        if (h.max_bytes != first.max_bytes)
            return differ(s, "--max-bytes");
        if (by_index[h.shard])
            return make_error(Errc::kFormat, "{} and {} are both shard {}/{}",
                              by_index[h.shard]->dir.string(), s.dir.string(), h.shard, h.shards);
        by_index[h.shard] = &s;
    }
    for (unsigned i = 1; i <= first.shards; i++)
        if (!by_index[i])
            return make_error(Errc::kFormat, "shard {}/{} is missing", i, first.shards);

    // The base and the map, from the first shard, checked against the hashes.
    auto base = snapshot::SnapshotFile::open((shards[0].dir / "base.snap").string());
    if (!base)
        return std::unexpected(base.error());
    if (base->content_hash().hex() != first.base_hash ||
        base->kind() != snapshot::SnapshotKind::kFull)
        return make_error(Errc::kFormat, "{}: not the base snapshot its shard.jsonl names",
                          (shards[0].dir / "base.snap").string());
    {
        std::ifstream in(shards[0].dir / "map.pmap", std::ios::binary);
        std::string bytes(std::istreambuf_iterator<char>(in), {});
        if (analysis::fnv1a64(bytes) != first.map_hash)
            return make_error(Errc::kFormat, "{}: not the map its shard.jsonl names",
                              (shards[0].dir / "map.pmap").string());
    }
    for (const char* f : {"base.snap", "map.pmap"})
        if (auto s = copy_synced(shards[0].dir / f, tmp / f); !s)
            return std::unexpected(s.error());

    std::vector<RouteResult> results(first.routes);
    for (uint64_t k = 0; k < first.to_make; k++) {
        const Shard& s = *by_index[k % first.shards + 1];
        auto it = s.routes.find(k);
        if (it == s.routes.end())
            return make_error(Errc::kFormat, "{}: route rank {} is missing from shard {}/{}",
                              s.dir.string(), k, s.head.shard, s.head.shards);
        results[k] = it->second;
        if (!results[k].problem.empty())
            continue;
        // Each snapshot file: a diff over this base, the size recorded.
        fs::path from = s.dir / results[k].entry.file;
        auto snap = snapshot::SnapshotFile::open(from.string());
        if (!snap)
            return std::unexpected(snap.error());
        if (snap->kind() != snapshot::SnapshotKind::kDiff)
            return make_error(Errc::kFormat, "{}: not a diff snapshot", from.string());
        if (auto v = snap->verify_parent(*base); !v)
            return make_error(Errc::kFormat, "{}: {}", from.string(), v.error().describe());
        if (snap->file_size() != results[k].entry.bytes)
            return make_error(Errc::kFormat, "{}: {} bytes, its shard.jsonl says {}", from.string(),
                              snap->file_size(), results[k].entry.bytes);
        if (auto c = copy_synced(from, tmp / results[k].entry.file); !c)
            return std::unexpected(c.error());
        fs::path scoped = fs::path(from).replace_extension(".scoped");
        if (auto c =
                copy_synced(scoped, (tmp / results[k].entry.file).replace_extension(".scoped"));
            !c)
            return std::unexpected(c.error());
        if (progress)
            progress(fmt::format("route {} from shard {}/{}", k + 1, s.head.shard, s.head.shards));
    }
    // Names of the routes past --max-snapshots, for the report.
    for (uint64_t k = first.to_make; k < first.routes; k++)
        results[k].names = fmt::format("route {}", k + 1);
    BuildReport report;
    report.base_bytes = first.head.base_bytes;
    report.requests_traced = first.head.requests;
    report.requests_failed = first.head.failed;
    report.routes = first.routes;
    if (auto s = finish(tmp, first.head, results, first.max_bytes, report); !s)
        return std::unexpected(s.error());
    return report;
}

} // namespace

Result<BuildReport> build_library(const BuildOptions& o, const std::string& dir) {
    if (o.shards > 0 && (o.shard == 0 || o.shard > o.shards || o.shards > kMaxShards))
        return make_error(Errc::kInvalidArgument, "shard {}/{} is out of range", o.shard, o.shards);
    if (o.shards > 0 && !o.deterministic)
        return make_error(Errc::kInvalidArgument,
                          "a sharded build must be deterministic (every shard must make the "
                          "same choices)");
    return locked_swap(dir, [&](const fs::path& tmp) { return build_into(o, tmp); });
}

Result<BuildReport> combine_shards(std::span<const std::string> shards, const std::string& dir,
                                   const std::function<void(const std::string&)>& progress) {
    return locked_swap(dir,
                       [&](const fs::path& tmp) { return combine_into(shards, tmp, progress); });
}

} // namespace presnap::library
