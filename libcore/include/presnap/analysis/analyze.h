// pea-analyze's engine: LLVM bitcode (+ optional ELF, history, profile) in,
// probability map out. This header is LLVM-free; the implementation in
// libcore/analysis links LLVM 14 (target presnap_analysis), and only
// pea-analyze links that target. docs/analysis.md explains the model.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "presnap/analysis/pmap.h"
#include "presnap/error.h"

namespace presnap::analysis {

struct AnalyzeOptions {
    std::vector<std::string> inputs;  // bitcode or textual IR, linked into one module
    std::vector<std::string> entries; // extra entry points besides main
    std::optional<std::string> elf;   // program built with -g from the same sources
    std::optional<std::string> history;
    std::optional<std::string> profile;
    double prior_strength = 10;         // pseudo-requests behind the static estimate
    double profile_requests = 1;        // requests the .profdata run served
    bool strict = false;                // malformed history lines are errors
    std::optional<std::string> explain; // a segment (name or hex id) to explain
};

// A call into code without bitcode that was given a pointer to persistent
// state and is not on the side-effect-free list (docs/analysis.md).
struct ExplainedCall {
    std::string function; // the calling function (readable name)
    std::string callee;   // the external function
    std::string file;     // source file of the call, "" without debug info
    unsigned line = 0;
    std::string state; // where the pointer points ("global words", ...)
};

// Why a segment is warm: the external calls that may keep state, inside it
// or in the functions it calls, and the effects it has without them.
struct Explanation {
    Segment segment;
    std::vector<ExplainedCall> external_calls;
    std::vector<std::string> other_effects; // own stores to persistent state, a few
    unsigned effects_without_external = 0;  // Effect bits
};
std::string format_explanation(const Explanation& e);

struct AnalyzeReport {
    ProbabilityMap map;
    size_t functions = 0;              // defined functions analysed
    size_t history_requests = 0;       // request records applied
    size_t history_skipped = 0;        // malformed lines skipped
    size_t history_unknown = 0;        // segment references matching nothing here
    size_t history_matched_by_sid = 0; // segments matched through structural ids
    std::vector<Error> history_problems;
    size_t profile_functions = 0;   // functions that got profile counts
    size_t warm_by_external = 0;    // functions warm only through calls into code without bitcode
    std::vector<std::string> notes; // things the user should hear about (-v)
    std::optional<Explanation> explanation; // with AnalyzeOptions::explain
};

Result<AnalyzeReport> analyze(const AnalyzeOptions& opts);

} // namespace presnap::analysis
