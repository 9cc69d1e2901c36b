// Per-request selection (DESIGN.md section 6, docs/formats/selection.md,
// docs/formats/model.md): predict which warmable segments a request will run
// and choose the library snapshots whose composite should serve it.
//
// Use: `Selector::open(lib)` once (it reads DIR/model.jsonl when snapselect
// --train stored one, else falls back on the library's map: static weights
// and route tokens), then `select(request)` per request, from any thread: a
// Selector is immutable after open, and a call costs microseconds.
//
// Training: `train(lib, histories)` turns execution histories
// (docs/formats/history.md) into a Model; `format_model`/`store_model` write
// it; `parse_model` reads one back and validates it (a model file is
// untrusted input).
#pragma once

#include "presnap/analysis/history.h"
#include "presnap/error.h"
#include "presnap/library/library.h"

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace presnap::select {

// The cost, in microseconds, charged for each page a snapshot adds to a
// composite. From the measurement in issue 9: a composite chaining the
// warm-ups of six routes (4 MiB of diffs, 1024 pages) restored within about
// 0.5 ms of a single-route snapshot, i.e. about 0.5 us per page.
inline constexpr double kDefaultPageCostUs = 0.5;

struct SelectOptions {
    uint64_t max_bytes = 0; // the composite's snapshot bytes at most this (0: no limit)
    std::string user;       // use this user's model when the model has one
    // Extensions (compatible with the agreed interface):
    bool allow_warm_all = true; // false: always choose by expected saving (measuring prediction)
    double page_cost_us = kDefaultPageCostUs;
};

struct PathStep {
    uint64_t segment = 0;
    std::string name;
    double probability = 0;
};

// One library snapshot considered for a request (for --explain).
struct Candidate {
    std::string id;          // "s001"
    double probability = 0;  // P(the request needs the snapshot's route segments)
    double benefit_us = 0;   // from the manifest
    double page_cost_us = 0; // pages x page cost
    double value_us = 0;     // probability x benefit - page cost
    uint64_t bytes = 0;
    bool chosen = false;
    std::string why; // "chosen", "no expected saving", "over the byte budget" ...
};

struct Selection {
    std::vector<std::string> snapshots; // library ids in manifest order; empty: the base alone
    std::vector<PathStep> path;         // predicted segments, first-hit order
    double expected_saving_us = 0;
    uint64_t bytes = 0;
    bool warm_all = false;
    std::string source; // "history" or "static"
    // For --explain: every snapshot considered, in manifest order, and why
    // warm-all was or was not chosen.
    std::vector<Candidate> candidates;
    std::string warm_all_reason;
    std::string user_model;       // the user whose model answered ("" = everyone's)
    double similarity = 0;        // history: the best neighbour's similarity (0..1)
    bool cached_superset = false; // widened to a set whose composite is already made
};

// The request's features (docs/formats/model.md, "Features"): words, the
// first word, JSON keys and key=value pairs when the request is JSON, digit
// counts of numbers and a length bucket. Sorted, unique.
std::vector<std::string> request_features(std::string_view request);

// A trained model: the library it belongs to and the examples it learned.
struct ModelExample {
    std::string user;                  // "" when the history had none
    std::vector<std::string> features; // request_features() of the request
    std::vector<uint64_t> segments;    // library segments it ran, sorted
    uint64_t count = 1;                // identical examples merged
};
struct ModelSegment {
    uint64_t id = 0;
    double order = 0;     // mean first-hit position among the library's segments
    bool rebuilt = false; // a lazy segment that ran twice in one run: its state was dropped
};
struct Model {
    uint64_t manifest_hash = 0; // FNV-1a 64 of DIR/manifest.jsonl
    uint64_t requests = 0;      // history records read
    uint64_t runs = 0;          // runs found (a run: one process's consecutive records)
    std::vector<ModelSegment> segments;
    std::vector<ModelExample> examples;
};

inline constexpr int kModelVersion = 1;
inline constexpr uint64_t kMaxModelBytes = 64ull << 20;
inline constexpr size_t kMaxModelExamples = 1u << 20;
inline constexpr size_t kMaxExampleFeatures = 256;
inline constexpr size_t kMaxFeatureBytes = 512;
inline constexpr uint64_t kMaxExampleCount = 1000000000;
inline constexpr const char* kModelFile = "model.jsonl";

// Learns from histories: each run's first record is a path example (what a
// request runs from a fresh state), and a lazy segment that ran twice in one
// run is marked rebuilt. See docs/formats/model.md.
Result<Model> train(const library::Library& lib, std::span<const analysis::History> histories);
std::string format_model(const Model& model);
// Checks everything: header, version, the library it was trained for,
// segment ids, sizes and counts. `name` is used in error contexts.
Result<Model> parse_model(std::string_view text, std::string_view name,
                          const library::Library& lib);
// Writes DIR/model.jsonl through a temporary file and rename.
Status store_model(const library::Library& lib, const Model& model);
// FNV-1a 64 of DIR/manifest.jsonl: what a model is tied to.
Result<uint64_t> manifest_hash(const library::Library& lib);

struct State; // private

class Selector {
  public:
    // The trained model in the library when there is one, else the map's
    // priors and route tokens.
    static Result<Selector> open(const library::Library& lib);
    // With this model instead of the library's (snapselect --history).
    static Result<Selector> with_model(const library::Library& lib, const Model& model);
    // The map alone (static priors and route tokens).
    static Result<Selector> static_only(const library::Library& lib);

    // Thread-safe (const), microseconds per call.
    Selection select(std::string_view request, const SelectOptions& options = {}) const;

    bool trained() const;
    const library::Library& library() const;

    // Sets of snapshots whose composite is already in DIR/composites/
    // (merged or chained by snapmerge): when the chosen set is not one, a
    // cached superset within the budget is taken instead (no composite to
    // build). open() reads them; a server may call it again after snapmerge.
    void load_cached_sets();
    const std::vector<std::vector<size_t>>& cached_sets() const { return cached_; }

  private:
    std::shared_ptr<const State> state_;
    std::vector<std::vector<size_t>> cached_; // indices into library().snapshots, sorted
};

// The selection formats (docs/formats/selection.md).
std::string format_selection_header();      // "presnap-selection 1\n"
std::string format_selection_header_json(); // {"format":"presnap-selection","version":1}\n
std::string format_selection_line(const Selection& s); // "select s001 s003\n"
std::string format_selection_json(std::string_view request, const Selection& s);
// Human-readable reasons: predicted path, candidates, savings, budget.
std::string format_explanation(std::string_view request, const Selection& s,
                               const SelectOptions& options);

// Reads a selection file (either form) back: one id list per request.
// Ids are checked against the library when `lib` is given.
Result<std::vector<std::vector<std::string>>>
parse_selection(std::string_view text, std::string_view name, const library::Library* lib);

} // namespace presnap::select
