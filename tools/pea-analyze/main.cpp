// pea-analyze: LLVM bitcode (+ executable, history, profile) to a probability
// map. Parses options, calls presnap::analysis::analyze, reports. The
// options and exit codes are documented in man/pea-analyze.1.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <unistd.h>

#include "presnap/output_file.h"
#include "presnap/version.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "presnap/analysis/analyze.h"
#include "presnap/analysis/pmap.h"

#include "../common/diag.h"

namespace {

// The tools' common 0, 1, 2 (tools/common/diag.h), then pea-analyze's own.
using presnap::tools::kExitOk;
using presnap::tools::kExitUsage;
constexpr int kExitInput = presnap::tools::kExitFailure; // an input is unreadable, invalid...
constexpr int kExitOutput = 3;                           // the output could not be written

presnap::tools::Diag diag("pea-analyze");
void error(const std::string& what) {
    diag.error(what);
}
void warning(const std::string& what) {
    diag.warning(what);
}
void note(const std::string& what) {
    diag.note(what);
}

// Writes to a temporary name in the same directory, flushes, renames: a
// crash never leaves a half-written map under the final name.
bool write_atomically(const std::string& path, const std::string& data, std::string& why) {
    if (presnap::output_kind(path) == presnap::OutputKind::kSpecial) {
        // /dev/null, a FIFO ...: written in place (a rename would replace the node).
        FILE* f = std::fopen(path.c_str(), "w");
        if (!f || std::fwrite(data.data(), 1, data.size(), f) != data.size() ||
            std::fclose(f) != 0) {
            why = std::strerror(errno);
            return false;
        }
        return true;
    }
    if (path == "-") {
        if (diag.write_stdout(data)) // a closed pipe ends the tool quietly
            return true;
        why.clear(); // already reported
        return false;
    }
    std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        why = std::strerror(errno);
        return false;
    }
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            why = std::strerror(errno);
            ::close(fd);
            ::unlink(tmp.c_str());
            return false;
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        why = std::strerror(errno);
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

std::string hint_for(const presnap::Error& e) {
    if (e.message.find("not valid LLVM IR") != std::string::npos)
        return "make analysis bitcode with: clang-14 -O1 -Xclang -disable-llvm-passes -g "
               "-emit-llvm -c FILE.c";
    if (e.message.find("does not match the bitcode") != std::string::npos &&
        e.message.find("profile") == std::string::npos)
        return "--elf takes the executable built with -g from the same sources as the bitcode";
    if (e.message.find("no DWARF") != std::string::npos)
        return "rebuild the executable with -g";
    return "";
}

} // namespace

int main(int argc, char** argv) {
    presnap::analysis::AnalyzeOptions o;
    std::string output = "-";
    bool json = false, quiet = false, verbose = false;
    std::string elf, history, profile, explain;
    std::vector<std::string> entries;

    CLI::App app{"pea-analyze: LLVM static analysis and execution history into a probability map "
                 "(presnap-pmap(5))",
                 "pea-analyze"};
    app.set_help_flag("-h,--help", "print this help and exit");
    bool version = false;
    app.add_flag("--version", version, "print the version and the formats this reads and writes");
    app.add_option("INPUT", o.inputs,
                   "LLVM 14 bitcode or textual IR files, linked into one module (- for stdin)")
        ->type_name("FILE");
    app.add_option("-o,--output", output, "write the map to FILE (default: -, stdout)")
        ->type_name("FILE");
    app.add_flag("--json", json, "write the JSON form instead of the text form");
    app.add_option("--elf", elf, "resolve segments to addresses in PROGRAM (built with -g)")
        ->type_name("PROGRAM");
    app.add_option("--entry", entries, "another entry point besides main (repeatable)")
        ->type_name("NAME");
    app.add_option("--history", history,
                   "execution history (presnap-history(5)) to learn from, - for stdin")
        ->type_name("FILE");
    app.add_flag("--strict", o.strict, "fail on the first malformed history line");
    app.add_option("--profile", profile, "LLVM instrumented profile (.profdata)")
        ->type_name("FILE");
    app.add_option("--profile-requests", o.profile_requests,
                   "number of requests the profiled run served (default: 1)")
        ->type_name("N")
        ->check(CLI::PositiveNumber);
    app.add_option("--prior-strength", o.prior_strength,
                   "weight of the static estimate, in requests (default: 10)")
        ->type_name("S")
        ->check(CLI::PositiveNumber);
    app.add_option("--explain", explain,
                   "print why SEGMENT (a name or id) is warm: the external calls that may keep "
                   "state, and its other effects; the map goes only to -o")
        ->type_name("SEGMENT");
    app.add_flag("-q,--quiet", quiet, "print errors only");
    app.add_flag("-v,--verbose", verbose, "print a summary and notes to stderr");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return diag.write_stdout(app.help()) ? kExitOk : kExitOutput;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return kExitUsage;
    }
    if (version) {
        const bool printed =
            diag.print_version("writes probability map format 1 (text and JSON); reads history "
                               "format 1");
        return printed ? kExitOk : kExitOutput;
    }
    // Checked here, not by the parser, so that an unknown option is
    // reported as such first.
    if (o.inputs.empty()) {
        diag.usage_error("INPUT is required");
        return kExitUsage;
    }
    if (quiet && verbose) {
        diag.usage_error("give at most one of -q and -v");
        return kExitUsage;
    }
    if (std::count(o.inputs.begin(), o.inputs.end(), std::string("-")) + (history == "-") > 1) {
        diag.usage_error("standard input (-) can be read only once");
        return kExitUsage;
    }
    diag.set_quiet(quiet);
    if (!elf.empty())
        o.elf = elf;
    if (!history.empty())
        o.history = history;
    if (!profile.empty())
        o.profile = profile;
    if (!explain.empty())
        o.explain = explain;
    o.entries = entries;

    auto rep = presnap::analysis::analyze(o);
    if (!rep) {
        error(rep.error().describe());
        if (std::string h = hint_for(rep.error()); !h.empty())
            note(h);
        else if (o.strict && rep.error().context.starts_with(history + ":"))
            note("without --strict, malformed history lines are skipped and counted");
        return kExitInput;
    }
    if (rep->history_skipped && !quiet) {
        warning(fmt::format("{}: skipped {} malformed lines", history, rep->history_skipped));
        note(fmt::format("first: {}; use --strict to fail instead",
                         rep->history_problems.front().describe()));
    }
    if (verbose) {
        const auto& m = rep->map;
        note(fmt::format("{} functions, {} segments, evidence {}", rep->functions,
                         m.segments.size(), m.evidence));
        if (rep->warm_by_external)
            note(fmt::format("{} {} warm only through calls into code without bitcode "
                             "(--explain fn:NAME names them)",
                             rep->warm_by_external,
                             rep->warm_by_external == 1 ? "function is" : "functions are"));
        if (o.history)
            note(fmt::format("history: {} requests, {} matched by structural id, {} unknown "
                             "segment references",
                             rep->history_requests, rep->history_matched_by_sid,
                             rep->history_unknown));
        if (o.profile)
            note(fmt::format("profile: counts for {} functions", rep->profile_functions));
    }
    if (!quiet)
        for (const auto& n : rep->notes)
            note(n);
    if (rep->explanation) {
        std::string text = presnap::analysis::format_explanation(*rep->explanation);
        if (!diag.write_stdout(text))
            return kExitOutput;
        if (output == "-")
            return kExitOk;
    }
    std::string text = json ? presnap::analysis::format_pmap_json(rep->map)
                            : presnap::analysis::format_pmap_text(rep->map);
    std::string why;
    if (!write_atomically(output, text, why)) {
        if (!why.empty()) {
            why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
            error(fmt::format("{}: cannot write: {}", output, why));
        }
        return kExitOutput;
    }
    return kExitOk;
}
