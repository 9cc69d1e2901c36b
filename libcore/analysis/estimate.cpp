// The static estimate: per-block expected counts and probabilities per
// request, from BlockFrequencyInfo inside functions and the call graph
// between them. docs/analysis.md, "Static estimate", has the equations.
#include <cmath>

#include <llvm/Demangle/Demangle.h>
#include <llvm/IR/Instructions.h>

#include "internal.h"

namespace presnap::analysis::detail {

namespace {

constexpr double kMaxCount = 1e9; // clamp for recursion that would diverge
constexpr int kRecursionRounds = 16;
constexpr double kMaxRecursion = 32; // like LoopInfo's default trip estimate

double clamp01(double p) {
    return p < 0 ? 0 : (p > 1 ? 1 : p);
}

// The request loop of an entry function: the first top-level loop that
// reads input. One trip around it is one request.
llvm::Loop* find_request_loop(Context& cx, FnInfo& fi) {
    std::vector<llvm::Loop*> tops(fi.li->begin(), fi.li->end());
    // LoopInfo lists top-level loops in reverse program order.
    std::reverse(tops.begin(), tops.end());
    for (llvm::Loop* l : tops) {
        for (auto* bb : l->blocks()) {
            for (auto& i : *bb) {
                auto* cb = llvm::dyn_cast<llvm::CallBase>(&i);
                if (!cb)
                    continue;
                auto* callee =
                    llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
                if (!callee)
                    continue;
                FnInfo* ci = cx.by_fn.lookup(callee);
                if (ci ? ci->reads_input : false)
                    return l;
                llvm::StringRef n = callee->getName();
                if (is_library(*callee) &&
                    (n == "getline" || n == "getdelim" || n == "fgets" || n == "read" ||
                     n == "fread" || n == "scanf" || n == "__isoc99_scanf" || n == "getchar" ||
                     n == "getc" || n == "fgetc" || n == "_IO_getc" || n == "fscanf" ||
                     n == "__isoc99_fscanf" || n.startswith("_ZSt7getline") ||
                     n.startswith("_ZNSi") || n.startswith("_ZStrs")))
                    return l;
            }
        }
    }
    return nullptr;
}

struct Acc {
    double c = 0;
    double notp = 1;
};

} // namespace

// Fills fi.count / fi.weight from fi.calls_per_request and fi.prob.
void compute_blocks(FnInfo& fi) {
    fi.count.clear();
    fi.weight.clear();
    double unit;
    unsigned base_depth = 0;
    if (fi.request_loop) {
        unit =
            static_cast<double>(fi.bfi->getBlockFreq(fi.request_loop->getHeader()).getFrequency());
        base_depth = fi.request_loop->getLoopDepth();
    } else {
        unit = static_cast<double>(fi.bfi->getEntryFreq());
    }
    if (unit <= 0)
        unit = 1;
    // Start-up code (what runs before the request loop is first entered)
    // happens before the first wait point: no request runs it.
    llvm::DenseSet<const llvm::BasicBlock*> after_start;
    if (fi.request_loop) {
        std::vector<const llvm::BasicBlock*> work{fi.request_loop->getHeader()};
        while (!work.empty()) {
            const llvm::BasicBlock* b = work.back();
            work.pop_back();
            if (after_start.insert(b).second)
                for (const llvm::BasicBlock* s : llvm::successors(b))
                    work.push_back(s);
        }
    }
    const double c = fi.calls_per_request, p = fi.prob;
    for (auto& bb : *fi.f) {
        double rel = static_cast<double>(fi.bfi->getBlockFreq(&bb).getFrequency()) / unit;
        if (fi.request_loop && !after_start.count(&bb))
            rel = 0;
        bool in_loop = fi.li->getLoopDepth(&bb) > base_depth;
        double reach = in_loop ? 1 - std::exp(-rel) : std::min(1.0, rel);
        double count = c * rel;
        fi.count[&bb] = count;
        // A block never runs more often than its function: cap at p.
        fi.weight[&bb] = clamp01(std::min(p, std::max(p * reach, 1 - std::exp(-count))));
    }
    // Lazy-initialisation guards: the guarded side runs at most once per
    // instance, i.e. on the first request that reaches the guard, which from
    // a base snapshot is every request that reaches it. Outer guards first
    // (function order is a topological order of dominance here).
    for (auto& g : fi.guards) {
        double gw = fi.weight[g.block];
        double sf = static_cast<double>(fi.bfi->getBlockFreq(g.arm).getFrequency());
        if (sf <= 0)
            sf = 1;
        llvm::BasicBlock* from = g.block;
        for (auto* bb : arm_region(fi, from, g.arm)) {
            double ratio = static_cast<double>(fi.bfi->getBlockFreq(bb).getFrequency()) / sf;
            fi.count[bb] = gw * ratio;
            fi.weight[bb] = clamp01(gw * std::min(1.0, ratio));
        }
    }
}

namespace {

// Pushes fi's calls to its callees' accumulators. Call sites in one caller
// are not independent (they all depend on the caller running), so a
// caller's sites are combined first and capped at the caller's probability.
void push_calls(FnInfo& fi, llvm::DenseMap<FnInfo*, Acc>& acc, const llvm::DenseSet<FnInfo*>* only,
                const llvm::DenseSet<FnInfo*>* except) {
    llvm::DenseMap<FnInfo*, double> notp;
    std::vector<FnInfo*> order;
    for (auto& e : fi.calls) {
        if (only && !only->count(e.callee))
            continue;
        if (except && except->count(e.callee))
            continue;
        Acc& a = acc[e.callee];
        a.c = std::min(kMaxCount, a.c + fi.count.lookup(e.block) * e.share);
        auto [it, fresh] = notp.try_emplace(e.callee, 1.0);
        if (fresh)
            order.push_back(e.callee);
        it->second *= 1 - clamp01(fi.weight.lookup(e.block) * e.share);
    }
    for (FnInfo* callee : order)
        acc[callee].notp *= 1 - std::min(fi.prob, 1 - notp[callee]);
}

// Immediate dominators of the call graph from the entries (Cooper, Harvey
// and Kennedy's iterative algorithm): a function cannot run in a request
// unless its dominator does, which bounds its probability even when many
// correlated callers would make a noisy-OR of their sites approach 1.
llvm::DenseMap<FnInfo*, FnInfo*> call_dominators(Context& cx) {
    llvm::DenseMap<FnInfo*, std::vector<FnInfo*>> preds;
    for (auto& f : cx.fns)
        for (auto& e : f->calls)
            if (e.callee != f.get())
                preds[e.callee].push_back(f.get());
    // Reverse post-order from a virtual root (nullptr) over the entries.
    std::vector<FnInfo*> post;
    llvm::DenseSet<FnInfo*> seen;
    for (FnInfo* e : cx.entries) {
        if (!seen.insert(e).second)
            continue;
        std::vector<std::pair<FnInfo*, size_t>> work{{e, 0}};
        while (!work.empty()) {
            auto& [v, i] = work.back();
            if (i < v->calls.size()) {
                FnInfo* w = v->calls[i++].callee;
                if (seen.insert(w).second)
                    work.push_back({w, 0});
                continue;
            }
            post.push_back(v);
            work.pop_back();
        }
    }
    llvm::DenseMap<FnInfo*, unsigned> po;
    for (unsigned i = 0; i < post.size(); i++)
        po[post[i]] = i + 1; // the root is post.size() + 1
    const unsigned root = static_cast<unsigned>(post.size()) + 1;
    llvm::DenseMap<FnInfo*, FnInfo*> idom; // nullptr value: the root
    llvm::DenseSet<FnInfo*> is_entry(cx.entries.begin(), cx.entries.end());
    auto number = [&](FnInfo* f) { return f ? po[f] : root; };
    auto intersect = [&](FnInfo* a, FnInfo* b) {
        while (a != b) {
            while (number(a) < number(b))
                a = idom[a];
            while (number(b) < number(a))
                b = idom[b];
        }
        return a;
    };
    for (FnInfo* e : cx.entries)
        idom[e] = nullptr;
    bool changed = true;
    while (changed) {
        changed = false;
        for (auto it = post.rbegin(); it != post.rend(); ++it) {
            FnInfo* b = *it;
            if (is_entry.count(b))
                continue;
            FnInfo* nd = nullptr;
            bool have = false;
            for (FnInfo* p : preds[b]) {
                if (!idom.count(p))
                    continue;
                nd = have ? intersect(p, nd) : p;
                have = true;
            }
            if (have && (!idom.count(b) || idom[b] != nd)) {
                idom[b] = nd;
                changed = true;
            }
        }
    }
    return idom;
}

} // namespace

Status choose_entries(Context& cx, const std::vector<std::string>& extra) {
    auto find = [&](const std::string& name) -> FnInfo* {
        for (auto& fi : cx.fns)
            if (fi->f->getName() == name)
                return fi.get();
        for (auto& fi : cx.fns) {
            std::string d = llvm::demangle(fi->f->getName().str());
            if (d == name || d.substr(0, d.find('(')) == name)
                return fi.get();
        }
        return nullptr;
    };
    if (FnInfo* m = find("main"))
        cx.entries.push_back(m);
    for (const std::string& e : extra) {
        FnInfo* f = find(e);
        if (!f)
            return make_error(Errc::kInvalidArgument,
                              "entry point not defined in the inputs (expected a function "
                              "named '{}', found none)",
                              e);
        if (std::find(cx.entries.begin(), cx.entries.end(), f) == cx.entries.end())
            cx.entries.push_back(f);
    }
    if (cx.entries.empty())
        return make_error(Errc::kInvalidArgument,
                          "no entry point (expected a definition of 'main' or --entry NAME, "
                          "found neither)");
    return {};
}

void estimate(Context& cx) {
    llvm::DenseMap<FnInfo*, Acc> acc;
    for (FnInfo* e : cx.entries) {
        // An entry runs once per request; main's request loop, if it has
        // one, defines what "a request" is inside it.
        acc[e].c += 1;
        acc[e].notp = 0;
        if (e->f->getName() == "main")
            e->request_loop = find_request_loop(cx, *e);
    }
    auto idom = call_dominators(cx);
    auto dom_cap = [&](FnInfo* f) {
        auto it = idom.find(f);
        if (it != idom.end() && it->second && it->second != f)
            f->prob = std::min(f->prob, it->second->prob);
    };
    auto sccs = call_sccs(cx);
    for (auto it = sccs.rbegin(); it != sccs.rend(); ++it) {
        auto& scc = *it;
        bool cyclic = scc.size() > 1;
        if (!cyclic)
            for (auto& e : scc[0]->calls)
                cyclic |= e.callee == scc[0];
        if (!cyclic) {
            FnInfo& f = *scc[0];
            f.calls_per_request = acc[&f].c;
            f.prob = clamp01(1 - acc[&f].notp);
            dom_cap(&f);
            compute_blocks(f);
            push_calls(f, acc, nullptr, nullptr);
            continue;
        }
        // Recursion: Jacobi rounds over the component, starting from what
        // its outside callers give it; counts are clamped so a recursion
        // whose static estimate diverges still ends.
        llvm::DenseSet<FnInfo*> members(scc.begin(), scc.end());
        llvm::DenseMap<FnInfo*, Acc> outside;
        for (FnInfo* f : scc)
            outside[f] = acc[f];
        llvm::DenseMap<FnInfo*, Acc> inside;
        // No member runs unless the component is entered from outside.
        double enter_notp = 1;
        for (FnInfo* f : scc)
            enter_notp *= outside[f].notp;
        const double enter_p = clamp01(1 - enter_notp);
        for (int round = 0; round < kRecursionRounds; round++) {
            for (FnInfo* f : scc) {
                Acc in = inside.lookup(f);
                f->calls_per_request = std::min(kMaxCount, outside[f].c + in.c);
                f->prob = std::min(enter_p, clamp01(1 - outside[f].notp * in.notp));
                if (auto d = idom.find(f);
                    d != idom.end() && d->second && !members.count(d->second))
                    f->prob = std::min(f->prob, d->second->prob);
                compute_blocks(*f);
            }
            inside.clear();
            for (FnInfo* f : scc)
                push_calls(*f, inside, &members, nullptr);
        }
        // Recursion deeper than a loop's default trip count is not assumed:
        // cap each member at kMaxRecursion times what enters the component.
        double entering = 0;
        for (FnInfo* f : scc)
            entering += outside[f].c;
        for (FnInfo* f : scc)
            if (f->calls_per_request > kMaxRecursion * entering) {
                f->calls_per_request = kMaxRecursion * entering;
                compute_blocks(*f);
            }
        for (FnInfo* f : scc)
            push_calls(*f, acc, nullptr, &members);
    }
}

} // namespace presnap::analysis::detail

namespace presnap::analysis::detail {

void fill_segment_values(Context& cx, const FnInfo* only) {
    for (auto& si : cx.segs) {
        FnInfo& fi = *si.fn;
        if (only && &fi != only)
            continue;
        Segment& s = si.seg;
        switch (s.kind) {
        case SegmentKind::kFunction:
            s.weight = fi.prob;
            s.count = fi.calls_per_request;
            break;
        case SegmentKind::kLoop: {
            if (si.loop == fi.request_loop) {
                // The request loop: every request is one trip.
                s.weight = fi.prob;
                s.count = fi.calls_per_request;
                break;
            }
            // Probability of entering the loop; count: trips of its header.
            double w = 0;
            for (auto* pred : llvm::predecessors(si.block))
                if (!si.loop->contains(pred))
                    w += fi.weight.lookup(pred) *
                         fi.bpi->getEdgeProbability(pred, si.block).scale(1000000) / 1e6;
            s.weight = clamp01(w);
            s.count = fi.count.lookup(si.block);
            break;
        }
        case SegmentKind::kBranch:
            s.weight = fi.weight.lookup(si.arm);
            s.count = fi.count.lookup(si.arm);
            break;
        case SegmentKind::kSwitch:
            s.weight = fi.weight.lookup(si.block);
            s.count = fi.count.lookup(si.block);
            break;
        }
    }
}

} // namespace presnap::analysis::detail
