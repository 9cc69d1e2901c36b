// Global tables: where a pointer points inside a table's initializer, and
// what the initializer holds there (route names, handlers). Used by the
// route tokens (tokens.cpp) and by indirect calls (segments.cpp).
#include <llvm/IR/Constants.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/Operator.h>

#include "internal.h"

namespace presnap::analysis::detail {

bool table_path(const llvm::Value* p, TablePath& out, int depth) {
    if (depth > 6)
        return false;
    while (auto* bc = llvm::dyn_cast<llvm::BitCastOperator>(p))
        p = bc->getOperand(0);
    if (auto* g = llvm::dyn_cast<llvm::GlobalVariable>(p)) {
        if (!g->hasDefinitiveInitializer())
            return false;
        out.g = g;
        return true;
    }
    if (auto* gep = llvm::dyn_cast<llvm::GEPOperator>(p)) {
        if (!table_path(gep->getPointerOperand(), out, depth + 1))
            return false;
        auto it = gep->idx_begin();
        if (it == gep->idx_end())
            return true;
        // The first index steps over whole objects: only 0 keeps us in the
        // table (the global itself, or the element a previous GEP chose).
        auto* first = llvm::dyn_cast<llvm::ConstantInt>(it->get());
        if (!first || !first->isZero())
            return false;
        for (++it; it != gep->idx_end(); ++it) {
            if (auto* k = llvm::dyn_cast<llvm::ConstantInt>(it->get()))
                out.idx.push_back({k->getZExtValue(), nullptr});
            else
                out.idx.push_back({0, it->get()});
        }
        return true;
    }
    if (auto* phi = llvm::dyn_cast<llvm::PHINode>(p)) {
        // for (r = table; ...; r++): every entry of the table.
        TablePath first;
        bool have = false, steps = false;
        for (const llvm::Value* in : phi->incoming_values()) {
            auto* step = llvm::dyn_cast<llvm::GEPOperator>(in);
            if (step && step->getPointerOperand() == phi) {
                steps = true;
                continue;
            }
            TablePath t;
            if (!table_path(in, t, depth + 1) || t.idx.empty() ||
                (have && (t.g != first.g || t.idx.size() != first.idx.size())))
                return false;
            if (!have)
                first = t;
            have = true;
        }
        if (!have || !steps)
            return false;
        first.idx.back() = {0, phi};
        out = first;
        return true;
    }
    return false;
}

void table_leaves(const llvm::Constant* c, const std::vector<TableIndex>& idx, size_t at,
                  unsigned entry, bool in_entry,
                  std::vector<std::pair<unsigned, const llvm::Constant*>>& out) {
    if (!c || out.size() > 256)
        return;
    if (at == idx.size()) {
        out.push_back({entry, c});
        return;
    }
    if (auto* ds = llvm::dyn_cast<llvm::ConstantDataSequential>(c); ds && ds->isString()) {
        out.push_back({entry, c}); // an inline char array: the rest indexes its bytes
        return;
    }
    if (idx[at].var) {
        unsigned n = 0;
        if (auto* at_t = llvm::dyn_cast<llvm::ArrayType>(c->getType()))
            n = static_cast<unsigned>(at_t->getNumElements());
        for (unsigned i = 0; i < n; i++)
            table_leaves(c->getAggregateElement(i), idx, at + 1, in_entry ? entry : i, true, out);
        return;
    }
    table_leaves(c->getAggregateElement(static_cast<unsigned>(idx[at].c)), idx, at + 1, entry,
                 in_entry, out);
}

std::vector<std::pair<unsigned, const llvm::Function*>> table_functions(const llvm::Value* callee,
                                                                        bool constant_only) {
    std::vector<std::pair<unsigned, const llvm::Function*>> out;
    auto* ld = llvm::dyn_cast<llvm::LoadInst>(callee->stripPointerCasts());
    TablePath p;
    if (!ld || !table_path(ld->getPointerOperand(), p) || !p.entry_var() ||
        (constant_only && !p.g->isConstant()))
        return out;
    std::vector<std::pair<unsigned, const llvm::Constant*>> leaves;
    table_leaves(p.g->getInitializer(), p.idx, 0, 0, false, leaves);
    for (auto& [entry, c] : leaves) {
        if (c->isNullValue())
            continue; // the {NULL, NULL} that ends a table is never called
        auto* f = llvm::dyn_cast<llvm::Function>(c->stripPointerCasts());
        if (!f)
            return {}; // a computed entry: not a table of functions
        out.push_back({entry, f});
    }
    return out;
}

} // namespace presnap::analysis::detail
