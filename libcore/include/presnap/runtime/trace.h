// Tracing which segments of a probability map each request runs (snaprun
// --trace, snapgen, a serving instance that keeps tracing on).
//
// The mechanism: one-shot software breakpoints handled by the host. When a
// traced request is delivered, the Session writes an int3 (0xcc) over the
// first byte of every trace point, keeping the original byte. The guest
// kernel's #BP handler reports the hit with the FAULT hypercall; the monitor
// records the point's segments for the request, puts the original byte back
// and resumes the program at the same instruction (guest_abi.h, psn_hc_fault).
// Each point therefore costs one exit the first time a request reaches it, and
// nothing after that within the request: the order of hits is the first-hit
// order. At the wait point every byte still armed is put back, and what the
// breakpoint handler left (its fault record and frame, the accessed and dirty
// bits of the pages it touched) is undone, before the sink hears of the
// response: between requests, and so in every capture, guest memory is what
// it would be without tracing.
//
// KVM_SET_GUEST_DEBUG (KVM_GUESTDBG_USE_SW_BP) would avoid the guest's IDT,
// but the PVM KVM of the build machines accepts it and still delivers int3 to
// the guest (docs/ARCHITECTURE.md, "Tracing").
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace presnap::analysis {
struct ProbabilityMap;
}
namespace presnap::vmm {
struct ElfImage;
}

namespace presnap::runtime {

// A guest address where an instruction starts, and the caller's number for
// the segment it stands for (e.g. an index into ProbabilityMap::segments).
// Several points may share an address; one segment may have several points.
struct TracePoint {
    uint64_t addr = 0;
    uint32_t segment = 0;
};

struct TraceOptions {
    std::vector<TracePoint> points; // empty: no tracing
    // Trace requests 1, 1 + every, 1 + 2 * every ... of the Session (counted
    // from its own start, so a restored Session starts again at 1).
    uint64_t every = 1;
};

// Which segments of `map` to trace, and where: a segment's entry is the start
// of its first address range, plus the executable's load bias (a static-pie
// is loaded at PSN_PIE_BASE). Traced: every warmable segment, every segment
// with route tokens, and every function; with `all`, every segment that has
// an address. `segment` is the index in map.segments. A point outside the
// executable's code segments is an error naming the segment: the map was
// made for another executable.
Result<std::vector<TracePoint>> trace_points(const analysis::ProbabilityMap& map,
                                             const vmm::ElfImage& elf, bool all);
// The same for the executable at `path` (read and validated here).
Result<std::vector<TracePoint>> trace_points(const analysis::ProbabilityMap& map,
                                             const std::string& path, bool all);

} // namespace presnap::runtime
