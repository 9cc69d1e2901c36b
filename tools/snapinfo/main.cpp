// snapinfo: print what a snapshot file holds (man/snapinfo.1). A thin main:
// the reader validates, the library describes, this file reports.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "presnap/snapshot/describe.h"
#include "presnap/snapshot/reader.h"
#include "presnap/version.h"

namespace {

// Exit codes, documented in man/snapinfo.1.
constexpr int kExitOk = 0;
constexpr int kExitInvalid = 1; // the snapshot is malformed, or its parent does not match
constexpr int kExitUsage = 2;   // bad command line
constexpr int kExitHost = 3;    // --check-host: this host lacks a feature the snapshot needs
constexpr int kExitIo = 4;      // a file could not be opened or read

int report(const presnap::Error& e, bool quiet) {
    if (!quiet)
        fmt::print(stderr, "snapinfo: error: {}\n", e.describe());
    switch (e.code) {
    case presnap::Errc::kIo:
        return kExitIo;
    case presnap::Errc::kUnsupported:
        return kExitHost;
    default:
        return kExitInvalid;
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
    bool json = false, check_host = false, runs = false, quiet = false, version = false;
    app.add_option("FILE", file, "snapshot file to describe")->required()->type_name("");
    app.add_flag("--json", json, "print one JSON object instead of text");
    app.add_option("--parent", parent, "check that FILE is a diff made on top of PARENT")
        ->type_name("PARENT");
    app.add_flag("--check-host", check_host,
                 "check that this host has the CPU features FILE relies on");
    app.add_flag("-v,--runs", runs, "also list every page run and MSR");
    app.add_flag("-q,--quiet", quiet, "print nothing; the exit status tells");
    app.add_flag("--version", version, "print the snapshot format version this reads");
    app.footer("Exit status: 0 valid, 1 invalid file or parent mismatch, 2 usage error,\n"
               "3 host lacks a CPU feature (--check-host), 4 I/O error.");

    // --version works without FILE.
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--version") {
            fmt::print("snapinfo (presnap) {}; snapshot format {}.{}\n", presnap::kVersion,
                       kMajorVersion, kMinorVersion);
            return kExitOk;
        }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        fmt::print("{}", app.help());
        return kExitOk;
    } catch (const CLI::ParseError& e) {
        std::string what = e.what();
        for (auto& c : what)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        fmt::print(stderr, "snapinfo: error: {}\nnote: see snapinfo --help\n", what);
        return kExitUsage;
    }

    auto snapshot = SnapshotFile::open(file, {DataCheck::kFull});
    if (!snapshot)
        return report(snapshot.error(), quiet);
    if (!parent.empty()) {
        auto p = SnapshotFile::open(parent);
        if (!p)
            return report(p.error(), quiet);
        if (auto s = snapshot->verify_parent(*p); !s)
            return report(s.error().with_context(file), quiet);
    }
    if (check_host)
        if (auto s = snapshot->check_host(host_cpu_features()); !s)
            return report(s.error().with_context(file), quiet);
    if (quiet)
        return kExitOk;
    DescribeOptions options;
    options.list_runs = runs;
    if (json)
        fmt::print("{}\n", describe_json(*snapshot, options));
    else
        fmt::print("snapshot:       {}\n{}", file, describe_text(*snapshot, options));
    return kExitOk;
}
