// snapinfo: print what a snapshot file holds (man/snapinfo.1). A thin main:
// the reader validates, the library describes, this file reports.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "presnap/snapshot/describe.h"
#include "presnap/snapshot/reader.h"

#include "../common/diag.h"
#include "../common/snapshot_input.h"

namespace {

using presnap::tools::open_snapshot;

// Exit codes, documented in man/snapinfo.1: the tools' common 0, 1, 2
// (tools/common/diag.h), then snapinfo's own.
using presnap::tools::kExitFailure; // the snapshot is malformed, or its parent does not match
using presnap::tools::kExitOk;
using presnap::tools::kExitUsage;
constexpr int kExitHost = 3; // --check-host: this host lacks a feature the snapshot needs
constexpr int kExitIo = 4;   // a file could not be opened, read or written

presnap::tools::Diag diag("snapinfo");
bool quiet = false; // -q: not even errors, the exit status tells (as grep -q)

int report(const presnap::Error& e) {
    if (!quiet)
        diag.error(e.describe());
    switch (e.code) {
    case presnap::Errc::kIo:
        return kExitIo;
    case presnap::Errc::kUnsupported:
        return kExitHost;
    default:
        return kExitFailure;
    }
}

} // namespace

int main(int argc, char** argv) {
    using namespace presnap::snapshot;
    CLI::App app{"Print a presnap snapshot's header, sections, page counts, parent, executable,\n"
                 "CPU features and metadata, after validating the whole file.",
                 "snapinfo"};
    std::string file;
    std::string parent;
    bool json = false, check_host = false, runs = false, verbose = false, version = false;
    app.add_option("FILE", file, "snapshot file to describe (- for standard input)")->type_name("");
    app.add_flag("--json", json, "print one JSON object instead of text");
    app.add_option("--parent", parent, "check that FILE is a diff made on top of PARENT")
        ->type_name("PARENT");
    app.add_flag("--check-host", check_host,
                 "check that this host has the CPU features FILE relies on");
    app.add_flag("--runs", runs, "also list every page run and MSR");
    app.add_flag("-q,--quiet", quiet, "print nothing; the exit status tells");
    app.add_flag("-v,--verbose", verbose, "also say on stderr which checks passed");
    app.add_flag("--version", version, "print the version and the snapshot format this reads");
    app.footer("Exit status: 0 valid, 1 invalid file or parent mismatch, 2 usage error,\n"
               "3 host lacks a CPU feature (--check-host), 4 I/O error.");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return diag.write_stdout(app.help()) ? kExitOk : kExitIo;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return kExitUsage;
    }
    if (version) {
        const bool printed = diag.print_version(
            fmt::format("reads snapshot format {}.{}", kMajorVersion, kMinorVersion));
        return printed ? kExitOk : kExitIo;
    }
    if (file.empty()) {
        diag.usage_error("FILE is required");
        return kExitUsage;
    }
    if (quiet && verbose) {
        diag.usage_error("give at most one of -q and -v");
        return kExitUsage;
    }
    diag.set_verbose(verbose);

    auto snapshot = open_snapshot(file, {DataCheck::kFull});
    if (!snapshot)
        return report(snapshot.error());
    diag.info(fmt::format("{}: valid: header, sections and every page run checked", file));
    if (!parent.empty()) {
        if (parent == "-" && file == "-") {
            diag.usage_error("FILE and --parent cannot both be standard input");
            return kExitUsage;
        }
        auto p = open_snapshot(parent);
        if (!p)
            return report(p.error());
        if (auto s = snapshot->verify_parent(*p); !s)
            return report(s.error().with_context(file));
        diag.info(fmt::format("{}: a diff made on top of {}", file, parent));
    }
    if (check_host) {
        if (auto s = snapshot->check_host(host_cpu_features()); !s)
            return report(s.error().with_context(file));
        diag.info(fmt::format("{}: this host has every CPU feature it relies on", file));
    }
    if (quiet)
        return kExitOk;
    DescribeOptions options;
    options.list_runs = runs;
    std::string out =
        json ? describe_json(*snapshot, options) + "\n"
             : fmt::format("snapshot:       {}\n{}", file, describe_text(*snapshot, options));
    return diag.write_stdout(out) ? kExitOk : kExitIo;
}
