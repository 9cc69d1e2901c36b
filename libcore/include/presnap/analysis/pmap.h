// The probability map (docs/formats/pmap.md, presnap-pmap(5)): what
// pea-analyze writes and what snapgen and snapselect read. This header and its
// implementation are LLVM-free so that the runtime tools can link them
// (target presnap_pmap) without pulling in LLVM.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "presnap/error.h"

namespace presnap::analysis {

inline constexpr int kPmapVersion = 1; // bump on any incompatible change to pmap.md

enum class SegmentKind { kFunction, kLoop, kBranch, kSwitch };
// Where a segment's guest addresses came from (none: no --elf was given).
enum class AddressStatus { kNone, kFound, kInlined, kMissing };

std::string_view to_string(SegmentKind k);   // "fn" "loop" "br" "switch"
std::string_view to_string(AddressStatus s); // "none" "found" "inlined" "missing"

// Persistent effects, transitively over callees (docs/analysis.md).
enum Effect : unsigned {
    kWritesGlobal = 1u << 0,  // W: stores into a global or memory reachable from one
    kStoresHeapPtr = 1u << 1, // H: stores a heap pointer into such memory
    kAllocEscapes = 1u << 2,  // A: allocates memory whose pointer escapes to a global
};
std::string effects_string(unsigned effects); // "WHA" subset, "-" when none

struct AddressRange {
    uint64_t lo = 0; // first byte
    uint64_t hi = 0; // one past the last byte
    bool operator==(const AddressRange&) const = default;
};

struct Segment {
    uint64_t id = 0;    // hash(kind, function, position): stable within a program
    uint64_t sid = 0;   // hash(kind, structural hash, position): stable across programs
    uint64_t shash = 0; // structural hash of the containing function's body
    SegmentKind kind = SegmentKind::kFunction;
    std::string name;         // fn:NAME, loop:NAME:LINE, br:NAME:LINE, switch:NAME:LINE
    std::string function;     // linkage name of the containing function
    unsigned line = 0;        // source line, 0 when unknown
    double weight = 0;        // probability that one request runs it
    double count = 0;         // expected executions per request
    double static_weight = 0; // the static estimate before evidence
    unsigned effects = 0;     // Effect bits
    bool warmable = false;    // effects != 0
    bool lazy_init = false;   // a recognised lazy-initialisation guard (br only)
    AddressStatus address_status = AddressStatus::kNone;
    std::vector<AddressRange> ranges;
    std::vector<std::string> tokens; // route tokens, sorted, unique
    std::string evidence = "static"; // static | history:K/N | profile:C
};

struct AddressSummary {
    std::string elf; // empty when no --elf
    size_t found = 0, inlined = 0, missing = 0;
};

struct ProbabilityMap {
    std::vector<std::string> inputs; // bitcode/IR files, as given
    std::vector<std::string> entries;
    AddressSummary addresses;
    std::string evidence; // "static", or what was applied
    std::vector<Segment> segments;
};

// Sorts by weight, then count (both descending), then name and id: the
// order the format promises.
void sort_segments(std::vector<Segment>& segs);

std::string format_pmap_text(const ProbabilityMap& map);
std::string format_pmap_json(const ProbabilityMap& map);

// Reads the text form back (used by tests and by the runtime tools).
// `name` is used in error contexts.
Result<ProbabilityMap> parse_pmap_text(std::string_view text, std::string_view name);

// Token escaping used in the text form: printable ASCII except space, '"',
// ',' and '\\' as is; everything else as \xHH.
std::string escape_token(std::string_view raw);
Result<std::string> unescape_token(std::string_view esc);

} // namespace presnap::analysis
