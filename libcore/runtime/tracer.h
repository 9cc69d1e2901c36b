// The Session's breakpoint tracer (presnap/runtime/trace.h says how tracing
// works). Private to the runtime: Session::Impl owns one when tracing is on.
#pragma once

#include "presnap/runtime/trace.h"
#include "presnap/vmm/guest_memory.h"

#include <cstdint>
#include <vector>

namespace presnap::runtime {

class Tracer {
  public:
    explicit Tracer(const TraceOptions& options);

    // Whether this Session's request `n` (1-based) is traced.
    bool sampled(uint64_t n) const { return every_ <= 1 || (n - 1) % every_ == 0; }
    bool armed() const { return armed_; }

    // Writes an int3 over every point's first byte, keeping the original.
    // `page_tables`: the guest's PML4 (its page-table entries for the pages
    // the breakpoint handler touches are put back at disarm()).
    Status arm(vmm::GuestMemory& mem, uint64_t page_tables);
    // A #BP at `addr` (the int3's own address), reported by the FAULT
    // hypercall at `fault_gpa`. When the int3 is one of ours: puts the
    // original byte back, records its segments, tells the guest to continue
    // at `addr`, and returns true. False: not ours (the program's own int3).
    Result<bool> hit(vmm::GuestMemory& mem, uint64_t fault_gpa, uint64_t addr);
    // Puts back every byte still armed and clears what the breakpoint
    // handler left in guest memory; returns the segments hit, in first-hit
    // order, each once.
    Result<std::vector<uint32_t>> disarm(vmm::GuestMemory& mem);

  private:
    struct Site {
        uint64_t addr;
        uint32_t first, count; // its segments: segs_[first, first + count)
        uint8_t original = 0;
        bool armed = false;
    };
    std::vector<Site> sites_; // sorted by address, one per address
    std::vector<uint32_t> segs_;
    std::vector<uint8_t> seen_; // per segment number, this request
    std::vector<uint32_t> hits_;
    uint64_t every_ = 1;
    bool armed_ = false;
    uint64_t fault_gpa_ = 0; // set when a hit was resumed this request
    // The leaf page-table entries of the IDT and exception stack pages, and
    // their values at arm(): the handler's accesses set their accessed and
    // dirty bits, which an untraced run never does.
    struct SavedPte {
        uint64_t gpa = 0, value = 0;
    };
    std::vector<SavedPte> ptes_;
};

} // namespace presnap::runtime
