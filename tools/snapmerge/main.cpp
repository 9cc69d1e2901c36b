// snapmerge: the composite of a library's base and a set of its snapshots
// (man/snapmerge.1). A thin main: libcore merges, chains, verifies and
// caches (presnap/merge/composite.h); this file parses options and reports.
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "presnap/library/library.h"
#include "presnap/merge/composite.h"
#include "presnap/merge/selection_input.h"
#include "presnap/snapshot/reader.h"

#include "../common/diag.h"

namespace {

using namespace presnap;
using presnap::tools::kExitFailure;
using presnap::tools::kExitOk;
using presnap::tools::kExitUsage;
constexpr int kExitIo = 4; // a file could not be read or written

tools::Diag diag("snapmerge");

int report(const Error& e) {
    diag.error(e.describe());
    return e.code == Errc::kIo ? kExitIo : kExitFailure;
}

std::string json_str(std::string_view s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\')
            o += fmt::format("\\{}", char(c));
        else if (c < 0x20)
            o += fmt::format("\\u{:04x}", c);
        else
            o += char(c);
    }
    return o + "\"";
}

std::string conflicts_text(const merge::MergeReport& r, bool all) {
    std::string o;
    if (!r.refusal.empty())
        o += fmt::format("  state: {}\n", r.refusal);
    size_t n = 0;
    for (const auto& c : r.conflicts) {
        if (!all && n++ >= 20) {
            o += fmt::format("  ... {} more\n", r.conflicts.size() - 20);
            break;
        }
        o += fmt::format("  {:#x} {} byte{} {}{}{} ({})\n", c.address, c.bytes,
                         c.bytes == 1 ? "" : "s", c.region, c.symbol.empty() ? "" : " ", c.symbol,
                         c.sides);
    }
    return o;
}

// Conflicts summed by region: "stack 12, heap 40".
std::string by_region(const merge::MergeReport& r) {
    std::map<std::string, uint64_t> m;
    for (const auto& c : r.conflicts)
        m[c.region + (c.symbol.empty() || c.region == "heap"
                          ? ""
                          : " " + c.symbol.substr(0, c.symbol.find('+')))] += c.bytes;
    if (!r.refusal.empty())
        m["vcpu/monitor state"] += 0;
    std::string o;
    for (const auto& [k, v] : m)
        o += fmt::format("{}{} {}", o.empty() ? "" : ", ", k, v);
    return o;
}

std::string composite_json(const merge::Composite& c, bool explain) {
    std::vector<std::string> ids;
    for (const auto& id : c.ids)
        ids.push_back(json_str(id));
    std::string conflicts;
    if (explain)
        for (const auto& k : c.merge.conflicts)
            conflicts += fmt::format("{}{{\"address\":{},\"bytes\":{},\"region\":{},\"symbol\":{},"
                                     "\"snapshots\":{}}}",
                                     conflicts.empty() ? "" : ",", k.address, k.bytes,
                                     json_str(k.region), json_str(k.symbol), json_str(k.sides));
    return fmt::format(
        "{{\"type\":\"composite\",\"snapshots\":[{}],\"how\":\"{}\",\"from_cache\":{},"
        "\"path\":{},\"pages\":{},\"input_bytes\":{},\"conflicts\":{},\"refusal\":{},\"verify_"
        "problem\":{},"
        "\"merge_us\":{:.1f},\"chain_us\":{:.1f},\"us\":{:.1f}{}}}\n",
        fmt::join(ids, ","), merge::how_name(c.how), c.from_cache ? "true" : "false",
        json_str(c.path), c.merge.pages, c.merge.input_bytes, c.merge.conflicts.size(),
        json_str(c.merge.refusal), json_str(c.verify_problem), c.merge.us, c.chain_us, c.us,
        explain ? ",\"conflict_list\":[" + conflicts + "]" : "");
}

std::string composite_text(const merge::Composite& c, bool explain) {
    std::string ids = c.ids.empty() ? "(base)" : fmt::format("{}", fmt::join(c.ids, " "));
    std::string o =
        fmt::format("{}: {}{}", ids, merge::how_name(c.how), c.from_cache ? " (cached)" : "");
    if (c.how == merge::Composite::How::kMerged && !c.from_cache)
        o += fmt::format(", {} pages ({} shared) merged in {:.1f} ms", c.merge.pages,
                         c.merge.pages_shared, c.merge.us / 1000);
    if (c.how == merge::Composite::How::kChained && !c.from_cache) {
        if (!c.merge.conflicts.empty() || !c.merge.refusal.empty())
            o += fmt::format(", {}{} conflict{} ({})", explain ? "" : "at least ",
                             c.merge.conflicts.size(), c.merge.conflicts.size() == 1 ? "" : "s",
                             by_region(c.merge));
        if (!c.verify_problem.empty())
            o += ", the merge failed verification";
        o += fmt::format(", chain built in {:.1f} ms", c.chain_us / 1000);
    }
    o += fmt::format(", {:.1f} ms\n", c.us / 1000);
    if (!c.verify_problem.empty())
        o += fmt::format("  verify: {}\n", c.verify_problem);
    if (explain)
        o += conflicts_text(c.merge, true);
    return o;
}

// --pairs: every pair of the library's snapshots merged (no chain, nothing
// stored) with the rules added one by one.
int pairs(const library::Library& lib, bool json) {
    struct Step {
        const char* name;
        merge::MergeRules rules;
    };
    const Step steps[] = {{"none", {false, false, false, true}},
                          {"+a presnap state", {true, false, false, true}},
                          {"+b dead stack", {true, true, false, true}},
                          {"+c request-scoped", {true, true, true, true}}};
    auto base = snapshot::SnapshotFile::open(lib.base_path);
    if (!base)
        return report(base.error());
    std::vector<snapshot::SnapshotFile> files;
    std::vector<library::Scoped> scoped;
    for (const auto& e : lib.snapshots) {
        auto f = snapshot::SnapshotFile::open(e.path);
        if (!f)
            return report(f.error());
        files.push_back(std::move(*f));
        auto s = merge::read_scoped(e);
        if (!s)
            return report(s.error());
        scoped.push_back(std::move(*s));
    }
    size_t n = files.size(), total = n * (n - 1) / 2;
    std::string out;
    std::map<std::string, uint64_t> last_regions;
    for (const auto& st : steps) {
        size_t merged = 0;
        std::map<std::string, uint64_t> regions;
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++) {
                merge::MergeInput in[] = {
                    {lib.snapshots[i].id, &files[i], scoped[i].bytes, scoped[i].registers},
                    {lib.snapshots[j].id, &files[j], scoped[j].bytes, scoped[j].registers}};
                auto m = merge::merge_snapshots(*base, in, st.rules);
                if (!m)
                    return report(m.error());
                merged += m->report.merged;
                for (const auto& c : m->report.conflicts)
                    regions[c.region + (c.symbol.empty()
                                            ? ""
                                            : " " + c.symbol.substr(0, c.symbol.find('+')))] +=
                        c.bytes;
                if (!m->report.refusal.empty())
                    regions["vcpu/monitor state"]++;
            }
        std::string reg;
        for (const auto& [k, v] : regions)
            reg += fmt::format("{}{}{}:{}", reg.empty() ? "" : ",", json ? "" : " ", k, v);
        if (json)
            out += fmt::format("{{\"type\":\"pairs\",\"rules\":{},\"pairs\":{},\"merged\":{},"
                               "\"conflict_bytes_by_region\":{}}}\n",
                               json_str(st.name), total, merged, json_str(reg));
        else
            out += fmt::format("{:<20} {:>3}/{:<3} pairs merge  conflicting bytes:{}\n", st.name,
                               merged, total, reg.empty() ? " none" : reg);
    }
    return diag.write_stdout(out) ? kExitOk : kExitIo;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Build the composite of a snapshot library's base and a set of its snapshots:\n"
                 "merged page by page when the rules allow it, else a chain of their warm-ups;\n"
                 "cached in DIR/composites/.",
                 "snapmerge"};
    std::string lib_dir, out_path;
    std::vector<std::string> ids;
    bool verify = false, explain = false, json = false, no_cache = false, all = false,
         do_pairs = false, chain_only = false, quiet = false, verbose = false, version = false;
    app.add_option("IDS", ids,
                   "library snapshot ids (s001 ...); none: read one selection from "
                   "standard input")
        ->type_name("");
    app.add_option("--lib", lib_dir, "the snapshot library (snapgen's output directory)")
        ->type_name("DIR");
    app.add_option("-o,--output", out_path,
                   "write the composite as a diff over DIR/base.snap (- for standard output)")
        ->type_name("OUT");
    app.add_flag("--verify", verify,
                 "replay each input's warm-up on the composite; a merge that answers "
                 "differently is replaced by a chain");
    app.add_flag("--explain", explain, "list every conflict with its region and symbol");
    app.add_flag("--json", json, "report as JSON lines on standard output");
    app.add_flag("--no-cache", no_cache, "neither reuse nor store composites in DIR/composites/");
    app.add_flag("--chain", chain_only, "always chain (do not try to merge)");
    app.add_flag("--all", all,
                 "read every selection line of standard input and build each distinct set");
    app.add_flag("--pairs", do_pairs,
                 "merge every pair of the library's snapshots with the rules added one by one "
                 "and print how many merge");
    app.add_flag("-q,--quiet", quiet, "print no report, only errors");
    app.add_flag("-v,--verbose", verbose, "also print notes on what was done");
    app.add_flag("--version", version, "print the version and the formats this reads");
    app.footer("Exit status: 0 done, 1 the composite could not be made (invalid input, a failed\n"
               "verification of a chain), 2 usage error, 4 I/O error.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return diag.write_stdout(app.help()) ? kExitOk : kExitIo;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return kExitUsage;
    }
    if (version)
        return diag.print_version("reads presnap-library 1 and presnap-selection 1") ? kExitOk
                                                                                     : kExitIo;
    if (lib_dir.empty()) {
        diag.usage_error("--lib DIR is required");
        return kExitUsage;
    }
    if (quiet && verbose) {
        diag.usage_error("give at most one of -q and -v");
        return kExitUsage;
    }
    if ((all || do_pairs) && (!ids.empty() || !out_path.empty())) {
        diag.usage_error(fmt::format("{} takes no ids and no -o", all ? "--all" : "--pairs"));
        return kExitUsage;
    }
    diag.set_verbose(verbose);
    auto lib = library::open_library(lib_dir);
    if (!lib)
        return report(lib.error());
    if (do_pairs)
        return pairs(*lib, json);

    std::vector<std::vector<std::string>> sets;
    if (!ids.empty()) {
        sets.push_back(ids);
    } else {
        std::string text, why;
        if (!tools::read_input("-", text, why)) {
            diag.error("-: " + why);
            return kExitIo;
        }
        auto sel = merge::parse_selections(text);
        if (!sel)
            return report(sel.error().with_context("-"));
        if (sel->empty()) {
            diag.error("-: no selection line");
            return kExitFailure;
        }
        if (!all && sel->size() > 1) {
            diag.error(fmt::format("-: {} selections (give --all to build each)", sel->size()));
            return kExitFailure;
        }
        sets = std::move(*sel);
    }
    merge::CompositeOptions opt;
    opt.verify = verify;
    opt.store = !no_cache;
    opt.use_cache = !no_cache;
    opt.allow_merge = !chain_only;
    // Past the first conflicting page only to list them all.
    opt.rules.all_conflicts = explain;
    opt.session.warn = nullptr;
    std::set<std::vector<std::string>> done;
    std::string text;
    for (const auto& set : sets) {
        auto resolved = merge::resolve_ids(*lib, set);
        if (!resolved)
            return report(resolved.error());
        if (!done.insert(*resolved).second)
            continue;
        auto c = merge::make_composite(*lib, *resolved, opt);
        if (!c)
            return report(c.error());
        if (!out_path.empty())
            if (auto s = merge::write_composite(*c, out_path); !s)
                return report(s.error());
        if (!c->path.empty())
            diag.info(fmt::format("{}: {}", fmt::join(c->ids, " "), c->path));
        if (quiet)
            continue;
        if (json) {
            if (!diag.write_stdout(composite_json(*c, explain)))
                return kExitIo;
        } else {
            std::string line = composite_text(*c, explain);
            std::fwrite(line.data(), 1, line.size(), stderr);
        }
    }
    return kExitOk;
}
