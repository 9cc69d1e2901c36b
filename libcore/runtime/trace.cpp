// Breakpoint tracing (presnap/runtime/trace.h): choosing trace points from a
// probability map, and the one-shot int3s a Session arms per traced request.
#include "tracer.h"

#include "presnap/analysis/pmap.h"
#include "presnap/guest_abi.h"
#include "presnap/vmm/elf_loader.h"

#include <algorithm>
#include <cstddef>
#include <elf.h>
#include <fmt/format.h>
#include <fstream>
#include <iterator>

namespace presnap::runtime {

namespace {

constexpr uint8_t kInt3 = 0xcc;

// What the guest's #BP handler leaves on the exception stack: the CPU's
// frame from CPL3 (ss, rsp, rflags, cs, rip) and the three registers
// entry.S saves. Zero in a run that never took an exception.
constexpr uint64_t kExceptionResidue = 8 * 8;

// The guest pages the #BP handler makes the CPU touch besides guest kernel
// code and data (which every system call touches anyway): the IDT (the gate)
// and the exception stack (the frame).
constexpr uint64_t kHandlerPages[] = {PSN_IDT_ADDR, PSN_EXC_STACK_TOP - vmm::kPageSize};

// The address of the leaf page-table entry that maps `gpa`, walking the
// guest's 4-level tables from `pml4` through the checked accessor.
Result<uint64_t> leaf_pte(const vmm::GuestMemory& mem, uint64_t pml4, uint64_t gpa) {
    constexpr uint64_t kPresent = 1, kLarge = 1u << 7, kAddr = 0x000ffffffffff000ull;
    uint64_t table = pml4;
    for (int level = 3; level >= 1; level--) {
        auto e = mem.read_obj<uint64_t>(table + ((gpa >> (12 + 9 * level)) & 511) * 8);
        if (!e)
            return std::unexpected(e.error());
        if (!(*e & kPresent) || (*e & kLarge))
            return make_error(Errc::kInternal, "guest page 0x{:x} is not mapped by a 4 KiB page",
                              gpa);
        table = *e & kAddr;
    }
    return table + ((gpa >> 12) & 511) * 8;
}

} // namespace

Result<std::vector<TracePoint>> trace_points(const analysis::ProbabilityMap& map,
                                             const vmm::ElfImage& elf, bool all) {
    std::vector<TracePoint> points;
    for (size_t i = 0; i < map.segments.size(); i++) {
        const auto& s = map.segments[i];
        if (s.ranges.empty())
            continue;
        if (!all && !s.warmable && s.tokens.empty() && s.kind != analysis::SegmentKind::kFunction)
            continue;
        uint64_t addr = s.ranges.front().lo + elf.bias;
        bool in_code = std::any_of(elf.segments.begin(), elf.segments.end(), [&](const auto& seg) {
            return (seg.flags & PF_X) && addr >= seg.vaddr && addr - seg.vaddr < seg.file_size;
        });
        if (!in_code)
            return make_error(Errc::kFormat,
                              "segment {} ({}) starts at 0x{:x}, outside the executable's code",
                              s.name, fmt::format("{:016x}", s.id), addr);
        points.push_back({addr, uint32_t(i)});
    }
    return points;
}

Result<std::vector<TracePoint>> trace_points(const analysis::ProbabilityMap& map,
                                             const std::string& path, bool all) {
    auto unreadable = [&] {
        return std::unexpected(
            make_errno_error(Errc::kIo, errno, "cannot read").error().with_context(path));
    };
    std::ifstream f(path, std::ios::binary);
    if (!f)
        return unreadable();
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)),
                               std::istreambuf_iterator<char>());
    if (f.bad())
        return unreadable();
    auto elf = vmm::parse_elf(bytes, PSN_PIE_BASE);
    if (!elf)
        return std::unexpected(elf.error().with_context(path));
    auto pts = trace_points(map, *elf, all);
    if (!pts)
        return std::unexpected(pts.error().with_context(path));
    return pts;
}

Tracer::Tracer(const TraceOptions& options) : every_(options.every) {
    std::vector<TracePoint> pts = options.points;
    std::stable_sort(pts.begin(), pts.end(),
                     [](const TracePoint& a, const TracePoint& b) { return a.addr < b.addr; });
    uint32_t max_seg = 0;
    for (const auto& p : pts) {
        if (sites_.empty() || sites_.back().addr != p.addr)
            sites_.push_back({p.addr, uint32_t(segs_.size()), 0});
        segs_.push_back(p.segment);
        sites_.back().count++;
        max_seg = std::max(max_seg, p.segment);
    }
    seen_.assign(pts.empty() ? 0 : size_t(max_seg) + 1, 0);
}

Status Tracer::arm(vmm::GuestMemory& mem, uint64_t page_tables) {
    hits_.clear();
    fault_gpa_ = 0;
    ptes_.clear();
    for (uint64_t page : kHandlerPages) {
        auto at = leaf_pte(mem, page_tables, page);
        if (!at)
            return std::unexpected(at.error());
        auto v = mem.read_obj<uint64_t>(*at);
        if (!v)
            return std::unexpected(v.error());
        ptes_.push_back({*at, *v});
    }
    // Written through span(), not span_for_write(): the host dirty bitmap
    // exists so that captures see host writes, and these are all undone at
    // the wait point, before any capture can happen. Marking them would put
    // unchanged code pages into every diff snapshot.
    for (auto& s : sites_) {
        auto b = mem.span(s.addr, 1);
        if (!b)
            return std::unexpected(b.error().with_context("trace point"));
        s.original = (*b)[0];
        (*b)[0] = kInt3;
        s.armed = true;
    }
    armed_ = true;
    return {};
}

Result<bool> Tracer::hit(vmm::GuestMemory& mem, uint64_t fault_gpa, uint64_t addr) {
    auto it = std::lower_bound(sites_.begin(), sites_.end(), addr,
                               [](const Site& s, uint64_t a) { return s.addr < a; });
    if (!armed_ || it == sites_.end() || it->addr != addr || !it->armed)
        return false;
    auto b = mem.span(addr, 1);
    if (!b)
        return std::unexpected(b.error());
    (*b)[0] = it->original;
    it->armed = false;
    for (uint32_t i = it->first; i < it->first + it->count; i++)
        if (!std::exchange(seen_[segs_[i]], 1))
            hits_.push_back(segs_[i]);
    if (auto s = mem.write_obj<uint64_t>(fault_gpa + offsetof(psn_hc_fault, rip), addr); !s)
        return std::unexpected(s.error());
    fault_gpa_ = fault_gpa;
    return true;
}

Result<std::vector<uint32_t>> Tracer::disarm(vmm::GuestMemory& mem) {
    for (auto& s : sites_) {
        if (!s.armed)
            continue;
        s.armed = false;
        auto b = mem.span(s.addr, 1);
        // Leave a byte the program itself overwrote since arm().
        if (b && (*b)[0] == kInt3)
            (*b)[0] = s.original;
    }
    armed_ = false;
    if (fault_gpa_) {
        // What the #BP handler wrote: the fault record and the exception
        // stack's frame, zero in an untraced run.
        const psn_hc_fault zero{};
        if (auto s = mem.write_obj(fault_gpa_, zero); !s)
            return std::unexpected(s.error());
        uint8_t stack[kExceptionResidue] = {};
        if (auto s = mem.write(PSN_EXC_STACK_TOP - kExceptionResidue, stack); !s)
            return std::unexpected(s.error());
        // The handler's pages were untouched before arm() unless their bits
        // say so; an untraced run never touches them (other exceptions end
        // the run), so their entries go back to what they were.
        for (const auto& p : ptes_)
            if (auto s = mem.write_obj(p.gpa, p.value); !s)
                return std::unexpected(s.error());
        fault_gpa_ = 0;
    }
    for (uint32_t seg : hits_)
        seen_[seg] = 0;
    return std::exchange(hits_, {});
}

} // namespace presnap::runtime

// ---- The Session's side (Session::Impl, internal.h) ----

#include "internal.h"

namespace presnap::runtime {

Status Session::set_trace(const TraceOptions& trace) {
    Impl& m = *impl_;
    if (m.tracer && m.tracer->armed())
        return make_error(Errc::kInvalidArgument, "tracing cannot change during a request");
    m.opt.trace = trace;
    m.tracer.reset();
    if (!trace.points.empty())
        m.tracer.emplace(trace);
    m.traced_base = m.request_no;
    return {};
}

Status Session::Impl::trace_request_start() {
    if (!tracer || !tracer->sampled(request_no - traced_base))
        return {};
    return tracer->arm(mem, layout.page_tables);
}

Status Session::Impl::trace_request_end() {
    if (!tracer || !tracer->armed())
        return {};
    auto hits = tracer->disarm(mem);
    if (!hits)
        return std::unexpected(hits.error());
    current.traced = true;
    current.segments = std::move(*hits);
    return {};
}

void Session::Impl::end_unfinished_request() {
    bool in_flight = started && !at_eof && current.index != 0 && request_no > 0;
    (void)trace_request_end();
    if (!in_flight || !out)
        return;
    current.us = double(clock_ns(CLOCK_MONOTONIC) - request_start_ns) / 1e3;
    current.exits = stats.exits - exits_at_request_start;
    (void)out->end_unfinished(current);
    current.index = 0;
}

} // namespace presnap::runtime
