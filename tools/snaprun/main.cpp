// snaprun: serve requests from a function running in a presnap KVM guest.
// A thin main: parse options, boot or restore a Session, run it, report.
// See snaprun(1).
#include "presnap/analysis/pmap.h"
#include "presnap/runtime/history_recorder.h"
#include "presnap/runtime/session.h"
#include "presnap/runtime/trace.h"
#include "presnap/size.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/version.h"
#include "presnap/vmm/kvm.h"

#include "../common/diag.h"
#include "../common/guest_options.h"
#include "serve.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace presnap;

namespace {

constexpr const char* kTool = "snaprun";
tools::Diag diag(kTool);

double median(std::vector<double> v) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Responses to stdout; with --stats, each request's timing kept for the
// summary (only then: a server's memory must not grow with requests).
class StatsSink final : public runtime::FdResponseSink {
  public:
    StatsSink(bool keep) : FdResponseSink(1, 2), keep_(keep) {}
    Status end_response(const runtime::RequestInfo& info) override {
        if (keep_ && info.index > 0)
            requests.push_back(info);
        return {};
    }
    std::vector<runtime::RequestInfo> requests;

  private:
    bool keep_;
};

// --trace: appends whole lines to the history file, one write(2) each, so
// that a serving instance's history can be read while it grows.
Status write_line(int fd, const std::string& line) {
    for (size_t done = 0; done < line.size();) {
        ssize_t n = ::write(fd, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return make_errno_error(Errc::kIo, errno, "cannot write");
        done += size_t(n);
    }
    return {};
}

void print_stats(const runtime::RunStats& st, const std::vector<runtime::RequestInfo>& reqs,
                 bool json) {
    std::vector<double> us;
    for (const auto& r : reqs)
        us.push_back(r.us);
    if (json) {
        // One object per completed request, then the summary: JSON Lines.
        std::string out;
        for (const auto& r : reqs)
            out += nlohmann::ordered_json{{"request", r.index}, {"us", r.us}, {"exits", r.exits}}
                       .dump() +
                   "\n";
        nlohmann::ordered_json sum = {{"summary", true},
                                      {"setup_us", st.setup_us},
                                      {"first_exit_us", st.first_exit_us},
                                      {"startup_us", st.startup_us},
                                      {"requests", st.requests},
                                      {"first_request_us", st.first_request_us},
                                      {"median_request_us", median(us)},
                                      {"max_exits_per_request", st.max_request_exits},
                                      {"exits", st.exits},
                                      {"restore_us", st.restore_us},
                                      {"vm_create_us", st.vm_create_us},
                                      {"prefetched_pages", st.prefetched_pages},
                                      {"first_request_faults", st.first_request_faults}};
        out += sum.dump() + "\n";
        (void)std::fwrite(out.data(), 1, out.size(), stderr);
        return;
    }
    std::string line = fmt::format(
        "{}: stats: setup_us={:.0f} first_exit_us={:.0f} startup_us={:.0f} requests={} "
        "first_request_us={:.0f} median_request_us={:.1f} max_exits_per_request={} exits={} "
        "restore_us={:.0f} vm_create_us={:.0f} prefetched_pages={} first_request_faults={}\n",
        kTool, st.setup_us, st.first_exit_us, st.startup_us, st.requests, st.first_request_us,
        median(us), st.max_request_exits, st.exits, st.restore_us, st.vm_create_us,
        st.prefetched_pages, st.first_request_faults);
    // Numbered per run, from 1, like snaprun's messages.
    for (size_t i = 0; i < reqs.size(); i++)
        line += fmt::format("{}: stats: request {} us={:.1f} exits={}\n", kTool, i + 1, reqs[i].us,
                            reqs[i].exits);
    (void)std::fwrite(line.data(), 1, line.size(), stderr);
}

// Where snaprun's own arguments end: after `--cold PROGRAM` (PROGRAM is the
// first argument after --cold that is not an option or an option's value,
// so `--cold --rootfs DIR PROGRAM` works), or at `--`. The options are
// looked up in `app`, so a new option needs no change here. Returns the
// arguments for the parser, PROGRAM moved right after --cold, and the
// program's arguments.
struct Split {
    std::vector<std::string> own; // argv[0] first
    std::vector<std::string> program_args;
    bool separated = false; // `PROGRAM -- ARGS`: the user said where ARGS start
};
Split split_arguments(const CLI::App& app, int argc, char** argv) {
    Split out;
    out.own.emplace_back(argv[0]);
    size_t cold_at = 0; // index in `own` of a --cold still waiting for PROGRAM
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--") { // the end of snaprun's options; PROGRAM follows if still due
            ++i;
            if (cold_at && i < argc)
                out.own.insert(out.own.begin() + long(cold_at), argv[i++]);
            break;
        }
        if (a.size() > 1 && a[0] == '-') {
            std::string name = a.substr(0, a.find('='));
            bool has_value = name.size() != a.size();
            if (name == "--cold") {
                out.own.push_back(a);
                if (has_value) { // --cold=PROGRAM; a `--` right after it is dropped
                    ++i;
                    if (i < argc && std::string(argv[i]) == "--") {
                        out.separated = true;
                        ++i;
                    }
                    break;
                }
                cold_at = out.own.size();
                continue;
            }
            out.own.push_back(a);
            const CLI::Option* o = app.get_option_no_throw(name);
            if (o && o->get_items_expected_max() > 0 && !has_value && i + 1 < argc) // not a flag
                out.own.emplace_back(argv[++i]);
            continue;
        }
        if (cold_at) { // PROGRAM; a `--` right after it is dropped
            out.own.insert(out.own.begin() + long(cold_at), a);
            ++i;
            if (i < argc && std::string(argv[i]) == "--") {
                out.separated = true;
                ++i;
            }
            break;
        }
        out.own.push_back(a); // a SNAPSHOT
    }
    for (; i < argc; ++i)
        out.program_args.emplace_back(argv[i]);
    return out;
}

// A hint for each argument after PROGRAM that is one of snaprun's own
// options: it goes to the program, which is rarely what was meant.
void hint_misplaced_options(const CLI::App& app, const std::vector<std::string>& args) {
    for (const auto& a : args) {
        if (a.size() < 2 || a[0] != '-' || a == "--")
            continue;
        std::string name = a.substr(0, a.find('='));
        if (name == "--cold" || name == "-h" || name == "--help" || !app.get_option_no_throw(name))
            continue;
        diag.note(fmt::format("'{}' comes after PROGRAM, so it is passed to the program, not "
                              "to snaprun; put snaprun's options before --cold",
                              a));
    }
}

// Restored guest memory is mapped from the snapshot files. If one is
// truncated while in use, touching a page past its new end raises SIGBUS in
// the host: end with a clear message and snaprun's own status instead of a
// crash. (The library installs no handler; a server keeps sealed copies.)
void on_sigbus(int) {
    static const char msg[] = "snaprun: error: guest memory is no longer backed: a snapshot "
                              "file was truncated while in use (SIGBUS)\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(runtime::kExitHostError);
}

} // namespace

int main(int argc, char** argv) {
    struct sigaction sa {};
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, nullptr);

    CLI::App app{"Serve requests from a function running in a presnap KVM guest.\n"
                 "Requests are lines on stdin; responses go to stdout.",
                 kTool};
    runtime::ProgramSpec spec;
    std::string max_request = "64M", max_response = "64M";
    tools::GuestOptions guest;
    std::vector<std::string> env;
    bool stats = false, json = false, version = false, quiet = false, verbose = false,
         prefetch = false, verify_data = false, no_verify_data = false;
    std::vector<std::string> snapshots;
    tools::ServeArgs serve_args;
    std::string serve_dir, policy = "predicted", restore_mode = "ahead";
    bool no_watch = false, no_fallback = false;
    app.add_option("--serve", serve_dir,
                   "serving mode: answer every request from a fresh restore of a composite of "
                   "the snapshot library DIR (snaprun(1): Serving mode)")
        ->option_text("DIR");
    app.add_option("--socket", serve_args.socket,
                   "with --serve: take requests from clients of the Unix socket PATH instead of "
                   "standard input")
        ->option_text("PATH");
    app.add_option("--policy", policy,
                   "with --serve: how each request's snapshots are chosen: predicted, base, all, "
                   "oracle or fixed:ID[,ID...] (default predicted)")
        ->option_text("POLICY");
    app.add_option("--pool", serve_args.server.pool,
                   "with --serve: VMs kept ready, at most this many requests at once (default 4)")
        ->option_text("N")
        ->check(CLI::Range(size_t(1), size_t(1024)));
    app.add_option("--restore", restore_mode,
                   "with --serve: restore pooled VMs on the request's path without prefetch "
                   "(lazy) or with it (inline), or ahead of the request with prefetch (default "
                   "ahead)")
        ->option_text("MODE");
    app.add_option("--cache", serve_args.server.cache_entries,
                   "with --serve: composites kept in memory (default 64)")
        ->option_text("N")
        ->check(CLI::Range(size_t(1), size_t(1) << 20));
    app.add_flag("--no-fallback", no_fallback,
                 "with --serve: a request whose composite is not built yet waits while it is "
                 "built, instead of being served from its most valuable snapshot meanwhile");
    app.add_option("--max-clients", serve_args.max_clients,
                   "with --socket: clients served at once (default 64)")
        ->option_text("N")
        ->check(CLI::Range(size_t(1), size_t(1) << 16));
    app.add_flag("--no-watch", no_watch,
                 "with --serve: reload the library on SIGHUP only, not when its manifest "
                 "changes");
    app.add_option("snapshots", snapshots,
                   "restore SNAPSHOT (a full snapshot, then optional diffs over it) and serve "
                   "from it")
        ->option_text("SNAPSHOT [DIFF...]");
    app.add_option("--cold", spec.program,
                   "boot PROGRAM (a static x86-64 Linux executable) and serve from it; "
                   "arguments after PROGRAM are passed to it")
        ->option_text("PROGRAM [ARGS...]");
    guest.add_to(app);
    app.add_option("--env", env, "add NAME=VALUE to the program's environment (repeatable)")
        ->option_text("NAME=VALUE")
        ->expected(1)
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    app.add_option("--max-request", max_request, "longest request line accepted (default 64M)")
        ->option_text("SIZE");
    app.add_option("--max-response", max_response, "longest response allowed (default 64M)")
        ->option_text("SIZE");
    app.add_flag("--prefetch", prefetch,
                 "bring the snapshot's recorded working set into memory before the first request");
    app.add_flag("--verify-data", verify_data,
                 "check the page data run by run (naming a damaged page) instead of in one pass");
    app.add_flag("--no-verify-data", no_verify_data,
                 "do not check the page data (files verified before, e.g. by snapinfo)");
    std::string trace_file, map_file, error_prefix = "error";
    uint64_t trace_every = 1;
    bool trace_all = false;
    app.add_option("--trace", trace_file,
                   "write which segments of the --map each request runs, with its latency, "
                   "response size and failure, to FILE (presnap-history(5))")
        ->option_text("FILE");
    app.add_option("--map", map_file,
                   "the probability map --trace traces (pea-analyze --elf; with --serve, "
                   "default the library's map.pmap)")
        ->option_text("PMAP");
    app.add_option("--trace-every", trace_every,
                   "trace requests 1, N+1, 2N+1 ... only (default 1: every request)")
        ->option_text("N")
        ->check(CLI::Range(uint64_t(1), uint64_t(1) << 62));
    app.add_flag("--trace-all", trace_all,
                 "trace every segment of the map that has an address, not only functions, "
                 "warmable segments and route sites");
    app.add_option("--error-prefix", error_prefix,
                   "a traced response starting with TEXT counts as failed, '' for none "
                   "(default error)")
        ->option_text("TEXT");
    app.add_flag("--stats", stats, "print start-up and per-request timings to stderr");
    app.add_flag("--json", json, "with --stats: JSON lines, one per request, then a summary");
    app.add_flag("-q,--quiet", quiet, "do not print warnings nor hints");
    app.add_flag("-v,--verbose", verbose, "also say what is booted or restored, on stderr");
    app.add_flag("--version", version, "print the version and exit");

    Split split = split_arguments(app, argc, argv);
    std::vector<char*> own;
    for (auto& a : split.own)
        own.push_back(a.data());
    const std::vector<std::string>& program_args = split.program_args;
    try {
        app.parse(int(own.size()), own.data());
    } catch (const CLI::CallForHelp&) {
        return diag.write_stdout(app.help()) ? 0 : runtime::kExitHostError;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return runtime::kExitHostError;
    }
    if (version) {
        const bool printed = diag.print_version(fmt::format(
            "reads snapshot format {}.{}", snapshot::kMajorVersion, snapshot::kMinorVersion));
        return printed ? 0 : runtime::kExitHostError;
    }
    if (json && !stats) {
        diag.usage_error("--json goes with --stats");
        return runtime::kExitHostError;
    }
    if (quiet && verbose) {
        diag.usage_error("give at most one of -q and -v");
        return runtime::kExitHostError;
    }
    if (!quiet && !split.separated)
        hint_misplaced_options(app, program_args);
    for (const auto& f : snapshots)
        if (f == "-") {
            diag.usage_error("a SNAPSHOT cannot be - (standard input carries the requests)");
            diag.note("use a file, or a pipe given by name: snaprun <(cat base.snap)");
            return runtime::kExitHostError;
        }
    if (verify_data && no_verify_data) {
        diag.error("give at most one of --verify-data and --no-verify-data");
        return runtime::kExitHostError;
    }
    const bool serving = !serve_dir.empty();
    for (const char* o : {"--socket", "--policy", "--pool", "--restore", "--cache", "--no-fallback",
                          "--max-clients", "--no-watch"})
        if (!serving && app.count(o)) {
            diag.usage_error(fmt::format("{} goes with --serve", o));
            return runtime::kExitHostError;
        }
    if (serving && (!spec.program.empty() || !snapshots.empty())) {
        diag.usage_error("--serve takes no --cold PROGRAM nor SNAPSHOT (the library has them)");
        return runtime::kExitHostError;
    }
    if (serving)
        for (const char* o :
             {"--mem", "--rootfs", "--env", "--prefetch", "--deterministic", "--seed"})
            if (app.count(o)) {
                diag.usage_error(fmt::format("{} has no effect with --serve", o));
                return runtime::kExitHostError;
            }
    if (!serving && !spec.program.empty() && !snapshots.empty()) {
        diag.error("give either --cold PROGRAM or SNAPSHOT files, not both");
        return runtime::kExitHostError;
    }
    if (!snapshots.empty())
        for (const char* opt : {"--mem", "--rootfs", "--env"})
            if (app.count(opt)) {
                diag.error(fmt::format("{} has no effect when restoring a snapshot (memory, file "
                                       "tree and environment are part of it)",
                                       opt));
                return runtime::kExitHostError;
            }
    if (!serving && spec.program.empty() && snapshots.empty()) {
        diag.error("no function given (expected --cold PROGRAM or SNAPSHOT)");
        diag.note("see 'snaprun --help'");
        return runtime::kExitHostError;
    }
    if (!guest.apply(spec, diag))
        return runtime::kExitHostError;
    runtime::SessionOptions opt;
    guest.apply(opt);
    auto mreq = parse_size(max_request), mresp = parse_size(max_response);
    if (!mreq || !mresp || *mreq == 0 || *mresp == 0) {
        diag.error(
            fmt::format("bad size '{}' (expected a number with an optional K, M or G suffix)",
                        !mreq ? max_request : max_response));
        return runtime::kExitHostError;
    }
    opt.limits.max_request = *mreq;
    opt.limits.max_response = *mresp;
    spec.args = program_args;
    spec.env = env;
    for (const auto& e : env)
        if (e.find('=') == std::string::npos) {
            diag.error(fmt::format("bad --env '{}' (expected NAME=VALUE)", e));
            return runtime::kExitHostError;
        }
    diag.set_quiet(quiet);
    diag.set_verbose(verbose);
    opt.warn = [](const std::string& m) { diag.warning(m); };

    if (trace_file.empty() != map_file.empty() && !(serving && !trace_file.empty())) {
        diag.error(trace_file.empty() ? "--map is given without --trace"
                                      : "--trace needs the probability map (--map PMAP)");
        return runtime::kExitHostError;
    }
    for (const char* o : {"--trace-every", "--trace-all", "--error-prefix"})
        if (trace_file.empty() && app.count(o)) {
            diag.error(fmt::format("{} has no effect without --trace", o));
            return runtime::kExitHostError;
        }
    if (trace_file == "-") {
        diag.error("--trace cannot write to standard output: the responses go there");
        diag.note("name a file, or /dev/stderr");
        return runtime::kExitHostError;
    }

    if (auto s = vmm::kvm_available(); !s) {
        diag.error(s.error().describe());
        diag.note("snaprun needs read-write access to /dev/kvm");
        return runtime::kExitHostError;
    }
    if (serving) {
        auto& so = serve_args.server;
        so.library_dir = serve_dir;
        so.session = opt;
        so.watch = !no_watch;
        so.build_behind = !no_fallback;
        if (restore_mode == "lazy")
            so.prefetch = serve::Prefetch::kNone;
        else if (restore_mode == "inline")
            so.prefetch = serve::Prefetch::kInline;
        else if (restore_mode == "ahead")
            so.prefetch = serve::Prefetch::kAhead;
        else {
            diag.usage_error(
                fmt::format("bad --restore '{}' (expected lazy, inline or ahead)", restore_mode));
            return runtime::kExitHostError;
        }
        if (size_t c = policy.find(':'); c != std::string::npos) {
            so.policy_arg = policy.substr(c + 1);
            policy.resize(c);
            if (policy != "fixed" || so.policy_arg.empty()) {
                diag.usage_error("only fixed takes a snapshot list (fixed:ID[,ID...])");
                return runtime::kExitHostError;
            }
        } else if (policy == "fixed") {
            diag.usage_error("fixed needs its snapshots: --policy fixed:ID[,ID...]");
            return runtime::kExitHostError;
        }
        so.policy = policy;
        if (!trace_file.empty()) {
            so.trace_every = trace_every;
            so.map_path = map_file;
            so.trace_all = trace_all;
            so.error_prefix = error_prefix;
            serve_args.trace_file = trace_file;
        }
        so.on_stderr = [](std::string_view b) { (void)!::write(2, b.data(), b.size()); };
        serve_args.stats = stats;
        serve_args.json = json;
        return tools::serve_main(std::move(serve_args), diag);
    }
    auto t0 = std::chrono::steady_clock::now();
    std::vector<snapshot::SnapshotFile> files;
    Result<std::unique_ptr<runtime::Session>> session;
    if (snapshots.empty()) {
        diag.info(
            fmt::format("booting {} in {} bytes of guest memory", spec.program, spec.mem_size));
        session = runtime::Session::boot(spec, opt);
    } else {
        auto chain =
            snapshot::open_chain(snapshots, verify_data      ? snapshot::DataCheck::kFull
                                            : no_verify_data ? snapshot::DataCheck::kNone
                                                             : snapshot::DataCheck::kSection);
        if (!chain) {
            diag.error(chain.error().describe());
            return runtime::kExitHostError;
        }
        files = std::move(*chain);
        auto links = snapshot::links_of(files);
        for (const auto& f : files)
            diag.info(
                fmt::format("{}: {}", f.path(),
                            f.fd() < 0 ? "read into memory (a pipe): pages are copied" : "mapped"));
        snapshot::RestoreOptions ro;
        ro.session = opt;
        ro.prefetch = prefetch;
        session = snapshot::restore(links, ro);
        if (session) // the restore time includes opening and checking the files
            (*session)->stats().restore_us =
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                    .count();
    }
    if (!session) {
        diag.error(session.error().describe());
        return runtime::kExitHostError;
    }
    runtime::FdRequestSource in(0);
    StatsSink out(stats);
    int history_fd = -1;
    std::optional<runtime::TracePlan> plan;
    std::optional<runtime::HistoryRecorder> history;
    if (!trace_file.empty()) {
        // The map's addresses are those of one executable: the one booted,
        // or the one the snapshot was made from.
        auto exe = files.empty() ? Result<std::string>(spec.program)
                                 : snapshot::recorded_executable(files.front());
        if (exe) {
            if (auto p = runtime::plan_trace(map_file, *exe, trace_all))
                plan = std::move(*p);
            else
                exe = std::unexpected(p.error());
        }
        if (!exe) {
            diag.error(exe.error().describe());
            return runtime::kExitHostError;
        }
        if (auto s = (*session)->set_trace({plan->points, trace_every}); !s) {
            diag.error(s.error().describe());
            return runtime::kExitHostError;
        }
        history_fd = ::open(trace_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (history_fd < 0 || !write_line(history_fd, plan->preamble)) {
            diag.error(fmt::format("{}: cannot write: {}", trace_file, std::strerror(errno)));
            return runtime::kExitHostError;
        }
        runtime::HistoryRecorderOptions ho;
        ho.map = &plan->map;
        ho.snapshot = snapshots.empty() ? "" : snapshots.back();
        ho.error_prefix = error_prefix;
        history.emplace(in, out, std::move(ho), [&](const std::string& line) -> Status {
            if (auto s = write_line(history_fd, line); !s)
                return std::unexpected(s.error().with_context(trace_file));
            return {};
        });
    }
    auto outcome =
        history ? (*session)->run(history->source(), history->sink(), runtime::AtEof::kDeliver)
                : (*session)->run(in, out, runtime::AtEof::kDeliver);
    if (history_fd >= 0 && ::close(history_fd) != 0) {
        diag.error(fmt::format("{}: cannot write: {}", trace_file, std::strerror(errno)));
        return runtime::kExitHostError;
    }
    if (!outcome) {
        diag.error(outcome.error().describe());
        return runtime::kExitHostError;
    }
    if (stats)
        print_stats((*session)->stats(), out.requests, json);
    const auto& o = *outcome;
    if (!o.message.empty()) {
        if (o.kind == runtime::RunOutcome::Kind::kSignaled &&
            o.message.find("killed itself") != std::string::npos)
            diag.note(o.message);
        else
            diag.error(o.message);
    }
    return runtime::exit_code_for(o);
}
