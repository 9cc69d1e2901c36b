// snaprun: serve requests from a function running in a presnap KVM guest.
// A thin main: parse options, call libcore's monitor, report. See snaprun(1).
#include "presnap/size.h"
#include "presnap/vmm/kvm.h"
#include "presnap/vmm/monitor.h"

#include "../common/diag.h"
#include "../common/guest_options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <fmt/format.h>
#include <string>
#include <vector>

using namespace presnap;

namespace {

constexpr const char* kTool = "snaprun";
tools::Diag diag(kTool);
bool g_quiet = false;

double median(std::vector<double> v) {
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

} // namespace

int main(int argc, char** argv) {
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
    vmm::MonitorConfig cfg;
    std::string max_request = "64M", max_response = "64M";
    tools::GuestOptions guest;
    std::vector<std::string> env;
    bool stats = false, version = false;
    std::vector<std::string> snapshots;
    app.add_option("snapshots", snapshots,
                   "restore SNAPSHOT (a full snapshot, then optional diffs over it) and serve "
                   "from it")
        ->option_text("SNAPSHOT [DIFF...]");
    app.add_option("--cold", cfg.program,
                   "boot PROGRAM (a static x86-64 Linux executable) and serve from it; "
                   "arguments after PROGRAM are passed to it")
        ->option_text("PROGRAM [ARGS...]");
    guest.add_to(app, cfg);
    app.add_option("--env", env, "add NAME=VALUE to the program's environment (repeatable)")
        ->option_text("NAME=VALUE")
        ->expected(1)
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    app.add_option("--max-request", max_request, "longest request line accepted (default 64M)")
        ->option_text("SIZE");
    app.add_option("--max-response", max_response, "longest response allowed (default 64M)")
        ->option_text("SIZE");
    app.add_flag("--prefetch", cfg.prefetch,
                 "bring the snapshot's recorded working set into memory before the first request");
    app.add_flag("--verify-data", cfg.verify_data,
                 "check every page-data checksum of the snapshot files before restoring");
    app.add_flag("--stats", stats, "print start-up and per-request timings to stderr");
    app.add_flag("-q,--quiet", g_quiet, "do not print warnings");
    app.add_flag("--version", version, "print the version and exit");

    try {
        app.parse(split < argc ? split : argc, argv);
    } catch (const CLI::CallForHelp&) {
        fmt::print("{}", app.help());
        return 0;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return vmm::kExitHostError;
    }
    if (version) {
        fmt::print("snaprun (presnap) 0.1.0\n");
        return 0;
    }
    if (!cfg.program.empty() && !snapshots.empty()) {
        diag.error("give either --cold PROGRAM or SNAPSHOT files, not both");
        return vmm::kExitHostError;
    }
    cfg.restore = snapshots;
    if (!snapshots.empty())
        for (const char* opt : {"--mem", "--rootfs", "--env"})
            if (app.count(opt)) {
                diag.error(fmt::format("{} has no effect when restoring a snapshot (memory, file "
                                       "tree and environment are part of it)",
                                       opt));
                return vmm::kExitHostError;
            }
    if (cfg.program.empty() && snapshots.empty()) {
        diag.error("no function given (expected --cold PROGRAM or SNAPSHOT)");
        diag.note("see 'snaprun --help'");
        return vmm::kExitHostError;
    }
    using presnap::parse_size;
    if (!guest.apply(cfg, diag))
        return vmm::kExitHostError;
    auto mreq = parse_size(max_request), mresp = parse_size(max_response);
    if (!mreq || !mresp || *mreq == 0 || *mresp == 0) {
        diag.error(
            fmt::format("bad size '{}' (expected a number with an optional K, M or G suffix)",
                        !mreq ? max_request : max_response));
        return vmm::kExitHostError;
    }
    cfg.max_request = *mreq;
    cfg.max_response = *mresp;
    cfg.args = program_args;
    cfg.env = env;
    for (const auto& e : env)
        if (e.find('=') == std::string::npos) {
            diag.error(fmt::format("bad --env '{}' (expected NAME=VALUE)", e));
            return vmm::kExitHostError;
        }
    diag.set_quiet(g_quiet);
    cfg.warn = [](const std::string& m) { diag.warning(m); };

    if (auto s = vmm::kvm_available(); !s) {
        diag.error(s.error().describe());
        diag.note("snaprun needs read-write access to /dev/kvm");
        return vmm::kExitHostError;
    }
    auto mon = vmm::Monitor::boot(cfg);
    if (!mon) {
        diag.error(mon.error().describe());
        return vmm::kExitHostError;
    }
    auto out = (*mon)->serve();
    if (!out) {
        diag.error(out.error().describe());
        return vmm::kExitHostError;
    }
    const vmm::RunStats& st = (*mon)->stats();
    if (stats) {
        uint64_t max_exits = 0;
        for (auto e : st.request_exits)
            max_exits = std::max(max_exits, e);
        fmt::print(stderr,
                   "{}: stats: setup_us={:.0f} first_exit_us={:.0f} startup_us={:.0f} "
                   "requests={} first_request_us={:.0f} median_request_us={:.1f} "
                   "max_exits_per_request={} exits={} restore_us={:.0f} vm_create_us={:.0f} "
                   "prefetched_pages={} "
                   "first_request_faults={}\n",
                   kTool, st.setup_us, st.first_exit_us, st.startup_us, st.request_us.size(),
                   st.request_us.empty() ? 0.0 : st.request_us.front(), median(st.request_us),
                   max_exits, st.exits, st.restore_us, st.vm_create_us, st.prefetched_pages,
                   st.first_request_faults);
        for (size_t i = 0; i < st.request_us.size(); i++)
            fmt::print(stderr, "{}: stats: request {} us={:.1f} exits={}\n", kTool, i + 1,
                       st.request_us[i], st.request_exits[i]);
    }
    if (!out->message.empty()) {
        if (out->kind == vmm::RunOutcome::Kind::kSignaled &&
            out->message.find("killed itself") != std::string::npos)
            diag.note(out->message);
        else
            diag.error(out->message);
    }
    return vmm::exit_code_for(*out);
}
