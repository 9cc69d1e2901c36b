// Persistent effects (what a snapshot can keep) and lazy-initialisation
// guards. docs/analysis.md, "Persistent effects", states the rules.
#include <llvm/Analysis/ValueTracking.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>

#include "internal.h"

namespace presnap::analysis::detail {

namespace {

const std::set<std::string, std::less<>> kAllocFns = {"malloc",
                                                      "calloc",
                                                      "realloc",
                                                      "reallocarray",
                                                      "aligned_alloc",
                                                      "memalign",
                                                      "valloc",
                                                      "pvalloc",
                                                      "strdup",
                                                      "strndup",
                                                      "mmap",
                                                      "_Znwm",
                                                      "_Znam",
                                                      "_ZnwmRKSt9nothrow_t",
                                                      "_ZnamRKSt9nothrow_t",
                                                      "_ZnwmSt11align_val_t",
                                                      "_ZnamSt11align_val_t"};

const std::set<std::string, std::less<>> kInputFns = {"getline",
                                                      "getdelim",
                                                      "fgets",
                                                      "fgets_unlocked",
                                                      "read",
                                                      "fread",
                                                      "fread_unlocked",
                                                      "scanf",
                                                      "fscanf",
                                                      "__isoc99_scanf",
                                                      "__isoc99_fscanf",
                                                      "getchar",
                                                      "getc",
                                                      "fgetc",
                                                      "getchar_unlocked",
                                                      "getc_unlocked",
                                                      "_IO_getc",
                                                      "recv",
                                                      "gets"};

bool is_input_fn(llvm::StringRef n) {
    return kInputFns.count(n) || n.startswith("_ZSt7getline") || n.startswith("_ZNSi") ||
           n.startswith("_ZStrs");
}

enum class RootKind { kGlobal, kGlobalRooted, kArg };
struct Root {
    RootKind kind;
    const llvm::GlobalVariable* g = nullptr;
    unsigned arg = 0;
};

const llvm::GlobalVariable* mutable_global(const llvm::Value* v) {
    auto* g = llvm::dyn_cast<llvm::GlobalVariable>(v);
    return g && !g->isConstant() ? g : nullptr;
}

// Where a pointer may point, as far as persistence goes: into a global,
// into memory reachable from a global, or through a parameter. Stack and
// fresh heap memory are not persistent by themselves.
// A pointer returned by one of the program's functions that returns a
// pointer into its argument (unique_ptr::_M_ptr(), vector::operator[]):
// the argument it points into.
const llvm::Value* through_accessor(const Context& cx, const llvm::Value* o) {
    auto* cb = llvm::dyn_cast<llvm::CallBase>(o);
    if (!cb)
        return nullptr;
    auto* callee = llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
    FnInfo* ci = callee ? cx.by_fn.lookup(callee) : nullptr;
    if (!ci || ci->returns_arg < 0 || static_cast<unsigned>(ci->returns_arg) >= cb->arg_size())
        return nullptr;
    return cb->getArgOperand(static_cast<unsigned>(ci->returns_arg));
}

// Where a pointer may point, as far as persistence goes: into a global,
// into memory reachable from a global, or through a parameter. Stack and
// fresh heap memory are not persistent by themselves.
std::vector<Root> roots(const Context& cx, const llvm::Value* ptr, int depth = 0) {
    std::vector<Root> out;
    // Loads through phis can chain forever (p = p->next): a few levels say
    // whether memory hangs off a global; deeper is treated as unknown.
    if (depth > 6)
        return out;
    llvm::SmallVector<const llvm::Value*, 4> objs;
    llvm::getUnderlyingObjects(ptr, objs, nullptr, 8);
    for (const llvm::Value* o : objs) {
        if (auto* g = mutable_global(o)) {
            out.push_back({RootKind::kGlobal, g});
        } else if (auto* arg = llvm::dyn_cast<llvm::Argument>(o)) {
            out.push_back({RootKind::kArg, nullptr, arg->getArgNo()});
        } else if (auto* ld = llvm::dyn_cast<llvm::LoadInst>(o)) {
            for (const Root& r : roots(cx, ld->getPointerOperand(), depth + 1))
                out.push_back(r.kind == RootKind::kGlobal ? Root{RootKind::kGlobalRooted, r.g} : r);
        } else if (const llvm::Value* inner = through_accessor(cx, o)) {
            for (const Root& r : roots(cx, inner, depth + 1))
                out.push_back(r);
        }
    }
    return out;
}

uint64_t bit(unsigned i) {
    return i < 64 ? 1ull << i : 0;
}

struct State {
    Context& cx;
    llvm::DenseSet<FnInfo*> escape_marked; // functions whose returned allocation escapes
    bool changed = false;

    // The functions whose allocation `v` may be (an alloc call: the caller).
    bool heap_sources(const llvm::Value* v, FnInfo* self, std::vector<FnInfo*>& from) {
        if (!v->getType()->isPointerTy())
            return false;
        llvm::SmallVector<const llvm::Value*, 4> objs;
        llvm::getUnderlyingObjects(v, objs, nullptr, 8);
        bool heap = false;
        for (const llvm::Value* o : objs) {
            auto* cb = llvm::dyn_cast<llvm::CallBase>(o);
            if (!cb)
                continue;
            auto* callee =
                llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
            if (!callee)
                continue;
            if (is_library(*callee) && kAllocFns.count(callee->getName())) {
                heap = true;
                from.push_back(self);
            } else if (FnInfo* ci = cx.by_fn.lookup(callee); ci && ci->returns_alloc) {
                heap = true;
                from.push_back(ci);
            }
        }
        return heap;
    }

    void mark_escape(FnInfo* f) {
        if (escape_marked.insert(f).second)
            changed = true;
    }

    // One pass over one function with the callees' current summaries.
    void visit(FnInfo& fi) {
        unsigned eff = 0;
        uint64_t wa = fi.writes_arg, ha = fi.heap_into_arg;
        bool ra = fi.returns_alloc, in = fi.reads_input;
        // -1 none seen, -2 not a single parameter; joined with the last
        // round's value so that recursion cannot make it oscillate.
        int ret_arg = fi.returns_arg_lattice;
        size_t nwrites = fi.writes.size();
        auto note_write = [&](llvm::BasicBlock* bb, const llvm::Value* ptr, bool heap,
                              const std::vector<FnInfo*>& from) {
            for (const Root& r : roots(cx, ptr)) {
                unsigned e = 0;
                if (r.kind == RootKind::kArg) {
                    wa |= bit(r.arg);
                    if (heap)
                        ha |= bit(r.arg);
                    continue;
                }
                e |= kWritesGlobal;
                if (r.kind == RootKind::kGlobal)
                    fi.writes.insert(r.g);
                if (heap) {
                    e |= kStoresHeapPtr;
                    for (FnInfo* src : from) {
                        if (src == &fi)
                            e |= kAllocEscapes;
                        else
                            mark_escape(src);
                    }
                }
                fi.block_effects[bb] |= e;
                eff |= e;
            }
        };
        for (auto& bb : *fi.f) {
            for (auto& i : bb) {
                if (auto* st = llvm::dyn_cast<llvm::StoreInst>(&i)) {
                    std::vector<FnInfo*> from;
                    bool heap = heap_sources(st->getValueOperand(), &fi, from);
                    note_write(&bb, st->getPointerOperand(), heap, from);
                } else if (auto* rmw = llvm::dyn_cast<llvm::AtomicRMWInst>(&i)) {
                    note_write(&bb, rmw->getPointerOperand(), false, {});
                } else if (auto* cx2 = llvm::dyn_cast<llvm::AtomicCmpXchgInst>(&i)) {
                    note_write(&bb, cx2->getPointerOperand(), false, {});
                } else if (auto* mi = llvm::dyn_cast<llvm::AnyMemIntrinsic>(&i)) {
                    note_write(&bb, mi->getRawDest(), false, {});
                } else if (auto* ret = llvm::dyn_cast<llvm::ReturnInst>(&i)) {
                    if (auto* rv = ret->getReturnValue(); rv && rv->getType()->isPointerTy()) {
                        auto rs = roots(cx, rv);
                        if (rs.size() == 1 && rs[0].kind == RootKind::kArg && ret_arg != -2)
                            ret_arg = (ret_arg == -1 || ret_arg == static_cast<int>(rs[0].arg))
                                          ? static_cast<int>(rs[0].arg)
                                          : -2;
                        else
                            ret_arg = -2;
                    }
                    if (auto* rv = ret->getReturnValue()) {
                        std::vector<FnInfo*> from;
                        if (heap_sources(rv, &fi, from)) {
                            ra = true;
                            if (escape_marked.count(&fi))
                                for (FnInfo* src : from) {
                                    if (src == &fi)
                                        eff |= kAllocEscapes,
                                            fi.block_effects[&bb] |= kAllocEscapes;
                                    else
                                        mark_escape(src);
                                }
                        }
                    }
                } else if (auto* cb = llvm::dyn_cast<llvm::CallBase>(&i)) {
                    if (llvm::isa<llvm::IntrinsicInst>(cb))
                        continue;
                    auto* callee =
                        llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
                    if (!callee)
                        continue;
                    FnInfo* ci = cx.by_fn.lookup(callee);
                    if (!ci) {
                        if (is_library(*callee) && is_input_fn(callee->getName()))
                            in = true;
                        // A library function may write through any pointer
                        // argument it does not promise to only read.
                        if (!is_library(*callee) || callee->onlyReadsMemory() ||
                            kAllocFns.count(callee->getName()))
                            continue;
                        for (unsigned a = 0; a < cb->arg_size(); a++) {
                            const llvm::Value* arg = cb->getArgOperand(a);
                            if (!arg->getType()->isPointerTy() || llvm::isa<llvm::Constant>(arg))
                                continue;
                            if (a < callee->arg_size() &&
                                (callee->hasParamAttribute(a, llvm::Attribute::ReadOnly) ||
                                 callee->hasParamAttribute(a, llvm::Attribute::ReadNone)))
                                continue;
                            note_write(&bb, arg, false, {});
                        }
                        continue;
                    }
                    for (unsigned a = 0; a < cb->arg_size() && a < 64; a++) {
                        bool w = ci->writes_arg & bit(a), h = ci->heap_into_arg & bit(a);
                        if (w || h)
                            note_write(&bb, cb->getArgOperand(a), h,
                                       h ? std::vector{ci} : std::vector<FnInfo*>{});
                    }
                }
            }
        }
        for (auto& e : fi.calls) {
            eff |= e.callee->effects;
            in |= e.callee->reads_input;
            for (auto* g : e.callee->writes)
                fi.writes.insert(g);
        }
        if (escape_marked.count(&fi))
            eff |= kAllocEscapes;
        for (auto& [bb, e] : fi.block_effects)
            eff |= e;
        if (eff != fi.effects || wa != fi.writes_arg || ha != fi.heap_into_arg ||
            ra != fi.returns_alloc || in != fi.reads_input || nwrites != fi.writes.size() ||
            ret_arg != fi.returns_arg_lattice)
            changed = true;
        fi.returns_arg_lattice = ret_arg;
        fi.returns_arg = std::max(ret_arg, -1);
        fi.effects |= eff;
        fi.writes_arg = wa;
        fi.heap_into_arg = ha;
        fi.returns_alloc = ra;
        fi.reads_input = in;
    }
};

} // namespace

void compute_effects(Context& cx) {
    State st{cx};
    auto sccs = call_sccs(cx);
    // Summaries only grow, so this reaches a fixed point; the bound is a
    // guard against a bug, not a tuning knob.
    for (int round = 0; round < 64; round++) {
        st.changed = false;
        for (auto& scc : sccs)
            for (FnInfo* f : scc)
                st.visit(*f);
        if (!st.changed)
            break;
    }
}

unsigned region_effects(const FnInfo& fi, const std::vector<llvm::BasicBlock*>& region) {
    llvm::DenseSet<const llvm::BasicBlock*> in(region.begin(), region.end());
    unsigned e = 0;
    for (auto* bb : region)
        e |= fi.block_effects.lookup(bb);
    for (auto& c : fi.calls)
        if (in.count(c.block))
            e |= c.callee->effects;
    return e;
}

namespace {

const llvm::Value* peel_casts(const llvm::Value* v) {
    while (auto* c = llvm::dyn_cast<llvm::CastInst>(v))
        v = c->getOperand(0);
    return v;
}

// `if (!g)`, `if (g == NULL)`, `if (!g.ready)`, C++ static-local guards:
// returns the global and which successor runs while it is still zero.
bool match_guard(Context& cx, const llvm::BranchInst* br, const llvm::GlobalVariable*& g,
                 unsigned& zero_succ, bool& accessor) {
    const llvm::Value* c = br->getCondition();
    bool flip = false;
    while (auto* bo = llvm::dyn_cast<llvm::BinaryOperator>(c)) {
        if (bo->getOpcode() != llvm::Instruction::Xor)
            return false;
        auto* k = llvm::dyn_cast<llvm::ConstantInt>(bo->getOperand(1));
        if (!k || !k->isOne())
            return false;
        flip = !flip;
        c = bo->getOperand(0);
    }
    const llvm::Value* x = nullptr;
    bool zero_on_true;
    if (auto* cmp = llvm::dyn_cast<llvm::ICmpInst>(c)) {
        if (!cmp->isEquality())
            return false;
        auto is_zero = [](const llvm::Value* v) {
            auto* k = llvm::dyn_cast<llvm::Constant>(v);
            return k && k->isNullValue();
        };
        if (is_zero(cmp->getOperand(1)))
            x = cmp->getOperand(0);
        else if (is_zero(cmp->getOperand(0)))
            x = cmp->getOperand(1);
        else
            return false;
        zero_on_true = cmp->getPredicate() == llvm::CmpInst::ICMP_EQ;
    } else {
        x = c; // a loaded bool, truncated to i1
        zero_on_true = false;
    }
    x = peel_casts(x);
    const llvm::Value* ptr = nullptr;
    if (auto* ld = llvm::dyn_cast<llvm::LoadInst>(x)) {
        ptr = ld->getPointerOperand();
    } else if (auto* cb = llvm::dyn_cast<llvm::CallBase>(x)) {
        // An accessor on the global: `if (!rules)` on a std::unique_ptr is
        // a call to its operator bool. Accept a call of one of the
        // program's functions with a single pointer argument into a global
        // that writes nothing itself.
        auto* callee = llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
        FnInfo* ci = callee ? cx.by_fn.lookup(callee) : nullptr;
        if (!ci || cb->arg_size() != 1 || !cb->getArgOperand(0)->getType()->isPointerTy() ||
            ci->effects != 0 || ci->writes_arg != 0)
            return false;
        ptr = cb->getArgOperand(0);
        accessor = true;
    } else {
        return false;
    }
    g = mutable_global(llvm::getUnderlyingObject(ptr, 8));
    if (!g)
        return false;
    zero_succ = (zero_on_true != flip) ? 0 : 1;
    return true;
}

bool region_writes(const FnInfo& fi, const std::vector<llvm::BasicBlock*>& region,
                   const llvm::GlobalVariable* g, Context& cx) {
    auto hits = [&](const llvm::Value* ptr) {
        return mutable_global(llvm::getUnderlyingObject(ptr, 8)) == g;
    };
    for (auto* bb : region) {
        for (auto& i : *bb) {
            if (auto* st = llvm::dyn_cast<llvm::StoreInst>(&i); st && hits(st->getPointerOperand()))
                return true;
            if (auto* mi = llvm::dyn_cast<llvm::AnyMemIntrinsic>(&i); mi && hits(mi->getRawDest()))
                return true;
            auto* cb = llvm::dyn_cast<llvm::CallBase>(&i);
            if (!cb || llvm::isa<llvm::IntrinsicInst>(cb))
                continue;
            auto* callee =
                llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
            FnInfo* ci = callee ? cx.by_fn.lookup(callee) : nullptr;
            if (!ci)
                continue;
            if (ci->writes.count(g))
                return true;
            for (unsigned a = 0; a < cb->arg_size() && a < 64; a++)
                if ((ci->writes_arg & bit(a)) && hits(cb->getArgOperand(a)))
                    return true;
        }
    }
    (void)fi;
    return false;
}

} // namespace

void find_lazy_guards(Context& cx) {
    for (auto& fi : cx.fns) {
        for (auto& bb : *fi->f) {
            auto* br = llvm::dyn_cast<llvm::BranchInst>(bb.getTerminator());
            if (!br || !br->isConditional())
                continue;
            const llvm::GlobalVariable* g = nullptr;
            unsigned zs = 0;
            bool accessor = false;
            if (!match_guard(cx, br, g, zs, accessor))
                continue;
            llvm::BasicBlock* arm = br->getSuccessor(zs);
            auto region = arm_region(*fi, &bb, arm);
            // The C++ ABI's guard variables are set by __cxa_guard_release,
            // which is outside the module: their guarded side is the
            // static-local initialiser by construction.
            bool cxx_guard = g->getName().startswith("_ZGV");
            bool ok = !region.empty() && (cxx_guard || region_writes(*fi, region, g, cx));
            if (!ok && accessor) {
                // An accessor's truth may mean "empty" (vector::empty()):
                // then the other side is the one that fills the global.
                arm = br->getSuccessor(1 - zs);
                region = arm_region(*fi, &bb, arm);
                ok = !region.empty() && region_writes(*fi, region, g, cx);
            }
            if (!ok)
                continue;
            fi->guards.push_back({&bb, arm, g});
        }
    }
}

} // namespace presnap::analysis::detail
