// Route tokens: string constants that request data is compared against on
// the way to a segment (docs/analysis.md, "Route tokens").
#include <llvm/Demangle/Demangle.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>

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

constexpr size_t kMaxTokensPerSegment = 16;

} // namespace

void find_tokens(Context& cx) {
    for (auto& fi : cx.fns) {
        // (arm, token): the arm runs only when the request matched the token.
        std::vector<std::pair<llvm::BasicBlock*, unsigned>> arms;
        for (auto& bb : *fi->f) {
            for (auto& i : bb) {
                if (auto* cb = llvm::dyn_cast<llvm::CallBase>(&i)) {
                    auto* callee =
                        llvm::dyn_cast<llvm::Function>(cb->getCalledOperand()->stripPointerCasts());
                    if (!callee)
                        continue;
                    auto cf = cmp_fn(*callee);
                    if (!cf ||
                        cb->arg_size() <= static_cast<unsigned>(std::max(cf->arg_a, cf->arg_b)))
                        continue;
                    auto s = const_string(cb->getArgOperand(cf->arg_b));
                    if (!s)
                        s = const_string(cb->getArgOperand(cf->arg_a));
                    if (!s)
                        continue;
                    if (cf->len_arg >= 0 && static_cast<unsigned>(cf->len_arg) < cb->arg_size())
                        if (auto* n =
                                llvm::dyn_cast<llvm::ConstantInt>(cb->getArgOperand(cf->len_arg));
                            n && n->getZExtValue() < s->size())
                            s->resize(n->getZExtValue());
                    follow(cb, cf->match, cx.token(*s), *fi, arms, 0);
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
                    follow(cmp, eq ? Match::kIfNonZero : Match::kIfZero, cx.token(*t), *fi, arms,
                           1);
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
        for (auto& [arm, tok] : arms) {
            // Only an arm entered from its branch alone implies the match.
            if (!arm->getUniquePredecessor())
                continue;
            auto* root = fi->dt->getNode(arm);
            if (!root)
                continue;
            std::vector<llvm::DomTreeNode*> work{root};
            while (!work.empty()) {
                auto* n = work.back();
                work.pop_back();
                fi->block_tokens[n->getBlock()].insert(tok);
                for (auto* c : n->children())
                    work.push_back(c);
            }
        }
    }
    // A function gets the tokens of every direct call site that reaches it
    // (union: any of these routes leads here), transitively.
    auto sccs = call_sccs(cx);
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
