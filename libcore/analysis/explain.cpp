// --explain: why a segment is warm. Lists the calls into code without
// bitcode that were given persistent state (docs/analysis.md, "Calls into
// code without bitcode"), in the segment or in what it calls, and the
// effects the segment has without them.
#include <algorithm>

#include <llvm/IR/DebugInfoMetadata.h>
#include <llvm/IR/Instructions.h>
#include <llvm/Support/Path.h>

#include "internal.h"
#include "presnap/analysis/hash.h"

namespace presnap::analysis {

namespace detail {

namespace {

constexpr size_t kMaxListed = 32;

std::string describe(const FnInfo& fi, const PtrRoot& r) {
    switch (r.kind) {
    case RootKind::kGlobal:
        return "global " + r.g->getName().str();
    case RootKind::kGlobalRooted:
        return "memory reachable from global " + r.g->getName().str();
    case RootKind::kArg:
        break;
    }
    return fmt::format("parameter {} of {}, which every caller passes persistent memory for",
                       r.arg + 1, fi.display);
}

std::pair<std::string, unsigned> where(const llvm::Instruction* i) {
    if (const auto& dl = i->getDebugLoc())
        if (auto* scope = llvm::dyn_cast<llvm::DIScope>(dl.getScope()))
            return {llvm::sys::path::filename(scope->getFilename()).str(), dl.getLine()};
    return {"", 0};
}

} // namespace

Explanation explain(const SegInfo& si) {
    Explanation ex;
    ex.segment = si.seg;
    FnInfo& home = *si.fn;
    std::vector<llvm::BasicBlock*> region;
    if (si.seg.kind == SegmentKind::kFunction)
        for (auto& bb : *home.f)
            region.push_back(&bb);
    else
        region = si.region;
    llvm::DenseSet<const llvm::BasicBlock*> in(region.begin(), region.end());

    // The functions the segment runs: its region's callees, transitively.
    std::vector<FnInfo*> order;
    llvm::DenseSet<FnInfo*> seen;
    auto reach = [&](FnInfo* f) {
        if (seen.insert(f).second)
            order.push_back(f);
    };
    for (auto& c : home.calls)
        if (in.count(c.block))
            reach(c.callee);
    for (size_t k = 0; k < order.size(); k++)
        for (auto& c : order[k]->calls)
            reach(c.callee);

    std::set<std::tuple<std::string, unsigned, std::string, std::string>> listed;
    auto add_calls = [&](const FnInfo& f, bool only_region) {
        for (const ExternalCall& c : f.ext_calls) {
            if ((only_region && !in.count(c.block)) || !persistent(f, c.root))
                continue;
            auto* callee =
                llvm::dyn_cast<llvm::Function>(c.call->getCalledOperand()->stripPointerCasts());
            auto [file, line] = where(c.call);
            ExplainedCall e{f.display, callee ? callee->getName().str() : "?", file, line,
                            describe(f, c.root)};
            if (listed.size() < kMaxListed &&
                listed.insert({e.function, e.line, e.callee, e.state}).second)
                ex.external_calls.push_back(std::move(e));
        }
    };
    unsigned own = 0;
    auto add_own = [&](const FnInfo& f, bool only_region) {
        for (auto& bb : *f.f) {
            if (only_region && !in.count(&bb))
                continue;
            unsigned e = f.block_own_effects.lookup(&bb);
            if (!e)
                continue;
            own |= e;
            if (ex.other_effects.size() < 8) {
                std::pair<std::string, unsigned> at{"", 0};
                for (auto& i : bb)
                    if (i.getDebugLoc() && (at = where(&i)).second)
                        break;
                auto& [file, line] = at;
                ex.other_effects.push_back(
                    fmt::format("{}{}{}: {} stores to persistent state", file, line ? ":" : "",
                                line ? std::to_string(line) : "", f.display));
            }
            break;
        }
    };
    add_calls(home, true);
    add_own(home, true);
    for (FnInfo* f : order) {
        add_calls(*f, false);
        add_own(*f, false);
    }
    ex.effects_without_external = own;
    return ex;
}

} // namespace detail

std::string format_explanation(const Explanation& e) {
    const Segment& s = e.segment;
    std::string out = fmt::format("segment {} {}\n", hex64(s.id), s.name);
    out +=
        fmt::format("effects {} ({}){}\n", effects_string(s.effects), s.warmable ? "warm" : "cold",
                    s.lazy_init ? ", lazy-initialisation guard" : "");
    out += fmt::format("without external calls: {}\n", effects_string(e.effects_without_external));
    out +=
        fmt::format("external calls that may keep persistent state: {}\n", e.external_calls.size());
    for (const auto& c : e.external_calls)
        out += fmt::format("  {}{}{}: {} calls {} with {}\n", c.file, c.line ? ":" : "",
                           c.line ? std::to_string(c.line) : "", c.function, c.callee, c.state);
    out += fmt::format("other persistent effects: {}\n", e.other_effects.size());
    for (const auto& o : e.other_effects)
        out += "  " + o + "\n";
    return out;
}

} // namespace presnap::analysis
