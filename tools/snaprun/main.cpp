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

void print_stats(const runtime::RunStats& st, const std::vector<runtime::RequestInfo>& reqs) {
    std::vector<double> us;
    for (const auto& r : reqs)
        us.push_back(r.us);
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

    // Everything after `--cold PROGRAM` belongs to the program.
    int split = argc;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--") {
            split = i;
            break;
        }
        if (a == "--cold" && i + 1 < argc) {
            split = i + 2;
            break;
        }
        if (a.rfind("--cold=", 0) == 0) {
            split = i + 1;
            break;
        }
    }
    std::vector<std::string> program_args;
    for (int i = split; i < argc; i++)
        if (!(i == split && std::string(argv[i]) == "--"))
            program_args.emplace_back(argv[i]);

    CLI::App app{"Serve requests from a function running in a presnap KVM guest.\n"
                 "Requests are lines on stdin; responses go to stdout.",
                 kTool};
    runtime::ProgramSpec spec;
    std::string max_request = "64M", max_response = "64M";
    tools::GuestOptions guest;
    std::vector<std::string> env;
    bool stats = false, version = false, quiet = false, prefetch = false, verify_data = false,
         no_verify_data = false;
    std::vector<std::string> snapshots;
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
    app.add_option("--map", map_file, "the probability map --trace traces (pea-analyze --elf)")
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
    app.add_flag("-q,--quiet", quiet, "do not print warnings");
    app.add_flag("--version", version, "print the version and exit");

    try {
        app.parse(split < argc ? split : argc, argv);
    } catch (const CLI::CallForHelp&) {
        fmt::print("{}", app.help());
        return 0;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return runtime::kExitHostError;
    }
    if (version) {
        fmt::print("snaprun (presnap) {}\n", kVersion);
        return 0;
    }
    if (verify_data && no_verify_data) {
        diag.error("give at most one of --verify-data and --no-verify-data");
        return runtime::kExitHostError;
    }
    if (!spec.program.empty() && !snapshots.empty()) {
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
    if (spec.program.empty() && snapshots.empty()) {
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
    opt.warn = [](const std::string& m) { diag.warning(m); };

    if (trace_file.empty() != map_file.empty()) {
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
    auto t0 = std::chrono::steady_clock::now();
    std::vector<snapshot::SnapshotFile> files;
    Result<std::unique_ptr<runtime::Session>> session;
    if (snapshots.empty()) {
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
        if (exe)
            if (auto p = runtime::plan_trace(map_file, *exe, trace_all))
                plan = std::move(*p);
            else
                exe = std::unexpected(p.error());
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
        print_stats((*session)->stats(), out.requests);
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
