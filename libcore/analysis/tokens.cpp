// Route tokens: string constants that request data is compared against on
// the way to a segment (docs/analysis.md, "Route tokens").
#include <llvm/Demangle/Demangle.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/DebugInfoMetadata.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/Support/Path.h>

#include "internal.h"

namespace presnap::analysis::detail {

namespace {

enum class Match { kIfZero, kIfNonZero };

struct CmpFn {
    int arg_a, arg_b; // the two compared operands
    int len_arg;      // -1: none
    Match match;
};

// Library comparisons by name. C++ std::string comparisons are matched on
// their demangled names below.
const std::map<std::string, CmpFn, std::less<>> kCmpFns = {
    {"strcmp", {0, 1, -1, Match::kIfZero}},     {"strncmp", {0, 1, 2, Match::kIfZero}},
    {"memcmp", {0, 1, 2, Match::kIfZero}},      {"bcmp", {0, 1, 2, Match::kIfZero}},
    {"strcasecmp", {0, 1, -1, Match::kIfZero}}, {"strncasecmp", {0, 1, 2, Match::kIfZero}},
    {"strstr", {0, 1, -1, Match::kIfNonZero}},  {"strcasestr", {0, 1, -1, Match::kIfNonZero}},
    {"strcoll", {0, 1, -1, Match::kIfZero}},
};

std::optional<std::string> const_string(const llvm::Value* v) {
    v = v->stripPointerCasts();
    if (auto* ce = llvm::dyn_cast<llvm::ConstantExpr>(v))
        if (ce->getOpcode() == llvm::Instruction::GetElementPtr)
            v = ce->getOperand(0)->stripPointerCasts();
    if (auto* gep = llvm::dyn_cast<llvm::GetElementPtrInst>(v); gep && gep->hasAllZeroIndices())
        v = gep->getPointerOperand()->stripPointerCasts();
    auto* gv = llvm::dyn_cast<llvm::GlobalVariable>(v);
    if (!gv || !gv->isConstant() || !gv->hasInitializer())
        return std::nullopt;
    auto* ds = llvm::dyn_cast<llvm::ConstantDataSequential>(gv->getInitializer());
    if (!ds || !ds->isString())
        return std::nullopt;
    std::string s = ds->getAsString().str();
    if (auto nul = s.find('\0'); nul != std::string::npos)
        s.resize(nul);
    return s;
}

std::optional<CmpFn> cmp_fn(const llvm::Function& f) {
    if (auto it = kCmpFns.find(f.getName()); it != kCmpFns.end())
        return it->second;
    llvm::StringRef n = f.getName();
    if (!n.startswith("_Z"))
        return std::nullopt;
    std::string d = llvm::demangle(n.str());
    bool str = d.find("basic_string") != std::string::npos;
    if (!str)
        return std::nullopt;
    if (d.find("::compare(") != std::string::npos)
        return CmpFn{0, 1, -1, Match::kIfZero}; // this, other
    if (d.find("operator==") != std::string::npos)
        return CmpFn{0, 1, -1, Match::kIfNonZero};
    return std::nullopt;
}

// Follows a comparison result to the branches it decides; records, for
// each, the successor taken when the request matched.
void follow(const llvm::Value* v, Match m, unsigned tok, FnInfo& fi,
            std::vector<std::pair<llvm::BasicBlock*, unsigned>>& arms, int depth) {
    if (depth > 6)
        return;
    for (const llvm::User* u : v->users()) {
        if (auto* cmp = llvm::dyn_cast<llvm::ICmpInst>(u)) {
            if (!cmp->isEquality())
                continue;
            auto* k = llvm::dyn_cast<llvm::Constant>(cmp->getOperand(1));
            if (!k || !k->isNullValue())
                continue;
            // result true iff v == 0 (eq) / v != 0 (ne)
            bool eq = cmp->getPredicate() == llvm::CmpInst::ICMP_EQ;
            Match r = (m == Match::kIfZero) == eq ? Match::kIfNonZero : Match::kIfZero;
            follow(cmp, r, tok, fi, arms, depth + 1);
        } else if (auto* bo = llvm::dyn_cast<llvm::BinaryOperator>(u)) {
            auto* k = llvm::dyn_cast<llvm::ConstantInt>(bo->getOperand(1));
            if (bo->getOpcode() == llvm::Instruction::Xor && k && k->isOne() &&
                bo->getType()->isIntegerTy(1))
                follow(bo, m == Match::kIfZero ? Match::kIfNonZero : Match::kIfZero, tok, fi, arms,
                       depth + 1);
        } else if (auto* c = llvm::dyn_cast<llvm::CastInst>(u)) {
            follow(c, m, tok, fi, arms, depth + 1);
        } else if (auto* phi = llvm::dyn_cast<llvm::PHINode>(u); phi && m == Match::kIfNonZero) {
            // r = word ? find_route(word) : NULL: non-null still means a match.
            bool others_null = true;
            for (const llvm::Value* in : phi->incoming_values())
                if (in != v)
                    if (auto* k = llvm::dyn_cast<llvm::Constant>(in); !k || !k->isNullValue())
                        others_null = false;
            if (others_null)
                follow(phi, m, tok, fi, arms, depth + 1);
        } else if (auto* br = llvm::dyn_cast<llvm::BranchInst>(u); br && br->isConditional()) {
            arms.push_back({br->getSuccessor(m == Match::kIfNonZero ? 0 : 1), tok});
        }
    }
}

bool is_byte_load(const llvm::Value* v) {
    while (auto* c = llvm::dyn_cast<llvm::CastInst>(v))
        v = c->getOperand(0);
    auto* ld = llvm::dyn_cast<llvm::LoadInst>(v);
    return ld && ld->getType()->isIntegerTy(8);
}

std::optional<std::string> byte_token(const llvm::ConstantInt* k) {
    int64_t c = k->getSExtValue();
    if (c < 0x21 || c > 0x7e)
        return std::nullopt;
    return std::string(1, static_cast<char>(c));
}

std::optional<std::string> leaf_string(const llvm::Constant* c) {
    if (auto* ds = llvm::dyn_cast<llvm::ConstantDataSequential>(c); ds && ds->isString()) {
        std::string s = ds->getAsString().str();
        if (auto nul = s.find('\0'); nul != std::string::npos)
            s.resize(nul);
        return s;
    }
    return const_string(c);
}

// Strings that an operand takes from a global table, per entry: a pointer
// loaded from a table field (tab[i].name, names[i]) or an inline char
// array in the table.
struct TableStrings {
    TablePath path;
    std::vector<std::pair<unsigned, std::string>> strings; // (entry, string)
};
std::optional<TableStrings> table_strings(const llvm::Value* v) {
    TableStrings ts;
    const llvm::Value* p = v;
    if (auto* ld = llvm::dyn_cast<llvm::LoadInst>(v))
        p = ld->getPointerOperand();
    if (!table_path(p, ts.path) || !ts.path.entry_var())
        return std::nullopt;
    std::vector<std::pair<unsigned, const llvm::Constant*>> leaves;
    table_leaves(ts.path.g->getInitializer(), ts.path.idx, 0, 0, false, leaves);
    for (auto& [entry, c] : leaves)
        if (auto s = leaf_string(c))
            ts.strings.push_back({entry, *s});
    if (ts.strings.empty())
        return std::nullopt;
    return ts;
}

// tab[i].run(...) where i is the index a table compare matched: the
// function in each entry, by entry.
std::vector<std::pair<unsigned, const llvm::Function*>> table_callees(const llvm::CallBase* cb,
                                                                      const TablePath& matched) {
    auto* ld = llvm::dyn_cast<llvm::LoadInst>(cb->getCalledOperand()->stripPointerCasts());
    TablePath p;
    if (!ld || !table_path(ld->getPointerOperand(), p) || p.g != matched.g ||
        p.entry_var() != matched.entry_var())
        return {};
    return table_functions(ld, false);
}

// Non-null only on a path that matched: the tokens of the blocks where
// the value was chosen (phi incoming edges) or computed.
bool nonnull_tokens(const llvm::Value* v, const FnInfo& fi, std::set<unsigned>& out,
                    int depth = 0) {
    if (depth > 8)
        return false;
    if (auto* k = llvm::dyn_cast<llvm::Constant>(v))
        return k->isNullValue() || llvm::isa<llvm::UndefValue>(k);
    auto tokens_of = [&](const llvm::BasicBlock* bb) -> const std::set<unsigned>* {
        auto it = fi.block_tokens.find(bb);
        return it == fi.block_tokens.end() || it->second.empty() ? nullptr : &it->second;
    };
    if (auto* phi = llvm::dyn_cast<llvm::PHINode>(v)) {
        for (unsigned k = 0; k < phi->getNumIncomingValues(); k++) {
            const llvm::Value* in = phi->getIncomingValue(k);
            if (auto* c = llvm::dyn_cast<llvm::Constant>(in);
                c && (c->isNullValue() || llvm::isa<llvm::UndefValue>(c)))
                continue;
            if (auto* t = tokens_of(phi->getIncomingBlock(k)))
                out.insert(t->begin(), t->end());
            else if (!nonnull_tokens(in, fi, out, depth + 1))
                return false;
        }
        return true;
    }
    if (auto* i = llvm::dyn_cast<llvm::Instruction>(v))
        if (auto* t = tokens_of(i->getParent())) {
            out.insert(t->begin(), t->end());
            return true;
        }
    return false;
}

constexpr size_t kMaxTokensPerSegment = 16;

// Code from the system's and the compiler's headers (libc, libstdc++).
bool system_code(const llvm::Function& f) {
    auto* sp = f.getSubprogram();
    if (!sp)
        return false;
    llvm::SmallString<256> path(sp->getFilename());
    if (!llvm::sys::path::is_absolute(path)) {
        path = sp->getDirectory();
        llvm::sys::path::append(path, sp->getFilename());
    }
    // clang names libstdc++'s headers /usr/bin/../lib/gcc/.../include/c++/12/...
    llvm::sys::path::remove_dots(path, true);
    for (llvm::StringRef dir : {"/usr/include/", "/usr/lib/", "/usr/local/include/"})
        if (path.str().startswith(dir))
            return true;
    return false;
}

} // namespace

void find_tokens(Context& cx) {
    // Handlers that a table entry or a registration names: their own tokens.
    llvm::DenseMap<const llvm::Function*, std::set<unsigned>> seeds;
    auto scan = [&](FnInfo& fi) {
        // Tables and registrations count in the program's own code, not in
        // library headers (libstdc++'s regex_traits looks names up in
        // tables of its own: they are not routes).
        const bool own = !system_code(*fi.f);
        // (arm, token): the arm runs only when the request matched the token.
        std::vector<std::pair<llvm::BasicBlock*, unsigned>> arms;
        // Table compares: the arms they decide and the table position.
        std::vector<std::pair<std::vector<llvm::BasicBlock*>, TableStrings>> table_arms;
        for (auto& bb : *fi.f) {
            for (auto& i : bb) {
                if (auto* cb = llvm::dyn_cast<llvm::CallBase>(&i)) {
                    auto* callee =
                        llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
                    if (!callee)
                        continue;
                    if (FnInfo* ci = cx.by_fn.lookup(callee); ci && !ci->match_tokens.empty()) {
                        // A lookup that returns the matching entry, or null.
                        for (unsigned t : ci->match_tokens)
                            follow(cb, Match::kIfNonZero, t, fi, arms, 0);
                        continue;
                    }
                    auto cf = cmp_fn(*callee);
                    if (!cf) {
                        // {"name", handler}: a registration under a constant
                        // name (a std::pair built for an unordered_map).
                        if (!own)
                            continue;
                        std::optional<std::string> name;
                        unsigned names = 0;
                        std::vector<const llvm::Function*> handlers;
                        for (auto& arg : cb->args()) {
                            if (auto s = const_string(arg.get()))
                                name = s, names++;
                            else if (auto* f =
                                         llvm::dyn_cast<llvm::Function>(arg->stripPointerCasts());
                                     f && cx.by_fn.lookup(f))
                                handlers.push_back(f);
                        }
                        if (names == 1 && !name->empty())
                            for (auto* f : handlers)
                                seeds[f].insert(cx.token(*name));
                        continue;
                    }
                    if (cb->arg_size() <= static_cast<unsigned>(std::max(cf->arg_a, cf->arg_b)))
                        continue;
                    auto s = const_string(cb->getArgOperand(cf->arg_b));
                    if (!s)
                        s = const_string(cb->getArgOperand(cf->arg_a));
                    size_t n = std::string::npos;
                    if (cf->len_arg >= 0 && static_cast<unsigned>(cf->len_arg) < cb->arg_size())
                        if (auto* k =
                                llvm::dyn_cast<llvm::ConstantInt>(cb->getArgOperand(cf->len_arg)))
                            n = k->getZExtValue();
                    if (s) {
                        if (n < s->size())
                            s->resize(n);
                        follow(cb, cf->match, cx.token(*s), fi, arms, 0);
                        continue;
                    }
                    // strcmp(tab[i].name, word): every name of the table.
                    if (!own)
                        continue;
                    auto ts = table_strings(cb->getArgOperand(cf->arg_b));
                    if (!ts)
                        ts = table_strings(cb->getArgOperand(cf->arg_a));
                    if (!ts)
                        continue;
                    std::vector<std::pair<llvm::BasicBlock*, unsigned>> mine;
                    std::set<std::string> distinct;
                    for (auto& [entry, str] : ts->strings) {
                        follow(cb, cf->match, cx.token(str.substr(0, n)), fi, mine, 0);
                        distinct.insert(str.substr(0, n));
                    }
                    // A table with more names than a segment can carry is a
                    // dictionary, not a set of routes: its entries' handlers
                    // still get their own names, the arm gets none.
                    bool small = distinct.size() <= kMaxTokensPerSegment;
                    std::vector<llvm::BasicBlock*> blocks;
                    for (auto& [arm, tok] : mine) {
                        if (small)
                            arms.push_back({arm, tok});
                        if (std::find(blocks.begin(), blocks.end(), arm) == blocks.end())
                            blocks.push_back(arm);
                    }
                    for (auto& [entry, str] : ts->strings)
                        str = str.substr(0, n);
                    table_arms.push_back({std::move(blocks), std::move(*ts)});
                } else if (auto* cmp = llvm::dyn_cast<llvm::ICmpInst>(&i);
                           cmp && cmp->isEquality()) {
                    // if (req[0] == 'g')
                    auto* k = llvm::dyn_cast<llvm::ConstantInt>(cmp->getOperand(1));
                    if (!k || !is_byte_load(cmp->getOperand(0)))
                        continue;
                    auto t = byte_token(k);
                    if (!t)
                        continue;
                    bool eq = cmp->getPredicate() == llvm::CmpInst::ICMP_EQ;
                    follow(cmp, eq ? Match::kIfNonZero : Match::kIfZero, cx.token(*t), fi, arms, 1);
                } else if (auto* sw = llvm::dyn_cast<llvm::SwitchInst>(&i)) {
                    // switch (req[0]) { case 'g': ... }
                    if (!is_byte_load(sw->getCondition()))
                        continue;
                    for (auto& cs : sw->cases()) {
                        auto t = byte_token(cs.getCaseValue());
                        if (t && cs.getCaseSuccessor() != sw->getDefaultDest())
                            arms.push_back({cs.getCaseSuccessor(), cx.token(*t)});
                    }
                }
            }
        }
        auto dominated = [&](llvm::BasicBlock* arm, auto&& visit) {
            // Only an arm entered from its branch alone implies the match.
            if (!arm->getUniquePredecessor())
                return;
            auto* root = fi.dt->getNode(arm);
            if (!root)
                return;
            std::vector<llvm::DomTreeNode*> work{root};
            while (!work.empty()) {
                auto* n = work.back();
                work.pop_back();
                visit(n->getBlock());
                for (auto* c : n->children())
                    work.push_back(c);
            }
        };
        for (auto& [arm, tok] : arms)
            dominated(arm,
                      [&, tok = tok](llvm::BasicBlock* bb) { fi.block_tokens[bb].insert(tok); });
        // The matched entry's handler: tab[i].run(...) in the matching arm
        // gets that entry's name only.
        for (auto& [blocks, ts] : table_arms)
            for (auto* arm : blocks)
                dominated(arm, [&, ts = &ts](llvm::BasicBlock* bb) {
                    for (auto& i : *bb) {
                        auto* cb = llvm::dyn_cast<llvm::CallBase>(&i);
                        if (!cb || cb->getCalledFunction())
                            continue;
                        for (auto& [entry, f] : table_callees(cb, ts->path))
                            for (auto& [e, str] : ts->strings)
                                if (e == entry)
                                    seeds[f].insert(cx.token(str));
                    }
                });
        // A lookup whose non-null result means a match (returns &tab[i]).
        if (fi.f->getReturnType()->isPointerTy()) {
            std::set<unsigned> toks;
            bool ok = true, any = false;
            for (auto& bb : *fi.f)
                if (auto* ret = llvm::dyn_cast<llvm::ReturnInst>(bb.getTerminator())) {
                    any = true;
                    ok = ok && ret->getReturnValue() &&
                         nonnull_tokens(ret->getReturnValue(), fi, toks);
                }
            if (ok && any)
                fi.match_tokens = std::move(toks);
        }
    };
    // Callees first, so that a caller sees its lookups' match tokens.
    auto sccs = call_sccs(cx);
    for (auto& scc : sccs)
        for (FnInfo* f : scc)
            scan(*f);
    for (auto& [f, toks] : seeds)
        if (FnInfo* fi = cx.by_fn.lookup(f))
            fi->fn_tokens.insert(toks.begin(), toks.end());
    // A function gets the tokens of every direct call site that reaches it
    // (union: any of these routes leads here), transitively.
    for (int round = 0; round < 32; round++) {
        bool changed = false;
        for (auto it = sccs.rbegin(); it != sccs.rend(); ++it)
            for (FnInfo* f : *it)
                for (auto& e : f->calls) {
                    if (!e.direct || e.callee == f)
                        continue;
                    size_t before = e.callee->fn_tokens.size();
                    auto bt = f->block_tokens.find(e.block);
                    if (bt != f->block_tokens.end())
                        e.callee->fn_tokens.insert(bt->second.begin(), bt->second.end());
                    e.callee->fn_tokens.insert(f->fn_tokens.begin(), f->fn_tokens.end());
                    changed |= e.callee->fn_tokens.size() != before;
                }
        if (!changed)
            break;
    }
    for (auto& si : cx.segs) {
        std::set<std::string> toks;
        for (unsigned t : si.fn->fn_tokens)
            toks.insert(cx.token_text[t]);
        llvm::BasicBlock* at = si.arm ? si.arm : si.block;
        if (at)
            if (auto bt = si.fn->block_tokens.find(at); bt != si.fn->block_tokens.end())
                for (unsigned t : bt->second)
                    toks.insert(cx.token_text[t]);
        for (const std::string& t : toks) {
            if (si.seg.tokens.size() == kMaxTokensPerSegment)
                break;
            si.seg.tokens.push_back(t);
        }
    }
}

} // namespace presnap::analysis::detail
