// Private to libcore/analysis: the LLVM-side data the analysis phases share.
// Order of the phases (analyze.cpp): load -> normalise -> call edges ->
// effects (bottom-up, then persistent parameters top-down) -> lazy guards
// -> segments -> estimate -> tokens -> addresses -> evidence -> explain.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <llvm/ADT/DenseMap.h>
#include <llvm/ADT/DenseSet.h>
#include <llvm/Analysis/BlockFrequencyInfo.h>
#include <llvm/Analysis/BranchProbabilityInfo.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/Analysis/PostDominators.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Passes/PassBuilder.h>

#include "presnap/analysis/analyze.h"
#include "presnap/analysis/pmap.h"
#include "presnap/error.h"

namespace presnap::analysis::detail {

// The four new-pass-manager analysis managers, registered with the default
// analyses and cross-registered, as every pipeline and analysis query needs.
struct AnalysisManagers {
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    llvm::PassBuilder pb;
    AnalysisManagers() {
        pb.registerModuleAnalyses(mam);
        pb.registerCGSCCAnalyses(cgam);
        pb.registerFunctionAnalyses(fam);
        pb.registerLoopAnalyses(lam);
        pb.crossRegisterProxies(lam, fam, cgam, mam);
    }
};

struct FnInfo;

// A position in a global table: the global and the indices into its
// initializer; a variable index (the loop's) stands for every entry.
struct TableIndex {
    uint64_t c = 0;
    const llvm::Value* var = nullptr; // non-null: any entry
};
struct TablePath {
    const llvm::GlobalVariable* g = nullptr;
    std::vector<TableIndex> idx;
    const llvm::Value* entry_var() const {
        for (auto& i : idx)
            if (i.var)
                return i.var;
        return nullptr;
    }
};

// A call from one block to a defined function. Indirect calls are spread
// over the address-taken functions of the same type (share = 1/N).
struct CallEdge {
    llvm::BasicBlock* block = nullptr;
    llvm::CallBase* call = nullptr;
    FnInfo* callee = nullptr;
    double share = 1;
    bool direct = true;
};

// A lazy-initialisation guard: `if (!g) { ... g = ...; }`, or the same on a
// field of persistent memory reached through a pointer (`if (!t->cache)`).
struct LazyGuard {
    llvm::BasicBlock* block = nullptr; // ends in the conditional branch
    llvm::BasicBlock* arm = nullptr;   // the successor taken while the state is still unset
};

// Where a pointer may point, as far as persistence goes (effects.cpp):
// into a mutable global, into memory reachable from one (a pointer loaded
// from it), or wherever a pointer parameter points.
enum class RootKind { kGlobal, kGlobalRooted, kArg };
struct PtrRoot {
    RootKind kind;
    const llvm::GlobalVariable* g = nullptr;
    unsigned arg = 0;
    bool operator==(const PtrRoot& o) const { return kind == o.kind && g == o.g && arg == o.arg; }
};

// A call to a function without bitcode that is given a pointer to state
// that may be persistent, and is not on the list of side-effect-free
// library functions (docs/analysis.md): it may keep state there.
struct ExternalCall {
    llvm::BasicBlock* block = nullptr;
    llvm::CallBase* call = nullptr;
    unsigned arg = 0; // the argument that points to the state
    PtrRoot root;     // where it points (kArg: persistent if the parameter is)
};

struct FnInfo {
    llvm::Function* f = nullptr;
    llvm::DominatorTree* dt = nullptr;
    llvm::PostDominatorTree* pdt = nullptr;
    llvm::LoopInfo* li = nullptr;
    llvm::BlockFrequencyInfo* bfi = nullptr;
    llvm::BranchProbabilityInfo* bpi = nullptr;

    uint64_t shash = 0;
    std::string display; // readable name used in segment names
    std::string file;    // basename of the source file, "" without debug info

    std::vector<CallEdge> calls; // outgoing edges to defined functions

    // Effects (effects.cpp). direct_* are this function's own instructions.
    llvm::DenseMap<const llvm::BasicBlock*, unsigned> block_effects;
    unsigned effects = 0;                               // transitive Effect bits
    llvm::DenseSet<const llvm::GlobalVariable*> writes; // globals stored to, transitive
    uint64_t writes_arg = 0;                            // bit i: writes through pointer parameter i
    uint64_t heap_into_arg = 0;     // bit i: stores a heap pointer through parameter i
    bool returns_alloc = false;     // returns freshly allocated memory
    int returns_arg = -1;           // returns a pointer into parameter i (C++ accessors)
    int returns_arg_lattice = -1;   // -1 nothing seen yet, -2 several (effects.cpp)
    bool reads_input = false;       // reads stdin (transitive)
    std::vector<PtrRoot> ret_roots; // persistent roots of returned pointers (not kArg)
    // Writes through pointer parameters, per block: they are persistent
    // effects when a caller passes persistent memory (persistent_args).
    llvm::DenseMap<const llvm::BasicBlock*, uint64_t> block_arg_writes, block_arg_heap;
    uint64_t persistent_args = 0; // bit i: some caller passes persistent memory as parameter i
    std::vector<ExternalCall> ext_calls;
    // Effects not due to external calls: block_effects minus theirs, and
    // the transitive sum (for --explain: warm without them?).
    llvm::DenseMap<const llvm::BasicBlock*, unsigned> block_own_effects;
    unsigned own_effects = 0;
    std::vector<LazyGuard> guards;

    // Estimate (estimate.cpp), per request.
    double calls_per_request = 0; // expected invocations
    double prob = 0;              // probability of at least one invocation
    llvm::Loop* request_loop = nullptr;
    llvm::DenseMap<const llvm::BasicBlock*, double> count, weight;

    // Route tokens (tokens.cpp), as indices into Context::token_text.
    llvm::DenseMap<const llvm::BasicBlock*, std::set<unsigned>> block_tokens;
    std::set<unsigned> fn_tokens;
    // A non-null result means the request matched one of these (a lookup
    // that returns the matching table entry).
    std::set<unsigned> match_tokens;

    // Addresses (addresses.cpp).
    AddressStatus addr_status = AddressStatus::kNone;
    std::vector<AddressRange> ranges; // out-of-line symbol plus inlined copies
};

struct SegInfo {
    Segment seg;
    FnInfo* fn = nullptr;
    llvm::BasicBlock* block = nullptr; // loop header, branch block or switch block
    llvm::BasicBlock* arm = nullptr;   // br: the successor the segment stands for
    llvm::Loop* loop = nullptr;
    std::vector<llvm::BasicBlock*> region; // blocks whose code is the segment (not fn)
};

struct Context {
    llvm::Module* module = nullptr;
    std::vector<std::unique_ptr<FnInfo>> fns; // module order: deterministic
    llvm::DenseMap<const llvm::Function*, FnInfo*> by_fn;
    std::vector<FnInfo*> entries;
    std::vector<SegInfo> segs;
    std::vector<std::string> token_text;
    std::map<std::string, unsigned> token_index;
    std::vector<std::string> notes;

    unsigned token(const std::string& t) {
        auto [it, fresh] = token_index.emplace(t, static_cast<unsigned>(token_text.size()));
        if (fresh)
            token_text.push_back(t);
        return it->second;
    }
};

// A function whose code is not the program's: a declaration, or an
// available_externally copy of a library's inline (glibc's getline at -O1).
inline bool is_library(const llvm::Function& f) {
    return f.isDeclaration() || f.hasAvailableExternallyLinkage();
}

// module.cpp
Result<std::unique_ptr<llvm::Module>> load_and_link(const std::vector<std::string>& inputs,
                                                    llvm::LLVMContext& ctx);
void normalise(llvm::Module& m);

// segments.cpp
uint64_t structural_hash(const llvm::Function& f);
void build_call_edges(Context& cx);
void discover_segments(Context& cx);
std::vector<llvm::BasicBlock*> arm_region(FnInfo& fi, llvm::BasicBlock* from,
                                          llvm::BasicBlock* arm);
// Tarjan SCCs over Context::fns via CallEdge, callees first.
std::vector<std::vector<FnInfo*>> call_sccs(Context& cx);

// effects.cpp
void compute_effects(Context& cx);
void find_lazy_guards(Context& cx);
unsigned region_effects(const FnInfo& fi, const std::vector<llvm::BasicBlock*>& region);
// The persistent roots of a pointer, with the summaries computed so far.
std::vector<PtrRoot> pointer_roots(const Context& cx, const llvm::Value* ptr);
// Whether the state a root stands for is persistent in this function.
inline bool persistent(const FnInfo& fi, const PtrRoot& r) {
    return r.kind != RootKind::kArg || (r.arg < 64 && (fi.persistent_args >> r.arg & 1));
}
// --explain: why a segment is warm, external calls first.
Explanation explain(const SegInfo& si);

// estimate.cpp
Status choose_entries(Context& cx, const std::vector<std::string>& extra);
void estimate(Context& cx);
void compute_blocks(FnInfo& fi);
// Segment weight and count from the block estimates (all, or one function's).
void fill_segment_values(Context& cx, const FnInfo* only = nullptr);

// tables.cpp
// Where `p` points inside a global table with an initializer.
bool table_path(const llvm::Value* p, TablePath& out, int depth = 0);
// The leaves of a table's initializer along a path; `entry` is the index
// taken at the path's first variable position.
void table_leaves(const llvm::Constant* c, const std::vector<TableIndex>& idx, size_t at,
                  unsigned entry, bool in_entry,
                  std::vector<std::pair<unsigned, const llvm::Constant*>>& out);
// tab[i].run: the function in each entry, by entry, when the callee is
// loaded from a table at a variable index and every entry is a function
// or null; else empty.
std::vector<std::pair<unsigned, const llvm::Function*>> table_functions(const llvm::Value* callee,
                                                                        bool constant_only);

// tokens.cpp
void find_tokens(Context& cx);

// addresses.cpp
Result<AddressSummary> resolve_addresses(Context& cx, const std::string& elf_path);

// evidence.cpp
Status apply_history(Context& cx, const AnalyzeOptions& o, AnalyzeReport& rep);
Status apply_profile(Context& cx, const AnalyzeOptions& o, AnalyzeReport& rep);

} // namespace presnap::analysis::detail
