// snapgen: make snapshots of a function. A thin main over libcore's monitor:
//   snapgen --base -o BASE.snap [--warmup FILE] PROGRAM [ARGS...]
//   snapgen --after REQUESTS --from BASE.snap [--from DIFF.snap...] -o OUT.snap
// The library mode (a probability map in, a library of diffs out) comes with
// its own issue; this is the mechanism. See snapgen(1).
#include "presnap/size.h"
#include "presnap/snapshot/edit.h"
#include "presnap/vmm/kvm.h"
#include "presnap/vmm/monitor.h"

#include "../common/diag.h"
#include "../common/guest_options.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace presnap;

namespace {

constexpr const char* kTool = "snapgen";
constexpr int kExitFailure = 1, kExitUsage = 2;
tools::Diag diag(kTool);
bool g_quiet = false;

// The last non-empty line of `path` (with its newline), or "".
std::string last_request(const std::string& path) {
    std::ifstream in(path);
    std::string line, last;
    while (std::getline(in, line))
        if (!line.empty())
            last = line;
    return last.empty() ? last : last + "\n";
}

// Restores `from` + the new diff, serves the last request of `requests` once,
// and writes the pages it touched into the diff's WORKING_SET. Returns their
// number.
Result<uint64_t> replay_working_set(const vmm::MonitorConfig& cfg, const std::string& requests,
                                    const std::string& diff) {
    std::string req = last_request(requests);
    char tmpl[] = "/tmp/snapgen-replay-XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd < 0)
        return make_errno_error(Errc::kIo, errno, "create a temporary file");
    ::unlink(tmpl);
    if (::write(fd, req.data(), req.size()) != ssize_t(req.size()) ||
        ::lseek(fd, 0, SEEK_SET) != 0) {
        ::close(fd);
        return make_errno_error(Errc::kIo, errno, "write a temporary file");
    }
    int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd < 0) {
        ::close(fd);
        return make_errno_error(Errc::kIo, errno, "open /dev/null");
    }
    vmm::MonitorConfig c = cfg;
    c.restore.push_back(diff);
    c.in_fd = fd;
    c.out_fd = null_fd; // the replay's response is not part of --responses
    c.snapshot_at_eof = vmm::SnapshotPlan{"", false}; // record only
    c.warn = [](const std::string&) {};               // already reported by the first run
    auto mon = vmm::Monitor::boot(c);
    if (!mon) {
        ::close(fd);
        ::close(null_fd);
        return std::unexpected(mon.error());
    }
    auto out = (*mon)->serve();
    ::close(fd);
    ::close(null_fd);
    if (!out)
        return std::unexpected(out.error());
    if (out->kind != vmm::RunOutcome::Kind::kSnapshotted)
        return make_error(Errc::kGuest, "replaying the last request for the working set: {}",
                          out->message.empty() ? "the program exited" : out->message);
    std::vector<snapshot::PageRange> ranges;
    for (uint64_t p : out->touched) {
        if (!ranges.empty() && ranges.back().first_page + ranges.back().page_count == p)
            ranges.back().page_count++;
        else
            ranges.push_back({p, 1});
    }
    snapshot::WriteOptions wo;
    wo.encoding = cfg.snapshot_at_eof->compress ? snapshot::PageEncoding::kZstd
                                                : snapshot::PageEncoding::kRaw;
    if (auto s = snapshot::replace_working_set(diff, ranges, wo); !s)
        return std::unexpected(s.error());
    return out->touched.size();
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Make snapshots of a function running in a presnap KVM guest.", kTool};
    vmm::MonitorConfig cfg;
    bool base = false, compress = false, version = false;
    std::string after, warmup, output, responses;
    tools::GuestOptions guest;
    std::vector<std::string> from, program;
    app.add_flag("--base", base,
                 "boot PROGRAM, run the --warmup requests, and write a full snapshot at the "
                 "next wait point");
    app.add_option("--after", after,
                   "restore --from, run the requests in FILE, and write a diff snapshot at the "
                   "next wait point")
        ->option_text("FILE");
    app.add_option("--from", from, "the snapshot to start from: a full one, then diffs over it")
        ->option_text("SNAPSHOT");
    app.add_option("-o,--output", output, "the snapshot file to write")
        ->option_text("FILE")
        ->required();
    app.add_option("--warmup", warmup, "requests to run before a base snapshot (default none)")
        ->option_text("FILE");
    app.add_option("--responses", responses,
                   "write the program's responses while the snapshot is made here (default none)")
        ->option_text("FILE");
    app.add_flag("--compress", compress, "store page data zstd-compressed instead of raw");
    guest.add_to(app, cfg);
    app.add_flag("-q,--quiet", g_quiet, "do not print warnings");
    app.add_flag("--version", version, "print the version and exit");
    app.add_option("program", program, "the program and its arguments (with --base)")
        ->option_text("PROGRAM [ARGS...]");
    app.positionals_at_end();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        fmt::print("{}", app.help());
        return 0;
    } catch (const CLI::ParseError& e) {
        if (version) {
            fmt::print("snapgen (presnap) 0.1.0\n");
            return 0;
        }
        diag.usage_error(e);
        return kExitUsage;
    }
    if (version) {
        fmt::print("snapgen (presnap) 0.1.0\n");
        return 0;
    }
    if (base == !after.empty()) {
        diag.error("give exactly one of --base and --after");
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
    if (!guest.apply(cfg, diag))
        return kExitUsage;
    if (!base)
        for (const char* opt : {"--mem", "--rootfs", "--warmup"})
            if (app.count(opt)) {
                diag.error(
                    fmt::format("{} has no effect with --after (the snapshot fixes it)", opt));
                return kExitUsage;
            }

    std::string input = base ? warmup : after;
    int in_fd = input.empty() ? ::open("/dev/null", O_RDONLY | O_CLOEXEC)
                              : ::open(input.c_str(), O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
        diag.error(fmt::format("{}: cannot open: {}", input, std::strerror(errno)));
        return kExitFailure;
    }
    int out_fd = responses.empty()
                     ? ::open("/dev/null", O_WRONLY | O_CLOEXEC)
                     : ::open(responses.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        diag.error(fmt::format("{}: cannot open: {}", responses, std::strerror(errno)));
        return kExitFailure;
    }
    cfg.in_fd = in_fd;
    cfg.out_fd = out_fd;
    if (base) {
        cfg.program = program[0];
        cfg.args.assign(program.begin() + 1, program.end());
    } else {
        cfg.restore = from;
        cfg.prefetch = false; // a new working set is recorded from scratch
    }
    cfg.snapshot_at_eof = vmm::SnapshotPlan{output, compress};
    diag.set_quiet(g_quiet);
    cfg.warn = [](const std::string& m) { diag.warning(m); };

    if (auto s = vmm::kvm_available(); !s) {
        diag.error(s.error().describe());
        return kExitFailure;
    }
    auto mon = vmm::Monitor::boot(cfg);
    if (!mon) {
        diag.error(mon.error().describe());
        return kExitFailure;
    }
    auto out = (*mon)->serve();
    if (!out) {
        diag.error(out.error().describe());
        return kExitFailure;
    }
    if (out->kind != vmm::RunOutcome::Kind::kSnapshotted) {
        diag.error(
            out->message.empty()
                ? fmt::format("the program exited with status {} before its next wait point; "
                              "no snapshot written",
                              out->status)
                : out->message + "; no snapshot written");
        return kExitFailure;
    }
    uint64_t working_set = out->pages_touched;
    if (!base && out->requests > 0) {
        // The warm-up's working set includes its initialisation; what a later
        // request touches is far less. Replay the last warm-up request once
        // on the new diff, in a fresh VM, and keep what that run touched.
        auto ws = replay_working_set(cfg, after, output);
        if (!ws) {
            ::unlink(output.c_str());
            diag.error(ws.error().describe() + "; no snapshot written");
            return kExitFailure;
        }
        working_set = *ws;
    }
    if (!g_quiet)
        fmt::print(stderr,
                   "{}: wrote {} ({} bytes, {} pages stored; {} requests run, {} pages dirtied, "
                   "{} in the working set)\n",
                   kTool, output, out->snapshot_bytes, out->snapshot_pages, out->requests,
                   out->pages_dirtied, working_set);
    return 0;
}
