// Persistent effects (what a snapshot can keep) and lazy-initialisation
// guards. docs/analysis.md, "Persistent effects", states the rules.
#include <algorithm>
#include <optional>

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

const llvm::GlobalVariable* mutable_global(const llvm::Value* v) {
    auto* g = llvm::dyn_cast<llvm::GlobalVariable>(v);
    return g && !g->isConstant() ? g : nullptr;
}

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

// The mutable globals whose addresses a constant initializer holds
// (`static struct table* const tables[] = {&evens, &odds}`).
void globals_in(const llvm::Constant* c, std::vector<PtrRoot>& out, int depth = 0) {
    if (depth > 4 || out.size() > 64)
        return;
    const llvm::Value* base = c->stripPointerCasts();
    if (auto* ce = llvm::dyn_cast<llvm::ConstantExpr>(base);
        ce && ce->getOpcode() == llvm::Instruction::GetElementPtr)
        base = ce->getOperand(0)->stripPointerCasts();
    if (auto* g = mutable_global(base)) {
        PtrRoot r{RootKind::kGlobal, g};
        if (std::find(out.begin(), out.end(), r) == out.end())
            out.push_back(r);
        return;
    }
    if (llvm::isa<llvm::ConstantAggregate>(c))
        for (const llvm::Use& op : c->operands())
            globals_in(llvm::cast<llvm::Constant>(op.get()), out, depth + 1);
}

// Where a pointer may point, as far as persistence goes: into a global,
// into memory reachable from a global, or through a parameter. Stack and
// fresh heap memory are not persistent by themselves.
std::vector<PtrRoot> roots(const Context& cx, const llvm::Value* ptr, int depth = 0) {
    std::vector<PtrRoot> out;
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
            // A pointer loaded from a constant table points where the
            // table's initializer says.
            auto* cg = llvm::dyn_cast<llvm::GlobalVariable>(
                llvm::getUnderlyingObject(ld->getPointerOperand(), 8));
            if (cg && cg->isConstant() && cg->hasDefinitiveInitializer()) {
                globals_in(cg->getInitializer(), out);
                continue;
            }
            for (const PtrRoot& r : roots(cx, ld->getPointerOperand(), depth + 1))
                out.push_back(r.kind == RootKind::kGlobal ? PtrRoot{RootKind::kGlobalRooted, r.g}
                                                          : r);
        } else if (const llvm::Value* inner = through_accessor(cx, o)) {
            for (const PtrRoot& r : roots(cx, inner, depth + 1))
                out.push_back(r);
        } else if (auto* cb = llvm::dyn_cast<llvm::CallBase>(o)) {
            // A program function that returns a pointer into persistent
            // memory (a lookup that returns &table[i]).
            auto* callee =
                llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
            if (FnInfo* ci = callee ? cx.by_fn.lookup(callee) : nullptr)
                out.insert(out.end(), ci->ret_roots.begin(), ci->ret_roots.end());
        }
    }
    return out;
}

// Library functions known to keep no state behind the pointers they are
// given (docs/analysis.md, "Calls into code without bitcode"): the value
// is the set of arguments they write as plain output (a buffer, an end
// pointer), which count like stores. Stdio and iostream objects (stdout,
// std::cout) are the library's internals and are not counted.
constexpr uint64_t kArg0 = 1, kArg1 = 2, kArg2 = 4, kArg3 = 8;
constexpr uint64_t kAllButFirst = ~1ull, kAllButTwo = ~3ull;
const std::map<std::string, uint64_t, std::less<>> kSideEffectFree = {
    // string.h, strings.h: reading
    {"strlen", 0},
    {"strnlen", 0},
    {"strcmp", 0},
    {"strncmp", 0},
    {"strcasecmp", 0},
    {"strncasecmp", 0},
    {"strcoll", 0},
    {"memcmp", 0},
    {"bcmp", 0},
    {"strchr", 0},
    {"strrchr", 0},
    {"strchrnul", 0},
    {"strstr", 0},
    {"strcasestr", 0},
    {"strspn", 0},
    {"strcspn", 0},
    {"strpbrk", 0},
    {"memchr", 0},
    {"memrchr", 0},
    {"rawmemchr", 0},
    {"index", 0},
    {"rindex", 0},
    {"strverscmp", 0},
    // string.h: writing their destination
    {"memcpy", kArg0},
    {"memmove", kArg0},
    {"memset", kArg0},
    {"bzero", kArg0},
    {"strcpy", kArg0},
    {"strncpy", kArg0},
    {"strcat", kArg0},
    {"strncat", kArg0},
    {"stpcpy", kArg0},
    {"stpncpy", kArg0},
    {"strtok", kArg0},
    {"strtok_r", kArg0 | kArg2},
    {"strsep", kArg0},
    {"__memcpy_chk", kArg0},
    {"__memmove_chk", kArg0},
    {"__memset_chk", kArg0},
    {"__strcpy_chk", kArg0},
    {"__strcat_chk", kArg0},
    // stdlib.h conversions, searching, sorting
    {"atoi", 0},
    {"atol", 0},
    {"atoll", 0},
    {"atof", 0},
    {"strtol", kArg1},
    {"strtoul", kArg1},
    {"strtoll", kArg1},
    {"strtoull", kArg1},
    {"strtod", kArg1},
    {"strtof", kArg1},
    {"strtold", kArg1},
    {"strtoimax", kArg1},
    {"strtoumax", kArg1},
    {"bsearch", 0},
    {"qsort", kArg0},
    {"getenv", 0},
    {"free", kArg0},
    // search.h, regex.h: lookups
    {"tfind", 0},
    {"twalk", 0},
    {"lfind", 0},
    {"regexec", kArg3},
    {"regerror", kArg2},
    // math.h with output parameters
    {"frexp", kArg1},
    {"frexpf", kArg1},
    {"modf", kArg1},
    {"modff", kArg1},
    {"remquo", kArg2},
    {"sincos", kArg1 | kArg2},
    {"lgamma_r", kArg1},
    // time.h
    {"time", kArg0},
    {"localtime_r", kArg1},
    {"gmtime_r", kArg1},
    {"strftime", kArg0},
    {"clock_gettime", kArg1},
    {"gettimeofday", kArg0},
    // formatting into a buffer, stdio output, input into a buffer
    {"snprintf", kArg0},
    {"sprintf", kArg0},
    {"vsnprintf", kArg0},
    {"vsprintf", kArg0},
    {"__snprintf_chk", kArg0},
    {"__sprintf_chk", kArg0},
    {"__vsnprintf_chk", kArg0},
    {"printf", 0},
    {"vprintf", 0},
    {"fprintf", 0},
    {"vfprintf", 0},
    {"dprintf", 0},
    {"__printf_chk", 0},
    {"__fprintf_chk", 0},
    {"puts", 0},
    {"putchar", 0},
    {"fputs", 0},
    {"fputc", 0},
    {"putc", 0},
    {"fwrite", 0},
    {"fflush", 0},
    {"fputs_unlocked", 0},
    {"fputc_unlocked", 0},
    {"putc_unlocked", 0},
    {"putchar_unlocked", 0},
    {"fwrite_unlocked", 0},
    {"perror", 0},
    {"write", 0},
    {"fgets", kArg0},
    {"fgets_unlocked", kArg0},
    {"fread", kArg0},
    {"fread_unlocked", kArg0},
    {"read", kArg1},
    {"recv", kArg1},
    {"getline", kArg0 | kArg1},
    {"getdelim", kArg0 | kArg1},
    {"getchar", 0},
    {"getc", 0},
    {"fgetc", 0},
    {"_IO_getc", 0},
    {"getc_unlocked", 0},
    {"getchar_unlocked", 0},
    {"scanf", kAllButFirst},
    {"__isoc99_scanf", kAllButFirst},
    {"sscanf", kAllButTwo},
    {"__isoc99_sscanf", kAllButTwo},
    {"fscanf", kAllButTwo},
    {"__isoc99_fscanf", kAllButTwo},
    // C++ ABI: static-local guards write their guard variable
    {"__cxa_guard_acquire", kArg0},
    {"__cxa_guard_release", kArg0},
    {"__cxa_guard_abort", kArg0},
    // libstdc++: hashing and tree iteration read only
    {"_ZSt11_Hash_bytesPKvmm", 0},
    {"_ZSt15_Fnv_hash_bytesPKvmm", 0},
    {"_ZSt18_Rb_tree_incrementPKSt18_Rb_tree_node_base", 0},
    {"_ZSt18_Rb_tree_incrementPSt18_Rb_tree_node_base", 0},
    {"_ZSt18_Rb_tree_decrementPKSt18_Rb_tree_node_base", 0},
    {"_ZSt18_Rb_tree_decrementPSt18_Rb_tree_node_base", 0},
};

// The arguments a side-effect-free library function writes, or nullopt if
// it is not known to be one.
std::optional<uint64_t> side_effect_free(const llvm::Function& f) {
    llvm::StringRef n = f.getName();
    if (auto it = kSideEffectFree.find(n); it != kSideEffectFree.end())
        return it->second;
    // std::ostream output (the stream is the library's), std::istream input
    // (writes its destination arguments), std::string members (write the
    // string itself), and const members of the standard library (write
    // only an sret result).
    if (n.startswith("_ZNSo") || n.startswith("_ZStlsI") || n.startswith("_ZSt16__ostream_insert"))
        return 0;
    if (n.startswith("_ZNSi") || n.startswith("_ZStrs") || n.startswith("_ZSt7getline"))
        return kAllButFirst;
    if (n.startswith("_ZNSt7__cxx1112basic_string"))
        return kArg0 | kArg1;
    if (n.startswith("_ZNKSt")) {
        uint64_t m = 0;
        for (unsigned a = 0; a < f.arg_size() && a < 64; a++)
            if (f.hasParamAttribute(a, llvm::Attribute::StructRet))
                m |= 1ull << a;
        return m;
    }
    return std::nullopt;
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
        size_t nwrites = fi.writes.size(), nret_roots = fi.ret_roots.size();
        fi.ext_calls.clear();
        auto note_write = [&](llvm::BasicBlock* bb, const llvm::Value* ptr, bool heap,
                              const std::vector<FnInfo*>& from, llvm::CallBase* ext,
                              unsigned ext_arg) {
            for (const PtrRoot& r : roots(cx, ptr)) {
                if (ext)
                    fi.ext_calls.push_back({bb, ext, ext_arg, r});
                if (r.kind == RootKind::kArg) {
                    wa |= bit(r.arg);
                    if (heap)
                        ha |= bit(r.arg);
                    if (!ext) {
                        fi.block_arg_writes[bb] |= bit(r.arg);
                        if (heap)
                            fi.block_arg_heap[bb] |= bit(r.arg);
                    }
                    continue;
                }
                unsigned e = kWritesGlobal;
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
                if (!ext)
                    fi.block_own_effects[bb] |= e;
                eff |= e;
            }
        };
        for (auto& bb : *fi.f) {
            for (auto& i : bb) {
                if (auto* st = llvm::dyn_cast<llvm::StoreInst>(&i)) {
                    std::vector<FnInfo*> from;
                    bool heap = heap_sources(st->getValueOperand(), &fi, from);
                    note_write(&bb, st->getPointerOperand(), heap, from, nullptr, 0);
                } else if (auto* rmw = llvm::dyn_cast<llvm::AtomicRMWInst>(&i)) {
                    note_write(&bb, rmw->getPointerOperand(), false, {}, nullptr, 0);
                } else if (auto* cx2 = llvm::dyn_cast<llvm::AtomicCmpXchgInst>(&i)) {
                    note_write(&bb, cx2->getPointerOperand(), false, {}, nullptr, 0);
                } else if (auto* mi = llvm::dyn_cast<llvm::AnyMemIntrinsic>(&i)) {
                    note_write(&bb, mi->getRawDest(), false, {}, nullptr, 0);
                } else if (auto* ret = llvm::dyn_cast<llvm::ReturnInst>(&i)) {
                    if (auto* rv = ret->getReturnValue(); rv && rv->getType()->isPointerTy()) {
                        auto rs = roots(cx, rv);
                        if (rs.size() == 1 && rs[0].kind == RootKind::kArg && ret_arg != -2)
                            ret_arg = (ret_arg == -1 || ret_arg == static_cast<int>(rs[0].arg))
                                          ? static_cast<int>(rs[0].arg)
                                          : -2;
                        else
                            ret_arg = -2;
                        for (const PtrRoot& r : rs)
                            if (r.kind != RootKind::kArg &&
                                std::find(fi.ret_roots.begin(), fi.ret_roots.end(), r) ==
                                    fi.ret_roots.end() &&
                                fi.ret_roots.size() < 16)
                                fi.ret_roots.push_back(r);
                    }
                    if (auto* rv = ret->getReturnValue()) {
                        std::vector<FnInfo*> from;
                        if (heap_sources(rv, &fi, from)) {
                            ra = true;
                            if (escape_marked.count(&fi))
                                for (FnInfo* src : from) {
                                    if (src == &fi)
                                        eff |= kAllocEscapes,
                                            fi.block_effects[&bb] |= kAllocEscapes,
                                            fi.block_own_effects[&bb] |= kAllocEscapes;
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
                        if (!is_library(*callee) || kAllocFns.count(callee->getName()))
                            continue;
                        // A function without bitcode may keep state behind
                        // any pointer it is given, unless it is known not
                        // to: then it only writes its output arguments.
                        auto pure = side_effect_free(*callee);
                        if (!pure && callee->onlyReadsMemory())
                            continue;
                        for (unsigned a = 0; a < cb->arg_size(); a++) {
                            const llvm::Value* arg = cb->getArgOperand(a);
                            if (!arg->getType()->isPointerTy())
                                continue;
                            if (pure) {
                                if (a < 64 && (*pure >> a & 1))
                                    note_write(&bb, arg, false, {}, nullptr, 0);
                                continue;
                            }
                            if (a < callee->arg_size() &&
                                (callee->hasParamAttribute(a, llvm::Attribute::ReadOnly) ||
                                 callee->hasParamAttribute(a, llvm::Attribute::ReadNone)))
                                continue;
                            note_write(&bb, arg, false, {}, cb, a);
                        }
                        continue;
                    }
                    for (unsigned a = 0; a < cb->arg_size() && a < 64; a++) {
                        bool w = ci->writes_arg & bit(a), h = ci->heap_into_arg & bit(a);
                        if (w || h)
                            note_write(&bb, cb->getArgOperand(a), h,
                                       h ? std::vector{ci} : std::vector<FnInfo*>{}, nullptr, 0);
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
            nret_roots != fi.ret_roots.size() || ret_arg != fi.returns_arg_lattice)
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

// Top-down: a parameter is persistent when every call of the function
// passes persistent memory for it (a global, memory reachable from one, or
// the caller's own persistent parameter). "Every", not "some": library
// code called on both globals and locals (std::string's members) is not
// made warm for all its callers; a caller that passes persistent memory
// is warm at its call site anyway. A greatest fixed point: start from "all
// parameters" for functions the program calls, and clear what some call
// does not pass. Functions without callers in the module (entries,
// callbacks handed to the library) have none.
void find_persistent_params(Context& cx, const std::vector<std::vector<FnInfo*>>& sccs) {
    llvm::DenseMap<FnInfo*, std::vector<std::pair<FnInfo*, const CallEdge*>>> callers;
    for (auto& fi : cx.fns)
        for (auto& e : fi->calls)
            callers[e.callee].push_back({fi.get(), &e});
    const std::vector<std::pair<FnInfo*, const CallEdge*>> none;
    auto callers_of = [&](FnInfo * f) -> const auto& {
        auto it = callers.find(f);
        return it == callers.end() ? none : it->second;
    };
    for (auto& fi : cx.fns) {
        bool known = callers.count(fi.get()) != 0;
        for (auto& [caller, e] : callers_of(fi.get()))
            if (!e->direct &&
                llvm::isa<llvm::Function>(e->call->getCalledOperand()->stripPointerCasts()))
                known = false; // handed to a library function: called from unseen code
        fi->persistent_args = known ? ~0ull : 0;
    }
    for (int round = 0; round < 64; round++) {
        bool changed = false;
        for (auto it = sccs.rbegin(); it != sccs.rend(); ++it)
            for (FnInfo* f : *it) {
                if (!f->persistent_args)
                    continue;
                uint64_t keep = f->persistent_args;
                for (auto& [caller, e] : callers_of(f))
                    for (unsigned a = 0; a < 64 && keep; a++) {
                        if (!(keep & bit(a)))
                            continue;
                        if (a >= e->call->arg_size() ||
                            !e->call->getArgOperand(a)->getType()->isPointerTy()) {
                            keep &= ~bit(a);
                            continue;
                        }
                        auto rs = roots(cx, e->call->getArgOperand(a));
                        bool all = !rs.empty();
                        for (const PtrRoot& r : rs)
                            all = all && persistent(*caller, r);
                        if (!all)
                            keep &= ~bit(a);
                    }
                changed |= keep != f->persistent_args;
                f->persistent_args = keep;
            }
        if (!changed)
            break;
    }
}

// Writes through persistent parameters become effects of the blocks that
// make them; then effects are summed over callees again.
void apply_persistent_params(Context& cx, const std::vector<std::vector<FnInfo*>>& sccs) {
    for (auto& fi : cx.fns) {
        for (auto& [bb, args] : fi->block_arg_writes) {
            if (!(args & fi->persistent_args))
                continue;
            unsigned e = kWritesGlobal;
            if (fi->block_arg_heap.lookup(bb) & fi->persistent_args)
                e |= kStoresHeapPtr;
            fi->block_effects[bb] |= e;
            fi->block_own_effects[bb] |= e;
        }
        for (auto& c : fi->ext_calls)
            if (c.root.kind == RootKind::kArg && persistent(*fi, c.root))
                fi->block_effects[c.block] |= kWritesGlobal;
    }
    for (int round = 0; round < 64; round++) {
        bool changed = false;
        for (auto& scc : sccs)
            for (FnInfo* f : scc) {
                unsigned e = f->effects, own = f->own_effects;
                for (auto& [bb, be] : f->block_effects)
                    e |= be;
                for (auto& [bb, be] : f->block_own_effects)
                    own |= be;
                for (auto& c : f->calls) {
                    e |= c.callee->effects;
                    own |= c.callee->own_effects;
                }
                changed |= e != f->effects || own != f->own_effects;
                f->effects = e;
                f->own_effects = own;
            }
        if (!changed)
            break;
    }
}

} // namespace

std::vector<PtrRoot> pointer_roots(const Context& cx, const llvm::Value* ptr) {
    return roots(cx, ptr);
}

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
    find_persistent_params(cx, sccs);
    apply_persistent_params(cx, sccs);
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

// What a candidate guard tests: the loaded location (or, for an accessor,
// the object it is called on) and which successor runs while it is unset.
struct GuardTest {
    const llvm::Value* ptr = nullptr;
    unsigned unset_succ = 0;
    bool accessor = false;
};

// `if (!g)`, `if (g == NULL)`, `if (!t->cache)`, `if (r->ready) return`,
// `if (e->ref != NONE) return` (a sentinel: the unset side is the one where
// the value equals the constant), C++ accessors and static-local guards.
bool match_guard(Context& cx, const llvm::BranchInst* br, GuardTest& t) {
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
    bool unset_on_true;
    if (auto* cmp = llvm::dyn_cast<llvm::ICmpInst>(c)) {
        if (!cmp->isEquality())
            return false;
        auto is_sentinel = [](const llvm::Value* v) {
            auto* k = llvm::dyn_cast<llvm::Constant>(v);
            return k && (k->isNullValue() || llvm::isa<llvm::ConstantInt>(k));
        };
        if (is_sentinel(cmp->getOperand(1)))
            x = cmp->getOperand(0);
        else if (is_sentinel(cmp->getOperand(0)))
            x = cmp->getOperand(1);
        else
            return false;
        unset_on_true = cmp->getPredicate() == llvm::CmpInst::ICMP_EQ;
    } else {
        x = c; // a loaded bool, truncated to i1
        unset_on_true = false;
    }
    x = peel_casts(x);
    if (auto* ld = llvm::dyn_cast<llvm::LoadInst>(x)) {
        t.ptr = ld->getPointerOperand();
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
        t.ptr = cb->getArgOperand(0);
        t.accessor = true;
    } else {
        return false;
    }
    t.unset_succ = (unset_on_true != flip) ? 0 : 1;
    return true;
}

// The state a guard tests, and whether a region sets it.
struct GuardState {
    const llvm::GlobalVariable* g = nullptr; // a mutable global (or a field of one)
    const llvm::Value* base = nullptr;       // else: a field of persistent memory
    int64_t offset = 0;
    const llvm::DataLayout* dl = nullptr;

    bool hits(const llvm::Value* p, bool any_offset) const {
        if (g)
            return mutable_global(llvm::getUnderlyingObject(p, 8)) == g;
        int64_t off = 0;
        const llvm::Value* b = llvm::GetPointerBaseWithConstantOffset(p, off, *dl);
        return b == base && (any_offset || off == offset);
    }
};

bool region_writes(const std::vector<llvm::BasicBlock*>& region, const GuardState& gs,
                   Context& cx) {
    for (auto* bb : region) {
        for (auto& i : *bb) {
            if (auto* st = llvm::dyn_cast<llvm::StoreInst>(&i);
                st && gs.hits(st->getPointerOperand(), false))
                return true;
            if (auto* mi = llvm::dyn_cast<llvm::AnyMemIntrinsic>(&i);
                mi && gs.hits(mi->getRawDest(), true))
                return true;
            auto* cb = llvm::dyn_cast<llvm::CallBase>(&i);
            if (!cb || llvm::isa<llvm::IntrinsicInst>(cb))
                continue;
            auto* callee =
                llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
            FnInfo* ci = callee ? cx.by_fn.lookup(callee) : nullptr;
            if (!ci && callee && is_library(*callee)) {
                // sqlite3_prepare_v2(db, sql, -1, &r->stmt, NULL): a library
                // function given the state's address may set it.
                auto pure = side_effect_free(*callee);
                for (unsigned a = 0; a < cb->arg_size(); a++) {
                    const llvm::Value* arg = cb->getArgOperand(a);
                    if (!arg->getType()->isPointerTy() || !gs.hits(arg, false))
                        continue;
                    if (pure ? (a < 64 && (*pure >> a & 1))
                             : !(a < callee->arg_size() &&
                                 (callee->hasParamAttribute(a, llvm::Attribute::ReadOnly) ||
                                  callee->hasParamAttribute(a, llvm::Attribute::ReadNone))))
                        return true;
                }
                continue;
            }
            if (!ci)
                continue;
            if (gs.g && ci->writes.count(gs.g))
                return true;
            for (unsigned a = 0; a < cb->arg_size() && a < 64; a++)
                if ((ci->writes_arg & bit(a)) && gs.hits(cb->getArgOperand(a), !gs.g))
                    return true;
        }
    }
    return false;
}

// The state behind a guard's pointer, if it is persistent: a mutable
// global, or a field (base + constant offset) of memory that may be a
// global's (a persistent parameter, a pointer loaded from a global).
std::optional<GuardState> guard_state(Context& cx, const FnInfo& fi, const llvm::Value* ptr,
                                      bool accessor) {
    GuardState gs;
    if ((gs.g = mutable_global(llvm::getUnderlyingObject(ptr, 8))))
        return gs;
    if (accessor)
        return std::nullopt;
    bool any = false;
    for (const PtrRoot& r : roots(cx, ptr))
        any |= persistent(fi, r);
    if (!any)
        return std::nullopt;
    gs.dl = &fi.f->getParent()->getDataLayout();
    gs.base = llvm::GetPointerBaseWithConstantOffset(ptr, gs.offset, *gs.dl);
    if (!llvm::isa<llvm::Instruction>(gs.base) && !llvm::isa<llvm::Argument>(gs.base))
        return std::nullopt;
    return gs;
}

} // namespace

void find_lazy_guards(Context& cx) {
    for (auto& fi : cx.fns) {
        for (auto& bb : *fi->f) {
            auto* br = llvm::dyn_cast<llvm::BranchInst>(bb.getTerminator());
            if (!br || !br->isConditional())
                continue;
            GuardTest t;
            if (!match_guard(cx, br, t))
                continue;
            auto gs = guard_state(cx, *fi, t.ptr, t.accessor);
            if (!gs)
                continue;
            llvm::BasicBlock* arm = br->getSuccessor(t.unset_succ);
            auto region = arm_region(*fi, &bb, arm);
            // The C++ ABI's guard variables are set by __cxa_guard_release,
            // which is outside the module: their guarded side is the
            // static-local initialiser by construction.
            bool cxx_guard = gs->g && gs->g->getName().startswith("_ZGV");
            bool ok = !region.empty() && (cxx_guard || region_writes(region, *gs, cx));
            if (!ok && t.accessor) {
                // An accessor's truth may mean "empty" (vector::empty()):
                // then the other side is the one that fills the global.
                arm = br->getSuccessor(1 - t.unset_succ);
                region = arm_region(*fi, &bb, arm);
                ok = !region.empty() && region_writes(region, *gs, cx);
            }
            if (!ok)
                continue;
            fi->guards.push_back({&bb, arm});
        }
    }
}

} // namespace presnap::analysis::detail
