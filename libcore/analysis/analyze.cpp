// The driver: runs the phases in order and assembles the probability map.
#include <llvm/Analysis/BlockFrequencyInfo.h>
#include <llvm/Analysis/BranchProbabilityInfo.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/Analysis/PostDominators.h>
#include <llvm/Passes/PassBuilder.h>

#include "internal.h"
#include "presnap/analysis/analyze.h"
#include "presnap/analysis/hash.h"

namespace presnap::analysis {

using namespace detail;

Result<AnalyzeReport> analyze(const AnalyzeOptions& o) {
    if (o.inputs.empty())
        return make_error(Errc::kInvalidArgument, "no input files (expected at least one)");
    if (!(o.prior_strength > 0))
        return make_error(Errc::kInvalidArgument,
                          "invalid prior strength (expected a positive number, found {})",
                          o.prior_strength);
    if (!(o.profile_requests > 0))
        return make_error(Errc::kInvalidArgument,
                          "invalid profile request count (expected a positive number, found {})",
                          o.profile_requests);

    llvm::LLVMContext ctx;
    auto mod = load_and_link(o.inputs, ctx);
    if (!mod)
        return std::unexpected(mod.error());
    llvm::Module& m = **mod;
    normalise(m);

    AnalyzeReport rep;
    Context cx;
    cx.module = &m;

    AnalysisManagers am;
    llvm::FunctionAnalysisManager& fam = am.fam;

    size_t optnone = 0;
    for (llvm::Function& f : m) {
        // available_externally bodies are copies of code that lives elsewhere.
        if (f.isDeclaration() || f.hasAvailableExternallyLinkage())
            continue;
        if (f.hasOptNone())
            optnone++;
        auto fi = std::make_unique<FnInfo>();
        fi->f = &f;
        fi->dt = &fam.getResult<llvm::DominatorTreeAnalysis>(f);
        fi->pdt = &fam.getResult<llvm::PostDominatorTreeAnalysis>(f);
        fi->li = &fam.getResult<llvm::LoopAnalysis>(f);
        fi->bpi = &fam.getResult<llvm::BranchProbabilityAnalysis>(f);
        fi->bfi = &fam.getResult<llvm::BlockFrequencyAnalysis>(f);
        fi->shash = structural_hash(f);
        cx.by_fn[&f] = fi.get();
        cx.fns.push_back(std::move(fi));
    }
    if (cx.fns.empty())
        return make_error(Errc::kInvalidArgument,
                          "no function definitions in the inputs (expected at least one)");
    if (optnone * 2 > cx.fns.size())
        rep.notes.push_back(fmt::format(
            "{} of {} functions are optnone: the bitcode was built with -O0; use -O1 -Xclang "
            "-disable-llvm-passes for accurate branch probabilities",
            optnone, cx.fns.size()));
    rep.functions = cx.fns.size();

    build_call_edges(cx);
    compute_effects(cx);
    find_lazy_guards(cx);
    discover_segments(cx);
    if (auto st = choose_entries(cx, o.entries); !st)
        return std::unexpected(st.error());
    estimate(cx);
    fill_segment_values(cx);
    for (auto& si : cx.segs) {
        si.seg.effects = si.seg.kind == SegmentKind::kFunction ? si.fn->effects
                                                               : region_effects(*si.fn, si.region);
        si.seg.warmable = si.seg.effects != 0;
    }
    find_tokens(cx);
    for (auto& fi : cx.fns)
        rep.warm_by_external += fi->effects != 0 && fi->own_effects == 0;

    ProbabilityMap& map = rep.map;
    map.inputs = o.inputs;
    for (FnInfo* e : cx.entries)
        map.entries.push_back(e->f->getName().str());
    if (o.elf) {
        auto sum = resolve_addresses(cx, *o.elf);
        if (!sum)
            return std::unexpected(sum.error());
        map.addresses = *sum;
        if (sum->inlined || sum->missing)
            rep.notes.push_back(fmt::format("{} segments only inlined, {} not found in {}",
                                            sum->inlined, sum->missing, *o.elf));
    }
    std::vector<std::string> applied;
    if (o.profile) {
        if (auto st = apply_profile(cx, o, rep); !st)
            return std::unexpected(st.error());
        applied.push_back("profile");
    }
    for (auto& si : cx.segs)
        si.seg.static_weight = si.seg.weight;
    if (o.history) {
        if (auto st = apply_history(cx, o, rep); !st)
            return std::unexpected(st.error());
        applied.push_back(fmt::format("history({} requests, prior strength {})",
                                      rep.history_requests, o.prior_strength));
    }
    if (o.explain) {
        auto id = parse_hex64(*o.explain);
        const SegInfo* found = nullptr;
        for (const auto& si : cx.segs)
            if (si.seg.name == *o.explain || (id && si.seg.id == *id))
                found = &si;
        if (!found)
            return make_error(Errc::kInvalidArgument,
                              "no such segment (expected a segment name or id of the map, "
                              "found '{}')",
                              *o.explain);
        rep.explanation = explain(*found);
    }
    map.evidence = "static";
    for (auto& a : applied)
        map.evidence += "+" + a;
    // The text form has no spaces inside a header value's words.
    for (auto& c : map.evidence)
        if (c == ' ')
            c = '_';
    for (auto& si : cx.segs)
        map.segments.push_back(std::move(si.seg));
    sort_segments(map.segments);
    return rep;
}

} // namespace presnap::analysis
