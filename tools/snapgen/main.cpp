// snapgen: make snapshots of a function. A thin main over libcore's runtime
// and snapshot layers:
//   snapgen --base -o BASE.snap [--warmup FILE] PROGRAM [ARGS...]
//   snapgen --after REQUESTS --from BASE.snap [--from DIFF.snap...] -o OUT.snap
//   snapgen --map PMAP --requests FILE -o DIR [--shard I/N] PROGRAM [ARGS...]
//   snapgen --combine SHARD... -o DIR
// See snapgen(1).
#include "presnap/library/build.h"
#include "presnap/runtime/session.h"
#include "presnap/size.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/version.h"
#include "presnap/vmm/kvm.h"

#include "../common/diag.h"
#include "../common/guest_options.h"
#include "../common/snapshot_input.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include <vector>

using namespace presnap;

namespace {

constexpr const char* kTool = "snapgen";
using tools::kExitFailure, tools::kExitUsage;
tools::Diag diag(kTool);

// The last non-empty line of `text`.
std::string last_request(const std::string& text) {
    std::string last;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        std::string line = text.substr(start, nl == std::string::npos ? nl : nl - start);
        if (!line.empty())
            last = line;
        if (nl == std::string::npos)
            break;
        start = nl + 1;
    }
    return last;
}

// A progress bar on stderr (a terminal): the phase, its items done, the
// snapshots kept, elapsed time and an estimate of what is left of the phase.
class ProgressBar {
  public:
    void draw(const library::BuildProgress& p) {
        using Phase = library::BuildProgress::Phase;
        auto now = std::chrono::steady_clock::now();
        if (p.phase != phase_ || p.done == 0) {
            phase_ = p.phase;
            phase_start_ = now;
        }
        // At most ten redraws a second, and always the last of a phase.
        if (now - last_ < std::chrono::milliseconds(100) && p.done != p.total)
            return;
        last_ = now;
        const char* what = p.phase == Phase::kBase        ? "base snapshot"
                           : p.phase == Phase::kTrace     ? "tracing requests"
                           : p.phase == Phase::kSnapshots ? "making snapshots"
                                                          : "writing the library";
        constexpr size_t kWidth = 24;
        size_t filled = p.total ? kWidth * std::min(p.done, p.total) / p.total : 0;
        double elapsed = seconds(now - start_);
        double in_phase = seconds(now - phase_start_);
        std::string eta =
            p.done > 0 && p.done < p.total
                ? " ETA " + clock(in_phase / double(p.done) * double(p.total - p.done))
                : "";
        std::string line =
            fmt::format("\r{}: [{}{}] {} {}/{}, {} snapshot{}, {} elapsed{}\x1b[K", kTool,
                        std::string(filled, '#'), std::string(kWidth - filled, '.'), what, p.done,
                        p.total, p.snapshots, p.snapshots == 1 ? "" : "s", clock(elapsed), eta);
        (void)std::fwrite(line.data(), 1, line.size(), stderr);
        shown_ = true;
    }
    void clear() {
        if (shown_)
            (void)std::fwrite("\r\x1b[K", 1, 4, stderr);
        shown_ = false;
    }
    double elapsed() const { return seconds(std::chrono::steady_clock::now() - start_); }

  private:
    static double seconds(std::chrono::steady_clock::duration d) {
        return std::chrono::duration<double>(d).count();
    }
    static std::string clock(double s) {
        auto t = static_cast<long>(s + 0.5);
        return fmt::format("{}:{:02}", t / 60, t % 60);
    }
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point phase_start_ = start_, last_{};
    library::BuildProgress::Phase phase_ = library::BuildProgress::Phase::kBase;
    bool shown_ = false;
};

// The summary at the end of a library build: one line, then a table of the
// snapshots (or one JSON object with --json).
void print_summary(const library::BuildReport& r, const std::string& output, bool json,
                   bool deterministic, double elapsed_s, const std::string& what) {
    // A library's size is its files' (thin snapshots and the page store); a
    // shard's snapshots are standalone files.
    uint64_t standalone = r.base_bytes;
    for (const auto& e : r.snapshots)
        standalone += e.bytes;
    const uint64_t bytes = r.shard ? standalone : r.library_bytes;
    std::string out;
    if (json) {
        nlohmann::ordered_json snaps = nlohmann::ordered_json::array();
        for (const auto& e : r.snapshots)
            snaps.push_back({{"file", e.file},
                             {"names", e.names},
                             {"warmup", e.warmup},
                             {"pages", e.pages},
                             {"bytes", e.bytes},
                             {"file_bytes", e.file_bytes},
                             {"store_added_bytes", e.store_added_bytes},
                             {"base_us", e.base_us},
                             {"snapshot_us", e.snapshot_us},
                             {"benefit_us", e.base_us - e.snapshot_us},
                             {"segments_saved", e.segments_saved}});
        out = nlohmann::ordered_json{{"tool", kTool},
                                     {"output", output},
                                     {"kind", what},
                                     {"snapshots", r.snapshots.size()},
                                     {"bytes", bytes},
                                     {"standalone_bytes", standalone},
                                     {"store", r.store},
                                     {"store_bytes", r.store_bytes},
                                     {"store_pages", r.store_pages},
                                     {"requests_traced", r.requests_traced},
                                     {"requests_failed", r.requests_failed},
                                     {"routes", r.routes},
                                     {"elapsed_s", elapsed_s},
                                     {"dropped", r.dropped},
                                     {"snapshot_list", snaps}}
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
              "\n";
    } else {
        out = fmt::format("{}: wrote {} {}: base + {} snapshots, {} bytes; {} requests traced, {} "
                          "failed; {:.1f} s\n",
                          kTool, what, output, r.snapshots.size(), bytes, r.requests_traced,
                          r.requests_failed, elapsed_s);
        if (!r.store.empty())
            out += fmt::format("  {} bytes as standalone files; page store {}: {} pages, {} bytes "
                               "({:.1f}% of the standalone size saved)\n",
                               standalone, r.store, r.store_pages, r.store_bytes,
                               100.0 * (double(standalone) - double(bytes)) /
                                   double(std::max<uint64_t>(1, standalone)));
        if (!r.snapshots.empty()) {
            // bytes: standalone; stored: what its pages added to the page store.
            out += fmt::format("  {:<10} {:>6} {:>10} {:>10} {:>12} {:>7}  {}\n", "file", "pages",
                               "bytes", "stored", "benefit_us", "saved", "segments");
            for (const auto& e : r.snapshots) {
                std::string names = fmt::format("{}", fmt::join(e.names, " "));
                if (names.size() > 60)
                    names = names.substr(0, 57) + "...";
                out += fmt::format(
                    "  {:<10} {:>6} {:>10} {:>10} {:>12.0f} {:>7}  {}\n", e.file, e.pages, e.bytes,
                    r.store.empty() ? std::string("-") : std::to_string(e.store_added_bytes),
                    e.base_us - e.snapshot_us, e.segments_saved, names);
            }
            if (deterministic)
                out += "  (timings are host measurements: not part of the byte-stable files)\n";
        }
    }
    (void)std::fwrite(out.data(), 1, out.size(), stderr);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Make snapshots of a function running in a presnap KVM guest.", kTool};
    runtime::ProgramSpec spec;
    bool base = false, compress = false, version = false, quiet = false, verbose = false,
         json = false;
    std::string after, warmup, output, responses, map_file, requests_file;
    size_t max_snapshots = 64;
    int jobs = 1;
    std::string max_bytes, shard, history;
    std::vector<std::string> combine;
    tools::GuestOptions guest;
    std::vector<std::string> from, program;
    app.add_flag("--base", base,
                 "boot PROGRAM, run the --warmup requests, and write a full snapshot at the "
                 "next wait point");
    app.add_option("--after", after,
                   "restore --from, run the requests in FILE (- for stdin), and write a diff "
                   "snapshot at the next wait point")
        ->option_text("FILE");
    app.add_option("--map", map_file,
                   "library mode: the probability map of PROGRAM (pea-analyze --elf); -o is then "
                   "the library directory")
        ->option_text("PMAP");
    app.add_option("--requests", requests_file,
                   "library mode: sample requests, traced from the base to choose warm-ups")
        ->option_text("FILE");
    app.add_option("--max-snapshots", max_snapshots,
                   "library mode: at most N diff snapshots (default 64)")
        ->option_text("N");
    app.add_option("--max-bytes", max_bytes,
                   "library mode: at most SIZE of diff snapshot files in all (default no limit)")
        ->option_text("SIZE");
    app.add_option("-j,--jobs", jobs,
                   "library mode: run N Sessions in parallel threads (default 1)")
        ->option_text("N")
        ->check(CLI::Range(1, 64));
    app.add_option("--shard", shard,
                   "library mode: build shard I of N (1-based) into -o, for --combine; needs "
                   "--deterministic")
        ->option_text("I/N");
    app.add_option("--combine", combine,
                   "join the shards of one --deterministic build into the library -o, "
                   "byte-identical to a build in one go")
        ->option_text("SHARD...");
    app.add_option("--history", history,
                   "library mode: take the sample requests and their traces from this history "
                   "file (snaprun --trace) instead of tracing --requests")
        ->option_text("FILE");
    app.add_option("--from", from, "the snapshot to start from: a full one, then diffs over it")
        ->option_text("SNAPSHOT");
    app.add_option("-o,--output", output, "the snapshot file to write (- for stdout)")
        ->option_text("FILE");
    app.add_option("--warmup", warmup,
                   "requests to run before a base snapshot, - for stdin (default none)")
        ->option_text("FILE");
    app.add_option("--responses", responses,
                   "write the program's responses while the snapshot is made here, - for stdout "
                   "(default none)")
        ->option_text("FILE");
    app.add_flag("--compress", compress, "store page data zstd-compressed instead of raw");
    guest.add_to(app);
    app.add_flag("--json", json, "print the summary as one JSON object on stderr");
    app.add_flag("-q,--quiet", quiet, "do not print warnings nor the summary");
    app.add_flag("-v,--verbose", verbose, "also say what is done, step by step, on stderr");
    app.add_flag("--version", version, "print the version and exit");
    app.add_option("program", program, "the program and its arguments (with --base)")
        ->option_text("PROGRAM [ARGS...]");
    app.positionals_at_end();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return diag.write_stdout(app.help()) ? 0 : kExitFailure;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return kExitUsage;
    }
    if (version) {
        const bool printed = diag.print_version(fmt::format(
            "writes snapshot format {}.{}", snapshot::kMajorVersion, snapshot::kMinorVersion));
        return printed ? 0 : kExitFailure;
    }
    // Checked here, not by the parser, so that an unknown option is
    // reported as such first.
    if (output.empty()) {
        diag.usage_error("--output is required");
        return kExitUsage;
    }
    if (quiet && verbose) {
        diag.usage_error("give at most one of -q and -v");
        return kExitUsage;
    }
    {
        int readers = (warmup == "-") + (after == "-") +
                      int(std::count(from.begin(), from.end(), std::string("-")));
        if (readers > 1) {
            diag.usage_error("standard input (-) can be read only once");
            return kExitUsage;
        }
        if (output == "-" && ::isatty(1)) { // as zstd: binary data is not for a terminal
            diag.usage_error("not writing a snapshot to a terminal (-o -)");
            diag.note("redirect standard output, or give -o FILE");
            return kExitUsage;
        }
        if (output == "-" && responses == "-") {
            diag.usage_error("-o - and --responses - cannot share standard output");
            return kExitUsage;
        }
    }
    if (!combine.empty()) {
        if (base || !after.empty() || !map_file.empty() || !program.empty() || !shard.empty()) {
            diag.usage_error("--combine takes shard directories and -o only");
            return kExitUsage;
        }
        if (output == "-") {
            diag.usage_error("--combine writes a directory: -o - cannot be one");
            return kExitUsage;
        }
        ProgressBar clock;
        auto report = library::combine_shards(combine, output, [&](const std::string& m) {
            if (verbose)
                diag.info(m);
        });
        if (!report) {
            diag.error(report.error().describe());
            return kExitFailure;
        }
        if (!quiet) {
            for (const auto& d : report->dropped)
                diag.note("no snapshot for " + d);
            print_summary(*report, output, json, true, clock.elapsed(), "library");
        }
        return 0;
    }
    bool library = !map_file.empty();
    if (library) {
        if (base || !after.empty() || (requests_file.empty() == history.empty()) ||
            program.empty()) {
            diag.error("library mode needs --map, one of --requests and --history, and PROGRAM, "
                       "and no --base or --after");
            return kExitUsage;
        }
        if (output == "-") {
            diag.usage_error("library mode writes a directory: -o - cannot be one");
            return kExitUsage;
        }
        if (!guest.apply(spec, diag))
            return kExitUsage;
        library::BuildOptions bo;
        bo.program = spec;
        bo.program.program = program[0];
        bo.program.args.assign(program.begin() + 1, program.end());
        guest.apply(bo.session);
        bo.session.warn = [](const std::string& m) { diag.warning(m); };
        bo.map_path = map_file;
        bo.max_snapshots = max_snapshots;
        bo.jobs = jobs;
        bo.deterministic = guest.deterministic;
        bo.history_path = history;
        if (!shard.empty()) {
            unsigned i = 0, n = 0;
            char end = 0;
            if (std::sscanf(shard.c_str(), "%u/%u%c", &i, &n, &end) != 2 || i == 0 || n == 0 ||
                i > n || n > 4096) {
                diag.usage_error(fmt::format("--shard '{}': expected I/N with 1 <= I <= N", shard));
                return kExitUsage;
            }
            if (!guest.deterministic) {
                diag.usage_error("--shard needs --deterministic (every shard must make the same "
                                 "choices for --combine)");
                return kExitUsage;
            }
            bo.shard = i;
            bo.shards = n;
        }
        if (!max_bytes.empty()) {
            auto mb = parse_size(max_bytes);
            if (!mb) {
                diag.error(fmt::format("bad size '{}'", max_bytes));
                return kExitUsage;
            }
            bo.max_bytes = *mb;
        }
        for (auto [path, lines] : {std::pair{requests_file, &bo.requests}, {warmup, &bo.warmup}}) {
            if (path.empty())
                continue;
            std::string text, why;
            if (!tools::read_input(path, text, why)) {
                diag.error(fmt::format("{}: {}", path, why));
                return kExitFailure;
            }
            size_t start = 0;
            while (start < text.size()) {
                size_t nl = text.find('\n', start);
                lines->push_back(text.substr(start, nl == std::string::npos ? nl : nl - start));
                start = nl == std::string::npos ? text.size() : nl + 1;
            }
        }
        // Step lines with -v; a progress bar when stderr is a terminal.
        ProgressBar bar;
        const bool draw_bar = !quiet && !verbose && ::isatty(2);
        if (verbose)
            bo.progress = [](const std::string& m) {
                std::string line = fmt::format("{}: {}\n", kTool, m);
                (void)std::fwrite(line.data(), 1, line.size(), stderr);
            };
        if (draw_bar)
            bo.on_progress = [&bar](const library::BuildProgress& p) { bar.draw(p); };
        if (auto s = vmm::kvm_available(); !s) {
            diag.error(s.error().describe());
            return kExitFailure;
        }
        auto report = library::build_library(bo, output);
        bar.clear();
        if (!report) {
            diag.error(report.error().describe());
            return kExitFailure;
        }
        if (!quiet) {
            for (const auto& d : report->dropped)
                diag.note("no snapshot for " + d);
            if (report->history_skipped)
                diag.note(fmt::format("{}: {} requests not used (truncated, or no \"failed\" key)",
                                      history, report->history_skipped));
            print_summary(*report, output, json, bo.deterministic, bar.elapsed(),
                          bo.shards ? fmt::format("shard {}/{}", bo.shard, bo.shards) : "library");
        }
        return 0;
    }
    if (base == !after.empty()) {
        diag.error("give exactly one of --base and --after (or --map for a library)");
        return kExitUsage;
    }
    if (base && program.empty()) {
        diag.error("--base needs a PROGRAM");
        return kExitUsage;
    }
    if (!base && (from.empty() || !program.empty())) {
        diag.error("--after needs --from SNAPSHOT and no PROGRAM");
        return kExitUsage;
    }
    if (!guest.apply(spec, diag))
        return kExitUsage;
    if (!base)
        for (const char* opt : {"--mem", "--rootfs", "--warmup"})
            if (app.count(opt)) {
                diag.error(
                    fmt::format("{} has no effect with --after (the snapshot fixes it)", opt));
                return kExitUsage;
            }
    diag.set_quiet(quiet);
    diag.set_verbose(verbose);
    runtime::SessionOptions opt;
    guest.apply(opt);
    opt.track_dirty = true;
    opt.warn = [](const std::string& m) { diag.warning(m); };

    std::string input_path = base ? warmup : after;
    std::string input;
    if (!input_path.empty()) {
        std::string why;
        if (!tools::read_input(input_path, input, why)) {
            diag.error(fmt::format("{}: {}", input_path, why));
            return kExitFailure;
        }
    }
    int out_fd = -1;
    if (!responses.empty()) {
        out_fd = responses == "-"
                     ? ::fcntl(1, F_DUPFD_CLOEXEC, 0)
                     : ::open(responses.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0) {
            diag.error(fmt::format("{}: cannot open: {}", responses, std::strerror(errno)));
            return kExitFailure;
        }
    }
    if (auto s = vmm::kvm_available(); !s) {
        diag.error(s.error().describe());
        return kExitFailure;
    }

    std::vector<snapshot::SnapshotFile> files;
    Result<std::unique_ptr<runtime::Session>> session;
    if (base) {
        spec.program = program[0];
        spec.args.assign(program.begin() + 1, program.end());
        diag.info(fmt::format("booting {}", spec.program));
        session = snapshot::boot_for_capture(spec, opt);
    } else {
        diag.info(fmt::format("restoring {}", fmt::join(from, " ")));
        auto chain = tools::open_snapshot_chain(from);
        if (!chain) {
            diag.error(chain.error().describe());
            return kExitFailure;
        }
        files = std::move(*chain);
        auto links = snapshot::links_of(files);
        snapshot::RestoreOptions ro;
        ro.session = opt;
        ro.record_working_set = true;
        session = snapshot::restore(links, ro);
    }
    if (!session) {
        diag.error(session.error().describe());
        return kExitFailure;
    }
    runtime::MemoryRequestSource in(input);
    runtime::FdResponseSink fd_sink(out_fd, 2);
    runtime::NullResponseSink null_sink;
    runtime::ResponseSink& sink = out_fd >= 0 ? static_cast<runtime::ResponseSink&>(fd_sink)
                                              : static_cast<runtime::ResponseSink&>(null_sink);
    diag.info(fmt::format("running {} bytes of requests from {}", input.size(),
                          input_path.empty() ? "nowhere" : input_path));
    auto o = (*session)->run(in, sink, runtime::AtEof::kStop);
    if (out_fd >= 0)
        ::close(out_fd);
    if (!o) {
        diag.error(o.error().describe());
        return kExitFailure;
    }
    if (o->kind != runtime::RunOutcome::Kind::kWaiting) {
        diag.error(o->message.empty()
                       ? fmt::format("the program exited with status {} before its next wait "
                                     "point; no snapshot written",
                                     o->status)
                       : o->message + "; no snapshot written");
        return kExitFailure;
    }
    auto cap = snapshot::capture(**session);
    if (!cap) {
        diag.error(cap.error().describe());
        return kExitFailure;
    }
    uint64_t working_set = cap->touched.size();
    if (!base && o->requests > 0) {
        // The warm-up's working set includes its initialisation; what a later
        // request touches is far less. Replay the last warm-up request once
        // on the new diff (kept in memory), in a fresh VM, and keep what that
        // run touched.
        diag.info("replaying the last request on the new diff for its working set");
        auto diff = snapshot::to_memory(cap->image);
        if (!diff) {
            diag.error(diff.error().describe() + "; no snapshot written");
            return kExitFailure;
        }
        auto links = snapshot::links_of(files);
        links.push_back(&*diff);
        runtime::SessionOptions ropt = opt;
        ropt.track_dirty = false;
        ropt.warn = nullptr; // already reported by the first run
        auto r = snapshot::replay(links, {last_request(input)}, ropt);
        if (!r) {
            diag.error(r.error().describe() + "; no snapshot written");
            return kExitFailure;
        }
        if (r->outcome.kind != runtime::RunOutcome::Kind::kWaiting) {
            diag.error(fmt::format("replaying the last request for the working set: {}; no "
                                   "snapshot written",
                                   r->outcome.message.empty() ? "the program exited"
                                                              : r->outcome.message));
            return kExitFailure;
        }
        snapshot::set_working_set(*cap, r->touched);
        working_set = r->touched.size();
    }
    snapshot::WriteOptions wo;
    wo.encoding = compress ? snapshot::PageEncoding::kZstd : snapshot::PageEncoding::kRaw;
    auto sum = snapshot::write_snapshot(output, cap->image, wo);
    if (!sum) {
        if (output == "-" && tools::Diag::is_broken_pipe(sum.error().message))
            return 0; // the reader has gone: quiet, as cat
        diag.error(sum.error().describe());
        return kExitFailure;
    }
    if (!quiet) {
        std::string line;
        if (json) {
            nlohmann::ordered_json j = {{"tool", kTool},
                                        {"output", output},
                                        {"bytes", sum->file_size},
                                        {"pages_stored", sum->pages_stored},
                                        {"requests", o->requests},
                                        {"pages_dirtied", cap->pages_dirtied},
                                        {"working_set_pages", working_set}};
            // A file name may be any bytes, not only UTF-8.
            line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        } else {
            line = fmt::format("{}: wrote {} ({} bytes, {} pages stored; {} requests run, {} "
                               "pages dirtied, {} in the working set)\n",
                               kTool, output, sum->file_size, sum->pages_stored, o->requests,
                               cap->pages_dirtied, working_set);
        }
        (void)std::fwrite(line.data(), 1, line.size(), stderr);
    }
    return 0;
}
