// Segments (functions, loops, branches, switches), their ids and names, the
// structural hash of function bodies, and the call edges between functions.
#include <algorithm>
#include <functional>

#include <llvm/Demangle/Demangle.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/DebugInfoMetadata.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/Support/Path.h>

#include "internal.h"
#include "presnap/analysis/hash.h"

namespace presnap::analysis::detail {

namespace {

struct Hasher {
    uint64_t h = fnv1a64("presnap-shash-1");
    void str(std::string_view s) {
        h = fnv1a64(s, h);
        h = fnv1a64(std::string_view("\0", 1), h);
    }
    void num(uint64_t v) { str(std::to_string(v)); }

    void type(const llvm::Type* t, int depth = 0) {
        num(t->getTypeID());
        if (depth > 3)
            return;
        if (auto* it = llvm::dyn_cast<llvm::IntegerType>(t))
            num(it->getBitWidth());
        else if (auto* at = llvm::dyn_cast<llvm::ArrayType>(t)) {
            num(at->getNumElements());
            type(at->getElementType(), depth + 1);
        } else if (auto* vt = llvm::dyn_cast<llvm::FixedVectorType>(t)) {
            num(vt->getNumElements());
            type(vt->getElementType(), depth + 1);
        } else if (auto* st = llvm::dyn_cast<llvm::StructType>(t)) {
            // Layout, not the struct's name: a renamed struct is the same code.
            num(st->getNumElements());
            for (auto* e : st->elements())
                type(e, depth + 1);
        } else if (auto* ft = llvm::dyn_cast<llvm::FunctionType>(t)) {
            type(ft->getReturnType(), depth + 1);
            for (auto* p : ft->params())
                type(p, depth + 1);
            num(ft->isVarArg());
        }
    }

    void constant(const llvm::Constant* c, int depth) {
        if (auto* ci = llvm::dyn_cast<llvm::ConstantInt>(c)) {
            str("i");
            str(llvm::toString(ci->getValue(), 16, true));
        } else if (auto* cf = llvm::dyn_cast<llvm::ConstantFP>(c)) {
            str("f");
            str(llvm::toString(cf->getValueAPF().bitcastToAPInt(), 16, false));
        } else if (llvm::isa<llvm::ConstantPointerNull>(c)) {
            str("null");
        } else if (llvm::isa<llvm::UndefValue>(c)) {
            str("undef");
        } else if (auto* gv = llvm::dyn_cast<llvm::GlobalVariable>(c)) {
            // Constant data (strings, tables) is part of the code's meaning;
            // a mutable global is identified by its type only, not its name.
            str("g");
            type(gv->getValueType());
            if (gv->isConstant() && gv->hasInitializer()) {
                if (auto* ds = llvm::dyn_cast<llvm::ConstantDataSequential>(gv->getInitializer()))
                    str(ds->getRawDataValues());
            }
        } else if (auto* fn = llvm::dyn_cast<llvm::Function>(c)) {
            // Library functions by name (strcmp is strcmp everywhere); the
            // program's own functions by type, so renaming them changes nothing.
            if (is_library(*fn)) {
                str("d");
                str(fn->getName());
            } else {
                str("F");
                type(fn->getFunctionType());
            }
        } else if (auto* ce = llvm::dyn_cast<llvm::ConstantExpr>(c)) {
            str("ce");
            num(ce->getOpcode());
            if (depth < 4)
                for (auto& op : ce->operands())
                    constant(llvm::cast<llvm::Constant>(op.get()), depth + 1);
        } else {
            str("c");
            num(c->getValueID());
        }
    }
};

unsigned line_of(const llvm::Instruction* i) {
    if (auto& dl = i->getDebugLoc())
        return dl.getLine();
    return 0;
}

unsigned first_line(const llvm::BasicBlock* bb) {
    for (auto& i : *bb)
        if (unsigned l = line_of(&i))
            return l;
    return 0;
}

// Readable C++ names: the demangled name without return type, parameter
// lists, spaces and (if `bare`) template arguments; a local lambda keeps the
// path to it (f()::$_2::operator()).
std::string display_name(const llvm::Function& f, bool bare) {
    std::string name = f.getName().str();
    if (!llvm::StringRef(name).startswith("_Z"))
        return name;
    std::string d = llvm::demangle(name);
    if (d == name)
        return name;
    for (size_t at; (at = d.find("(anonymous namespace)::")) != std::string::npos;)
        d.erase(at, 23);
    // Drop the return type: text up to the last top-level space before the
    // first top-level '('.
    int angle = 0, paren = 0;
    size_t start = 0;
    for (size_t i = 0; i < d.size(); i++) {
        char ch = d[i];
        if (ch == '<')
            angle++;
        else if (ch == '>')
            angle--;
        else if (ch == '(' && angle == 0)
            break;
        else if (ch == ' ' && angle == 0)
            start = i + 1;
    }
    std::string out;
    angle = paren = 0;
    for (size_t i = start; i < d.size(); i++) {
        char ch = d[i];
        bool after_operator = out.size() >= 8 && out.compare(out.size() - 8, 8, "operator") == 0;
        if (ch == '(' && paren == 0 && !after_operator) {
            out += "()";
            paren = 1;
            continue;
        }
        if (paren > 0) {
            paren += ch == '(' ? 1 : ch == ')' ? -1 : 0;
            continue;
        }
        if (ch == '<')
            angle++;
        if ((!bare || angle == 0) && ch != ' ')
            out.push_back(ch);
        if (ch == '>')
            angle--;
    }
    if (out.ends_with("const"))
        out.resize(out.size() - 5);
    if (out.ends_with("()") && !out.ends_with("operator()"))
        out.resize(out.size() - 2);
    return out.empty() ? name : out;
}

uint64_t seg_id(SegmentKind k, std::string_view fname, unsigned pos) {
    uint64_t h = fnv1a64("presnap-seg-1");
    h = fnv1a64(to_string(k), h);
    h = fnv1a64(std::string_view("\0", 1), h);
    h = fnv1a64(fname, h);
    h = fnv1a64(std::string_view("\0", 1), h);
    return fnv1a64(std::to_string(pos), h);
}

uint64_t seg_sid(SegmentKind k, uint64_t shash, unsigned pos) {
    return seg_id(k, hex64(shash), pos);
}

} // namespace

uint64_t structural_hash(const llvm::Function& f) {
    Hasher hs;
    hs.type(f.getFunctionType());
    llvm::DenseMap<const llvm::Value*, unsigned> local;
    for (auto& a : f.args())
        local[&a] = static_cast<unsigned>(local.size());
    for (auto& bb : f) {
        local[&bb] = static_cast<unsigned>(local.size());
        for (auto& i : bb)
            local[&i] = static_cast<unsigned>(local.size());
    }
    for (auto& bb : f) {
        hs.str("B");
        for (auto& i : bb) {
            if (llvm::isa<llvm::DbgInfoIntrinsic>(i))
                continue;
            hs.num(i.getOpcode());
            hs.type(i.getType());
            if (auto* cmp = llvm::dyn_cast<llvm::CmpInst>(&i))
                hs.num(cmp->getPredicate());
            if (auto* ai = llvm::dyn_cast<llvm::AllocaInst>(&i))
                hs.type(ai->getAllocatedType());
            if (auto* gep = llvm::dyn_cast<llvm::GetElementPtrInst>(&i))
                hs.type(gep->getSourceElementType());
            for (auto& op : i.operands()) {
                const llvm::Value* v = op.get();
                if (auto it = local.find(v); it != local.end()) {
                    hs.str("L");
                    hs.num(it->second);
                } else if (auto* c = llvm::dyn_cast<llvm::Constant>(v)) {
                    hs.constant(c, 0);
                } else if (llvm::isa<llvm::MetadataAsValue>(v)) {
                    hs.str("md");
                } else {
                    hs.str("?");
                }
            }
        }
    }
    return hs.h;
}

void build_call_edges(Context& cx) {
    std::map<llvm::FunctionType*, std::vector<FnInfo*>> by_type;
    for (auto& fi : cx.fns)
        if (fi->f->hasAddressTaken())
            by_type[fi->f->getFunctionType()].push_back(fi.get());
    for (auto& fi : cx.fns) {
        for (auto& bb : *fi->f) {
            for (auto& i : bb) {
                auto* cb = llvm::dyn_cast<llvm::CallBase>(&i);
                if (!cb || llvm::isa<llvm::IntrinsicInst>(cb) || cb->isInlineAsm())
                    continue;
                auto* callee =
                    llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
                if (FnInfo* ci = callee ? cx.by_fn.lookup(callee) : nullptr) {
                    fi->calls.push_back({&bb, cb, ci, 1.0, true});
                    continue;
                }
                if (callee) {
                    // A library function given one of ours (qsort, atexit,
                    // pthread_create): assume it calls it once per call.
                    for (auto& arg : cb->args())
                        if (auto* af = llvm::dyn_cast<llvm::Function>(arg->stripPointerCasts()))
                            if (auto* ai = cx.by_fn.lookup(af))
                                fi->calls.push_back({&bb, cb, ai, 1.0, false});
                    continue;
                }
                // ops[i](x) through a constant table: its entries, each
                // with its share of the table.
                if (auto targets = table_functions(cb->getCalledOperand(), true);
                    !targets.empty()) {
                    std::vector<std::pair<FnInfo*, double>> shares; // first-seen order
                    for (auto& [entry, f] : targets) {
                        FnInfo* t = cx.by_fn.lookup(f);
                        if (!t)
                            continue; // a library function: no segments
                        auto at = std::find_if(shares.begin(), shares.end(),
                                               [&](auto& s) { return s.first == t; });
                        if (at == shares.end())
                            at = shares.insert(shares.end(), {t, 0.0});
                        at->second += 1.0 / static_cast<double>(targets.size());
                    }
                    for (auto& [t, share] : shares)
                        fi->calls.push_back({&bb, cb, t, share, false});
                    continue;
                }
                auto it = by_type.find(cb->getFunctionType());
                if (it == by_type.end() || it->second.empty())
                    continue;
                double share = 1.0 / static_cast<double>(it->second.size());
                for (FnInfo* t : it->second)
                    fi->calls.push_back({&bb, cb, t, share, false});
            }
        }
    }
}

std::vector<std::vector<FnInfo*>> call_sccs(Context& cx) {
    // Iterative Tarjan; the output lists callees before callers.
    llvm::DenseMap<FnInfo*, unsigned> index, low;
    llvm::DenseSet<FnInfo*> on_stack;
    std::vector<FnInfo*> stack;
    std::vector<std::vector<FnInfo*>> out;
    unsigned next = 0;
    for (auto& root : cx.fns) {
        if (index.count(root.get()))
            continue;
        std::vector<std::pair<FnInfo*, size_t>> work{{root.get(), 0}};
        index[root.get()] = low[root.get()] = next++;
        stack.push_back(root.get());
        on_stack.insert(root.get());
        while (!work.empty()) {
            auto& [v, ei] = work.back();
            if (ei < v->calls.size()) {
                FnInfo* w = v->calls[ei++].callee;
                if (!index.count(w)) {
                    index[w] = low[w] = next++;
                    stack.push_back(w);
                    on_stack.insert(w);
                    work.push_back({w, 0});
                } else if (on_stack.count(w)) {
                    low[v] = std::min(low[v], index[w]);
                }
                continue;
            }
            if (low[v] == index[v]) {
                std::vector<FnInfo*> scc;
                FnInfo* w;
                do {
                    w = stack.back();
                    stack.pop_back();
                    on_stack.erase(w);
                    scc.push_back(w);
                } while (w != v);
                out.push_back(std::move(scc));
            }
            FnInfo* done = v;
            work.pop_back();
            if (!work.empty())
                low[work.back().first] = std::min(low[work.back().first], low[done]);
        }
    }
    return out;
}

std::vector<llvm::BasicBlock*> arm_region(FnInfo& fi, llvm::BasicBlock* from,
                                          llvm::BasicBlock* arm) {
    // The blocks the arm dominates, up to where both sides meet again.
    llvm::BasicBlock* merge = nullptr;
    if (auto* n = fi.pdt->getNode(from))
        if (auto* idom = n->getIDom())
            merge = idom->getBlock();
    std::vector<llvm::BasicBlock*> region;
    if (arm == merge)
        return region;
    auto* root = fi.dt->getNode(arm);
    if (!root)
        return region;
    std::vector<llvm::DomTreeNode*> work{root};
    while (!work.empty()) {
        auto* n = work.back();
        work.pop_back();
        if (n->getBlock() == merge)
            continue;
        region.push_back(n->getBlock());
        for (auto* c : n->children())
            work.push_back(c);
    }
    // Function order, so that everything derived from a region is deterministic.
    llvm::DenseMap<const llvm::BasicBlock*, unsigned> order;
    unsigned k = 0;
    for (auto& bb : *fi.f)
        order[&bb] = k++;
    std::sort(region.begin(), region.end(), [&](auto* a, auto* b) { return order[a] < order[b]; });
    return region;
}

void discover_segments(Context& cx) {
    // The shortest unambiguous name: without template arguments, else with
    // them, else the linkage name (overloads, same-named statics).
    std::map<std::string, unsigned> bare_uses, full_uses;
    for (auto& fi : cx.fns) {
        bare_uses[display_name(*fi->f, true)]++;
        full_uses[display_name(*fi->f, false)]++;
        if (auto* sp = fi->f->getSubprogram())
            fi->file = llvm::sys::path::filename(sp->getFilename()).str();
    }
    for (auto& fi : cx.fns) {
        std::string bare = display_name(*fi->f, true), full = display_name(*fi->f, false);
        fi->display = bare_uses[bare] == 1   ? bare
                      : full_uses[full] == 1 ? full
                                             : fi->f->getName().str();
    }
    for (auto& fi : cx.fns) {
        const std::string fname = fi->f->getName().str();
        std::map<std::string, unsigned> name_uses;
        auto add = [&](SegInfo si, unsigned pos) {
            Segment& s = si.seg;
            s.id = seg_id(s.kind, fname, pos);
            s.sid = seg_sid(s.kind, fi->shash, pos);
            s.shash = fi->shash;
            s.function = fname;
            if (s.kind == SegmentKind::kFunction) {
                s.name = "fn:" + fi->display;
            } else {
                std::string base =
                    fmt::format("{}:{}:{}", to_string(s.kind), fi->display,
                                s.line ? std::to_string(s.line) : "#" + std::to_string(pos));
                unsigned n = ++name_uses[base];
                s.name = n == 1 ? base : fmt::format("{}.{}", base, n);
            }
            si.fn = fi.get();
            cx.segs.push_back(std::move(si));
        };
        SegInfo fs;
        fs.seg.kind = SegmentKind::kFunction;
        if (auto* sp = fi->f->getSubprogram())
            fs.seg.line = sp->getLine();
        add(std::move(fs), 0);

        llvm::DenseMap<const llvm::BasicBlock*, LazyGuard*> guard_of;
        for (auto& g : fi->guards)
            guard_of[g.block] = &g;
        unsigned nloop = 0, nbr = 0, nsw = 0;
        for (auto& bb : *fi->f) {
            if (fi->li->isLoopHeader(&bb)) {
                llvm::Loop* l = fi->li->getLoopFor(&bb);
                SegInfo si;
                si.seg.kind = SegmentKind::kLoop;
                si.loop = l;
                si.block = &bb;
                si.seg.line = l->getStartLoc() ? l->getStartLoc().getLine() : first_line(&bb);
                si.region.assign(l->block_begin(), l->block_end());
                add(std::move(si), nloop++);
            }
            auto* term = bb.getTerminator();
            if (auto* br = llvm::dyn_cast<llvm::BranchInst>(term); br && br->isConditional()) {
                SegInfo si;
                si.seg.kind = SegmentKind::kBranch;
                si.block = &bb;
                si.seg.line = line_of(br) ? line_of(br) : first_line(&bb);
                llvm::BasicBlock* s0 = br->getSuccessor(0);
                llvm::BasicBlock* s1 = br->getSuccessor(1);
                llvm::BasicBlock* merge = nullptr;
                if (auto* n = fi->pdt->getNode(&bb))
                    if (auto* idom = n->getIDom())
                        merge = idom->getBlock();
                // The segment is the branch's guarded arm: the side that is
                // not simply the code after the if (docs/analysis.md).
                if (auto* g = guard_of.lookup(&bb)) {
                    si.arm = g->arm;
                    si.seg.lazy_init = true;
                } else if (s1 == merge && s0 != merge) {
                    si.arm = s0;
                } else if (s0 == merge && s1 != merge) {
                    si.arm = s1;
                } else {
                    si.arm = s0;
                }
                si.region = arm_region(*fi, &bb, si.arm);
                add(std::move(si), nbr++);
            } else if (auto* sw = llvm::dyn_cast<llvm::SwitchInst>(term)) {
                SegInfo si;
                si.seg.kind = SegmentKind::kSwitch;
                si.block = &bb;
                si.seg.line = line_of(sw) ? line_of(sw) : first_line(&bb);
                si.region = arm_region(*fi, &bb, &bb);
                add(std::move(si), nsw++);
            }
        }
    }
}

} // namespace presnap::analysis::detail
