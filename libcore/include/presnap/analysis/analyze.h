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
    double prior_strength = 10;  // pseudo-requests behind the static estimate
    double profile_requests = 1; // requests the .profdata run served
    bool strict = false;         // malformed history lines are errors
};

struct AnalyzeReport {
    ProbabilityMap map;
    size_t functions = 0;              // defined functions analysed
    size_t history_requests = 0;       // request records applied
    size_t history_skipped = 0;        // malformed lines skipped
    size_t history_unknown = 0;        // segment references matching nothing here
    size_t history_matched_by_sid = 0; // segments matched through structural ids
    std::vector<Error> history_problems;
    size_t profile_functions = 0;   // functions that got profile counts
    std::vector<std::string> notes; // things the user should hear about (-v)
};

Result<AnalyzeReport> analyze(const AnalyzeOptions& opts);

} // namespace presnap::analysis
