// snapselect: choose the library snapshots each request should be served
// from (man/snapselect.1). A thin main: libcore/select predicts and chooses,
// this file reads requests and reports.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "presnap/library/library.h"
#include "presnap/select/select.h"
#include "presnap/size.h"

#include "../common/diag.h"

namespace {

using presnap::tools::kExitFailure; // the library, a history or the model is invalid
using presnap::tools::kExitOk;
using presnap::tools::kExitUsage;

presnap::tools::Diag diag("snapselect");

int report(const presnap::Error& e) {
    diag.error(e.describe());
    return kExitFailure;
}

// Histories from files; non-strict (bad lines skipped, with a warning).
bool read_histories(const std::vector<std::string>& files,
                    std::vector<presnap::analysis::History>& out) {
    for (const auto& f : files) {
        std::string text, why;
        if (!presnap::tools::read_input(f, text, why)) {
            diag.error(fmt::format("{}: {}", f, why));
            return false;
        }
        auto h = presnap::analysis::parse_history(text, f, false);
        if (!h) {
            report(h.error());
            return false;
        }
        if (h->skipped)
            diag.warning(fmt::format("{}: skipped {} malformed line(s); first: {}", f, h->skipped,
                                     h->problems.empty() ? "" : h->problems[0].describe()));
        out.push_back(std::move(*h));
    }
    return true;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Predict each request's path and choose the library snapshots its composite\n"
                 "should hold: one selection per request line of standard input.",
                 "snapselect"};
    std::string lib_dir, request, max_bytes_text, user;
    std::vector<std::string> history, train;
    bool json = false, explain = false, static_only = false, no_warm_all = false, stats = false;
    bool quiet = false, verbose = false, version = false;
    double page_cost = presnap::select::kDefaultPageCostUs;
    app.add_option("--lib", lib_dir, "the snapshot library (a snapgen -o directory)")
        ->type_name("DIR");
    app.add_option("--history", history,
                   "learn from this history instead of the library's model (repeatable)")
        ->type_name("FILE");
    app.add_option("--request", request, "select for this one request instead of standard input")
        ->type_name("STRING");
    app.add_option("--max-bytes", max_bytes_text,
                   "snapshot bytes one composite may hold, e.g. 64M (default 0: no limit)")
        ->type_name("N");
    app.add_option("--user", user, "use this user's model when it has one")->type_name("ID");
    app.add_flag("--json", json, "write JSON lines instead of the text form");
    app.add_flag("--explain", explain,
                 "say why: predicted path, candidates, savings, budget ('#' lines)");
    app.add_flag("--static", static_only,
                 "ignore the model: the map's weights and route tokens only");
    app.add_flag("--no-warm-all", no_warm_all,
                 "never answer warm-all: choose by expected saving (measures prediction)");
    app.add_option("--page-cost", page_cost,
                   "microseconds charged per page a snapshot adds (default 0.5)")
        ->type_name("US");
    app.add_option("--train", train, "learn from these histories and store DIR/model.jsonl")
        ->type_name("HISTORY")
        ->expected(1, -1);
    app.add_flag("--stats", stats, "print the time per selection on standard error");
    app.add_flag("-q,--quiet", quiet, "print no warnings");
    app.add_flag("-v,--verbose", verbose, "also say what was read");
    app.add_flag("--version", version, "print the version and the formats this writes");
    app.footer("Exit status: 0 done, 1 invalid library, model or history, 2 usage error.");

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return diag.write_stdout(app.help()) ? kExitOk : kExitFailure;
    } catch (const CLI::ParseError& e) {
        diag.usage_error(e);
        return kExitUsage;
    }
    if (version)
        return diag.print_version("writes presnap-selection 1 and presnap-model 1") ? kExitOk
                                                                                    : kExitFailure;
    if (lib_dir.empty()) {
        diag.usage_error("--lib is required");
        return kExitUsage;
    }
    if (quiet && verbose) {
        diag.usage_error("give at most one of -q and -v");
        return kExitUsage;
    }
    diag.set_quiet(quiet);
    diag.set_verbose(verbose);
    presnap::select::SelectOptions options;
    if (!max_bytes_text.empty()) {
        auto n = presnap::parse_size(max_bytes_text);
        if (!n) {
            diag.usage_error(fmt::format("--max-bytes: not a size (expected e.g. 65536 or 64M, "
                                         "found '{}')",
                                         max_bytes_text));
            return kExitUsage;
        }
        options.max_bytes = *n;
    }
    if (!(page_cost >= 0) || page_cost > 1e6) {
        diag.usage_error(
            fmt::format("--page-cost: expected 0 to 1000000 microseconds, found {}", page_cost));
        return kExitUsage;
    }
    options.page_cost_us = page_cost;
    options.user = user;
    options.allow_warm_all = !no_warm_all;
    if (!train.empty() &&
        (!history.empty() || static_only || app.count("--request") || json || explain)) {
        diag.usage_error("--train stores a model; it takes no --history, --static, --request, "
                         "--json or --explain");
        return kExitUsage;
    }
    if (static_only && !history.empty()) {
        diag.usage_error("give at most one of --static and --history");
        return kExitUsage;
    }

    auto lib = presnap::library::open_library(lib_dir);
    if (!lib)
        return report(lib.error());

    if (!train.empty()) {
        std::vector<presnap::analysis::History> histories;
        if (!read_histories(train, histories))
            return kExitFailure;
        auto model = presnap::select::train(*lib, histories);
        if (!model)
            return report(model.error());
        if (auto s = presnap::select::store_model(*lib, *model); !s)
            return report(s.error());
        size_t rebuilt = 0;
        for (const auto& s : model->segments)
            rebuilt += s.rebuilt;
        diag.info(fmt::format("{}/{}: {} requests in {} runs, {} examples, {} rebuilt segment(s)",
                              lib->dir, presnap::select::kModelFile, model->requests, model->runs,
                              model->examples.size(), rebuilt));
        return kExitOk;
    }

    presnap::Result<presnap::select::Selector> selector =
        std::unexpected(presnap::Error{presnap::Errc::kInternal, "no selector", {}});
    if (static_only)
        selector = presnap::select::Selector::static_only(*lib);
    else if (!history.empty()) {
        std::vector<presnap::analysis::History> histories;
        if (!read_histories(history, histories))
            return kExitFailure;
        auto model = presnap::select::train(*lib, histories);
        if (!model)
            return report(model.error());
        selector = presnap::select::Selector::with_model(*lib, *model);
    } else
        selector = presnap::select::Selector::open(*lib);
    if (!selector)
        return report(selector.error());
    diag.info(selector->trained() ? "predicting from history" : "predicting from the map alone");

    std::vector<std::string> requests;
    if (app.count("--request"))
        requests.push_back(request);
    else {
        std::string text, why;
        if (!presnap::tools::read_input("-", text, why)) {
            diag.error("-: " + why);
            return kExitFailure;
        }
        size_t pos = 0;
        while (pos < text.size()) {
            size_t nl = text.find('\n', pos);
            if (nl == std::string::npos) {
                requests.push_back(text.substr(pos));
                break;
            }
            requests.push_back(text.substr(pos, nl - pos));
            pos = nl + 1;
        }
    }

    std::string out = json ? presnap::select::format_selection_header_json()
                           : presnap::select::format_selection_header();
    double total_us = 0;
    for (const auto& r : requests) {
        auto t0 = std::chrono::steady_clock::now();
        auto s = selector->select(r, options);
        total_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                        .count();
        if (explain) {
            std::string why = presnap::select::format_explanation(r, s, options);
            if (json)
                std::fputs(why.c_str(), stderr);
            else
                out += why;
        }
        out += json ? presnap::select::format_selection_json(r, s)
                    : presnap::select::format_selection_line(s);
        if (out.size() > (1u << 16)) {
            if (!diag.write_stdout(out))
                return kExitFailure;
            out.clear();
        }
    }
    if (!diag.write_stdout(out))
        return kExitFailure;
    if (stats && !requests.empty())
        diag.note(fmt::format("{} request(s), {:.2f} us per selection (in-process, {} model)",
                              requests.size(), total_us / double(requests.size()),
                              selector->trained() ? "history" : "static"));
    return kExitOk;
}
