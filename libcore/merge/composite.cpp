#include "presnap/merge/composite.h"

#include "kernel_symbols.h"
#include "presnap/guest_abi.h"
#include "presnap/library/composites.h"
#include "presnap/merge/page_merge.h"
#include "presnap/output_file.h"
#include "presnap/runtime/io.h"
#include "presnap/snapshot/monitor_state.h"
#include "presnap/snapshot/page_store.h"
#include "presnap/snapshot/session_snapshots.h"
#include "regions.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <linux/kvm.h>
#include <map>
#include <memory>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace presnap::merge {
namespace {

namespace fs = std::filesystem;
using snapshot::SnapshotFile;

double now_us() {
    return std::chrono::duration<double, std::micro>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The pages of one snapshot file, decoded once: raw runs point into the
// file's mapping, zstd runs are decompressed.
class Pages {
  public:
    static Result<Pages> of(const SnapshotFile& f) {
        Pages p;
        for (const auto& run : f.page_runs()) {
            Run r{run.first_page, run.page_count, nullptr, false};
            if (run.encoding == snapshot::PageEncoding::kZero) {
                r.zero = true;
            } else if (run.raw()) { // in the file or its page store
                r.data = f.stored_bytes(run).data();
            } else {
                p.owned_.emplace_back(run.bytes());
                if (auto s = f.read_run(run, p.owned_.back()); !s)
                    return std::unexpected(s.error().with_context(f.path()));
                r.data = p.owned_.back().data();
            }
            p.runs_.push_back(r);
        }
        return p;
    }
    // The page's bytes; a zero page for a zero run; nullptr when absent.
    const uint8_t* page(uint64_t n) const {
        static const uint8_t kZero[kPage] = {};
        auto it = std::upper_bound(runs_.begin(), runs_.end(), n,
                                   [](uint64_t v, const Run& r) { return v < r.first; });
        if (it == runs_.begin())
            return nullptr;
        --it;
        if (n - it->first >= it->count)
            return nullptr;
        return it->zero ? kZero : it->data + (n - it->first) * kPage;
    }
    template <typename F> void each_page(F&& f) const {
        for (const auto& r : runs_)
            for (uint64_t i = 0; i < r.count; i++)
                f(r.first + i);
    }
    uint64_t page_count() const {
        uint64_t n = 0;
        for (const auto& r : runs_)
            n += r.count;
        return n;
    }

  private:
    struct Run {
        uint64_t first, count;
        const uint8_t* data;
        bool zero;
    };
    std::vector<Run> runs_;
    std::vector<std::vector<uint8_t>> owned_;
};

// Reads a little-endian u64 of a snapshot's memory (page lookups in a diff
// first, then the base).
std::optional<uint64_t> read_u64(const Pages* diff, const Pages& base, uint64_t addr) {
    if (addr % 8)
        return std::nullopt;
    const uint8_t* p = diff ? diff->page(addr / kPage) : nullptr;
    if (!p)
        p = base.page(addr / kPage);
    if (!p)
        return 0;
    uint64_t v;
    std::memcpy(&v, p + addr % kPage, 8);
    return v;
}

// Whether the snapshot's guest kernel is the embedded one (its header, text
// and read-only data byte for byte), so that its symbols can be trusted.
bool kernel_matches(const Pages& base) {
    auto img = embedded_kernel_image();
    auto data = kernel_symbol("__kernel_end"); // fallback bound
    uint64_t code_end = PSN_KERNEL_BASE + img.size();
    // Compare up to the first writable symbol.
    for (const auto& s : kernel_symbols())
        if ((s.kind == 'd' || s.kind == 'D' || s.kind == 'b' || s.kind == 'B') &&
            s.address >= PSN_KERNEL_BASE) {
            code_end = std::min(code_end, s.address);
        }
    (void)data;
    if (code_end <= PSN_KERNEL_BASE || code_end - PSN_KERNEL_BASE > img.size())
        return false;
    for (uint64_t a = PSN_KERNEL_BASE; a < code_end; a += kPage) {
        const uint8_t* p = base.page(a / kPage);
        uint64_t n = std::min<uint64_t>(kPage, code_end - a);
        if (!p || std::memcmp(p, img.data() + (a - PSN_KERNEL_BASE), n) != 0)
            return false;
    }
    return true;
}

// Which general registers differ from the base's, by name.
std::string register_diff(const SnapshotFile& base, std::span<const MergeInput> in) {
    static const char* kNames[] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi",
                                   "rsp", "rbp", "r8",  "r9",  "r10", "r11",
                                   "r12", "r13", "r14", "r15", "rip", "rflags"};
    if (base.regs().size() < sizeof(kNames) / sizeof(kNames[0]) * 8)
        return {};
    std::string out;
    for (size_t r = 0; r < std::size(kNames); r++) {
        uint64_t b;
        std::memcpy(&b, base.regs().data() + r * 8, 8);
        std::string vals;
        bool differs = false;
        for (const auto& m : in) {
            uint64_t v = 0;
            if (m.file->regs().size() >= (r + 1) * 8)
                std::memcpy(&v, m.file->regs().data() + r * 8, 8);
            differs |= v != b;
            vals += fmt::format(" {}={:#x}", m.id, v);
        }
        if (differs)
            out += fmt::format("; {}: base={:#x}{}", kNames[r], b, vals);
    }
    return out;
}

// Guest kernel variables dead at the wait point, and clock floors (merged
// as the latest of the sides). See merge_snapshots.
constexpr const char* kKernelDead[] = {
    "hc_in", "hc_wr", "hc_exit", "hc_note", "hc_sleep", "in_pos", "in_len", "eof", "psn_out_len",
    "base_tsc", "base_real", "base_mono", "rng_key", "rng_counter", "rng_buf", "rng_left",
    "seen_generation",
    // Counters for snapgen's records (syscalls, memory growth): read as
    // deltas around a warm-up, never by the program; a composite keeps the
    // base's.
    "psn_stats",
    // The TSC calibration: every side's is a calibration of the same TSC,
    // and the INPUT reply refreshes it when the monitor knows better.
    "tsc_hz", "tsc_mult"};
constexpr const char* kKernelMax[] = {"last_mono", "virt_ns"};

struct StateDecision {
    std::string refusal;
    snapshot::VcpuState vcpu;
    std::vector<uint8_t> monitor_state;
    uint64_t state_bytes = 0;
};

// vCPU and monitor state by rule: every input is at the base's wait point.
// A part of the vCPU state that every input left as the base had is the
// base's; one that every input changed the same way is theirs; anything
// else is refused (not guessed). Monitor state: the layout must be the
// base's; the counters are the chain's (requests served add up, the restore
// generation is the highest).
// With `caller_saved_dead` (the vCPU waits on the `out` of the guest
// kernel's hypercall(), a function of its own, so the SysV caller-saved
// registers hold nothing its caller needs) those registers are the base's.
StateDecision decide_state(const SnapshotFile& base, std::span<const MergeInput> in,
                           bool caller_saved_dead, bool scoped) {
    StateDecision d;
    d.vcpu = base.vcpu_state();
    // kvm_regs slots: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags.
    static constexpr int kCallerSaved[] = {0, 2, 3, 4, 5, 8, 9, 10, 11};
    // Registers a steady-state request of an input's route changes
    // (request-scoped, rule c) are not its warm state either.
    auto regs_of = [&](const SnapshotFile& f) {
        std::vector<uint8_t> r(f.regs().begin(), f.regs().end());
        if (r.size() < 18 * 8 || base.regs().size() != r.size())
            return r;
        if (caller_saved_dead)
            for (int k : kCallerSaved)
                std::memcpy(r.data() + k * 8, base.regs().data() + k * 8, 8);
        uint32_t mask = 0;
        for (const auto& m : in)
            if (m.file == &f && scoped)
                mask = m.scoped_registers & ~((1u << 6) | (1u << 16)); // never rsp, rip
        for (int k = 0; k < 18; k++)
            if (mask & (1u << k))
                std::memcpy(r.data() + k * 8, base.regs().data() + k * 8, 8);
        return r;
    };
    auto pick = [&](const char* what, auto get, auto& into) -> bool {
        auto b = get(base);
        bool all_base = true, agree = true;
        for (const auto& m : in) {
            auto v = get(*m.file);
            all_base = all_base && v == b;
            agree = agree && v == get(*in[0].file);
        }
        if (all_base)
            return true;
        if (agree) {
            into = get(*in[0].file);
            return true;
        }
        std::vector<std::string> who;
        for (const auto& m : in)
            if (get(*m.file) != b)
                who.push_back(m.id);
        d.refusal = fmt::format("vCPU {} differs between the inputs ({} changed it differently)",
                                what, fmt::join(who, ", "));
        if (std::string_view(what) == "registers")
            d.refusal += register_diff(base, in);
        return false;
    };
    auto vec = [](std::span<const uint8_t> s) { return std::vector<uint8_t>(s.begin(), s.end()); };
    // The SSE/AVX and x87 data registers are caller-saved in the SysV ABI,
    // and the program waits inside a call to read(): dead. The x87 control
    // word and MXCSR are callee-saved: they must agree. (XXX: a program
    // whose read() is a syscall inlined into code that keeps vector values
    // live across it would break this; --verify would catch it.)
    auto xsave_of = [&](const SnapshotFile& f) {
        std::vector<uint8_t> x(f.xsave().begin(), f.xsave().end());
        if (!caller_saved_dead || x.size() != base.xsave().size())
            return x;
        static constexpr std::pair<size_t, size_t> kDead[] = {
            {2, 24}, {32, 416}, {512, 576}, {576, 832}, {1088, 2688}};
        for (auto [lo, hi] : kDead)
            for (size_t i = lo; i < hi && i < x.size(); i++)
                x[i] = base.xsave()[i];
        return x;
    };
    if (!pick("registers", regs_of, d.vcpu.regs) ||
        !pick(
            "special registers", [&](const SnapshotFile& f) { return vec(f.sregs()); },
            d.vcpu.sregs) ||
        !pick("xsave", xsave_of, d.vcpu.xsave) ||
        !pick(
            "xcrs", [&](const SnapshotFile& f) { return vec(f.xcrs()); }, d.vcpu.xcrs) ||
        !pick(
            "MSRs", [&](const SnapshotFile& f) { return f.msrs(); }, d.vcpu.msrs))
        return d;
    auto bs = snapshot::decode_monitor_state(base.monitor_state());
    if (!bs) {
        d.refusal = "base monitor state: " + bs.error().describe();
        return d;
    }
    snapshot::MonitorState out = *bs;
    for (const auto& m : in) {
        auto s = snapshot::decode_monitor_state(m.file->monitor_state());
        if (!s) {
            d.refusal = m.id + ": monitor state: " + s.error().describe();
            return d;
        }
        snapshot::MonitorState a = *s, b = *bs;
        // The counters are decided below; everything else must be the base's.
        a.requests_served = b.requests_served = 0;
        a.restore_generation = b.restore_generation = 0;
        // The TSC frequency is refined as the monitor runs: every side's is
        // a measurement of the same TSC; the base's stands.
        a.tsc_hz = b.tsc_hz = 0;
        if (std::memcmp(&a, &b, sizeof a) != 0) {
            std::vector<uint64_t> wa(sizeof a / 8), wb(sizeof b / 8);
            std::memcpy(wa.data(), &a, sizeof a);
            std::memcpy(wb.data(), &b, sizeof b);
            size_t k = 0;
            while (k < wa.size() && wa[k] == wb[k])
                k++;
            d.refusal =
                fmt::format("{}: monitor state differs from the base's at byte {} "
                            "(0x{:x}, base 0x{:x})",
                            m.id, k * 8, k < wa.size() ? wa[k] : 0, k < wb.size() ? wb[k] : 0);
            return d;
        }
        if (s->requests_served < bs->requests_served) {
            d.refusal = m.id + ": served fewer requests than the base";
            return d;
        }
        out.requests_served += s->requests_served - bs->requests_served;
        out.restore_generation = std::max(out.restore_generation, s->restore_generation);
    }
    d.monitor_state = snapshot::encode_monitor_state(out);
    return d;
}

// Sets dead[i] for the bytes of [lo, hi) that fall in page `page`.
void mark(std::vector<uint8_t>& dead, uint64_t page, uint64_t lo, uint64_t hi) {
    uint64_t p0 = page * kPage, p1 = p0 + kPage;
    lo = std::max(lo, p0);
    hi = std::min(hi, p1);
    if (lo >= hi)
        return;
    if (dead.empty())
        dead.assign(kPage, 0);
    std::memset(dead.data() + (lo - p0), 1, hi - lo);
}

} // namespace

const char* how_name(Composite::How how) {
    switch (how) {
    case Composite::How::kBase:
        return "base";
    case Composite::How::kSingle:
        return "single";
    case Composite::How::kMerged:
        return "merged";
    case Composite::How::kChained:
        return "chained";
    }
    return "?";
}

Result<std::vector<std::string>> resolve_ids(const library::Library& lib,
                                             std::span<const std::string> ids) {
    std::set<size_t> seen;
    for (const auto& id : ids) {
        const library::Entry* e = nullptr;
        // Only plain ids or file names: no paths.
        bool plain = !id.empty() && id.size() <= 64 &&
                     id.find_first_of("/\\") == std::string::npos && id != "." && id != "..";
        if (plain)
            e = lib.find(id);
        if (!e)
            return make_error(Errc::kInvalidArgument, "'{}' is not a snapshot of the library {}",
                              id, lib.dir);
        size_t k = size_t(e - lib.snapshots.data());
        if (!seen.insert(k).second)
            return make_error(Errc::kInvalidArgument, "snapshot '{}' is listed twice", e->id);
    }
    std::vector<std::string> out;
    for (size_t k : seen)
        out.push_back(lib.snapshots[k].id);
    return out;
}

Result<library::Scoped> read_scoped(const library::Entry& entry) {
    return library::read_scoped_file(entry.path.substr(0, entry.path.size() - 5) + ".scoped");
}

Result<MergeOutput> merge_snapshots(const SnapshotFile& base, std::span<const MergeInput> inputs,
                                    const MergeRules& rules) {
    double t0 = now_us();
    MergeOutput out;
    MergeReport& rep = out.report;
    if (base.kind() != snapshot::SnapshotKind::kFull)
        return make_error(Errc::kInvalidArgument, "{}: the base is not a full snapshot",
                          base.path());
    for (const auto& m : inputs) {
        if (m.file->kind() != snapshot::SnapshotKind::kDiff)
            return make_error(Errc::kInvalidArgument, "{}: not a diff snapshot", m.id);
        if (auto s = m.file->verify_parent(base); !s)
            return make_error(
                Errc::kInvalidArgument, "{}: not made from this base (parent {}, base {})", m.id,
                m.file->parent() ? m.file->parent()->hex() : "none", base.content_hash().hex());
        if (m.file->executable() != base.executable())
            return make_error(Errc::kInvalidArgument, "{}: made from another executable", m.id);
    }
    auto bp = Pages::of(base);
    if (!bp)
        return std::unexpected(bp.error());
    std::vector<Pages> sides;
    for (const auto& m : inputs) {
        auto p = Pages::of(*m.file);
        if (!p)
            return std::unexpected(p.error());
        rep.input_bytes += p->page_count() * kPage;
        sides.push_back(std::move(*p));
    }
    auto ms = snapshot::decode_monitor_state(base.monitor_state());
    if (!ms)
        return std::unexpected(ms.error().with_context(base.path()));

    // What the rules know about the guest kernel.
    bool kernel_ok = kernel_matches(*bp);
    bool caller_saved_dead = false;
    if (rules.presnap_state && kernel_ok && base.regs().size() >= sizeof(kvm_regs)) {
        kvm_regs r;
        std::memcpy(&r, base.regs().data(), sizeof r);
        auto hc = kernel_symbol("hypercall");
        caller_saved_dead = hc && hc->size && r.rip > hc->address && r.rip - hc->address < hc->size;
    }
    StateDecision st = decide_state(base, inputs, caller_saved_dead, rules.scoped);
    for (const auto& m : inputs)
        if (!(m.file->cpu_features() == base.cpu_features()) && st.refusal.empty())
            st.refusal = m.id + ": made on a host with other CPU features than the base";
    auto user_rsp_sym = kernel_symbol("psn_user_rsp");
    auto kstack = kernel_symbol("psn_kernel_stack");
    auto kstack_top = kernel_symbol("psn_kernel_stack_top");
    auto brk_sym = kernel_symbol("brk_cur");
    std::optional<uint64_t> brk_end;
    if (kernel_ok && brk_sym) {
        // The highest break of the inputs (each grows its own heap from the base's).
        for (size_t i = 0; i < inputs.size(); i++)
            if (auto v = read_u64(&sides[i], *bp, brk_sym->address))
                brk_end = std::max(brk_end.value_or(0), *v);
    }
    uint64_t kernel_rsp = 0;
    if (base.regs().size() >= sizeof(kvm_regs)) {
        kvm_regs r;
        std::memcpy(&r, base.regs().data(), sizeof r);
        kernel_rsp = r.rsp;
    }
    // Dead ranges at the wait point (every input is at the base's wait point
    // and, if decide_state agreed, has the base's registers).
    std::vector<std::pair<uint64_t, uint64_t>> dead_ranges;
    std::vector<uint64_t> max_vars;
    if (rules.presnap_state) {
        // The monitor rewrites these boot-info fields at every restore.
        dead_ranges.emplace_back(PSN_BOOT_INFO_ADDR + offsetof(psn_boot_info, restore_generation),
                                 PSN_BOOT_INFO_ADDR + offsetof(psn_boot_info, random_seed) +
                                     sizeof(psn_boot_info::random_seed));
        // Each snapshot's own mmap window (rule d) places later mappings
        // only: the composite maps below mmap_top, as the base does.
        dead_ranges.emplace_back(PSN_BOOT_INFO_ADDR + offsetof(psn_boot_info, mmap_window),
                                 PSN_BOOT_INFO_ADDR + offsetof(psn_boot_info, mmap_window) + 8);
        // The kernel stack below the vCPU's stack pointer (the vCPU waits in
        // the guest kernel) is dead.
        if (kernel_ok && kstack && kstack_top && kernel_rsp > kstack->address &&
            kernel_rsp <= kstack_top->address)
            dead_ranges.emplace_back(kstack->address, kernel_rsp);
        // The I/O buffers: the input was used up (the guest asks for more)
        // and the output handed over at the wait point.
        dead_ranges.emplace_back(ms->in_buf, ms->in_buf + PSN_IO_BUFFER_SIZE);
        dead_ranges.emplace_back(ms->out_buf, ms->out_buf + PSN_IO_BUFFER_SIZE);
        if (kernel_ok) {
            // Guest kernel variables that are rewritten before they are read
            // again after the wait point: the hypercall structs, the input
            // position, the buffered output count, the clock's anchor (set
            // from the INPUT reply) and the random generator (re-keyed when
            // the restore generation changes, which it does at every restore).
            for (const char* name : kKernelDead)
                if (auto sym = kernel_symbol(name); sym && sym->size)
                    dead_ranges.emplace_back(sym->address, sym->address + sym->size);
            // Clock floors: the latest of the sides.
            for (const char* name : kKernelMax)
                if (auto sym = kernel_symbol(name); sym && sym->size == 8)
                    max_vars.push_back(sym->address);
        }
    }
    for (uint64_t a : max_vars)
        dead_ranges.emplace_back(a, a + 8);
    if (rules.dead_stack && kernel_ok && user_rsp_sym) {
        // The user stack below the stack pointer saved at the syscall, less
        // the red zone, is dead: the same in every input (they agree on the
        // kernel stack, else they conflict there).
        uint64_t rsp = 0;
        bool agreed = !inputs.empty();
        for (size_t i = 0; i < inputs.size() && agreed; i++) {
            auto v = read_u64(&sides[i], *bp, user_rsp_sym->address);
            agreed = v.has_value() && (i == 0 || rsp == *v);
            rsp = v.value_or(0);
        }
        if (agreed && rsp > ms->stack_low + 128 && rsp <= ms->stack_top)
            dead_ranges.emplace_back(ms->stack_low, rsp - 128);
    }

    // Scoped ranges per input.
    auto scoped_in_page = [&](size_t i, uint64_t page, std::vector<uint8_t>& mask) {
        mask.clear();
        if (!rules.scoped)
            return;
        const auto& v = inputs[i].scoped;
        uint64_t p0 = page * kPage;
        auto it = std::lower_bound(v.begin(), v.end(), std::pair<uint64_t, uint64_t>{p0, 0});
        if (it != v.begin())
            --it;
        for (; it != v.end() && it->first < p0 + kPage; ++it)
            mark(mask, page, it->first, it->second);
    };

    // Every page any input changed.
    std::map<uint64_t, std::vector<size_t>> pages;
    for (size_t i = 0; i < sides.size(); i++)
        sides[i].each_page([&](uint64_t p) { pages[p].push_back(i); });
    // First the pages several inputs changed (where conflicts are), then,
    // only if everything merged, the composite's pages.
    std::map<uint64_t, std::vector<uint8_t>> shared;
    std::vector<uint8_t> dead;
    std::vector<std::vector<uint8_t>> masks(sides.size());
    for (const auto& [page, who] : pages) {
        if (!rules.all_conflicts && (!rep.conflicts.empty() || !st.refusal.empty()))
            break;
        if (who.size() == 1)
            continue;
        auto& merged_page = shared[page];
        merged_page.resize(kPage);
        std::span<uint8_t> dst(merged_page);
        rep.pages_shared++;
        dead.clear();
        for (const auto& [lo, hi] : dead_ranges)
            mark(dead, page, lo, hi);
        std::vector<PageSide> ps;
        for (size_t i : who) {
            scoped_in_page(i, page, masks[i]);
            ps.push_back({{sides[i].page(page), kPage}, masks[i]});
        }
        const uint8_t* b = bp->page(page);
        auto r = merge_page(b ? std::span<const uint8_t>(b, kPage) : std::span<const uint8_t>{}, ps,
                            dead, dst);
        if (page * kPage >= PSN_BOOT_INFO_ADDR && page * kPage < PSN_KERNEL_LIMIT)
            rep.state_bytes += r.dead_bytes;
        else
            rep.dead_bytes += r.dead_bytes;
        rep.scoped_bytes += r.scoped_bytes;
        for (uint64_t a : max_vars) {
            if (a / kPage != page)
                continue;
            int64_t v = 0;
            if (b)
                std::memcpy(&v, b + a % kPage, 8);
            for (size_t i : who) {
                int64_t x;
                std::memcpy(&x, sides[i].page(page) + a % kPage, 8);
                v = std::max(v, x);
            }
            std::memcpy(dst.data() + a % kPage, &v, 8);
        }
        if (!r.conflict)
            continue;
        // Runs of conflicting offsets, reported by region.
        for (size_t j = 0; j < r.offsets.size();) {
            size_t e = j + 1;
            while (e < r.offsets.size() && r.offsets[e] <= r.offsets[e - 1] + 8)
                e++;
            uint64_t addr = page * kPage + r.offsets[j];
            Conflict c;
            c.address = addr;
            c.bytes = e - j;
            std::vector<std::string> ids;
            for (size_t i : who) {
                const uint8_t* sp = sides[i].page(page);
                for (size_t q = j; q < e; q++)
                    if (sp[r.offsets[q]] != (b ? b[r.offsets[q]] : 0)) {
                        ids.push_back(inputs[i].id);
                        break;
                    }
            }
            c.sides = fmt::format("{}", fmt::join(ids, ","));
            out.report.conflicts.push_back(std::move(c));
            j = e;
        }
    }
    rep.pages = pages.size();
    if (!rep.conflicts.empty() || !st.refusal.empty()) {
        rep.refusal = st.refusal;
        // Name the regions (reading the executable's symbols costs a few ms:
        // only when something conflicts).
        std::optional<ElfSymbols> elf;
        if (auto path = snapshot::recorded_executable(base))
            if (auto s = read_elf_symbols(*path))
                elf = std::move(*s);
        for (auto& c : rep.conflicts) {
            Region r = classify(c.address, *ms, elf ? &*elf : nullptr, brk_end.value_or(0));
            c.region = r.region;
            c.symbol = r.symbol;
            if (r.region == "guest kernel" && kernel_ok)
                if (auto s = kernel_symbol_at(c.address))
                    c.symbol = c.address == s->address
                                   ? std::string(s->name)
                                   : fmt::format("{}+{:#x}", s->name, c.address - s->address);
        }
        rep.us = now_us() - t0;
        return out;
    }

    std::vector<uint64_t> order;
    order.reserve(pages.size());
    std::unique_ptr<uint8_t[]> buf(new uint8_t[pages.size() * kPage]); // every page is written
    size_t k = 0;
    for (const auto& [page, who] : pages) {
        const uint8_t* src = who.size() == 1 ? sides[who[0]].page(page) : shared[page].data();
        std::memcpy(buf.get() + k * kPage, src, kPage);
        order.push_back(page);
        k++;
    }
    snapshot::SnapshotImage img;
    img.kind = snapshot::SnapshotKind::kDiff;
    img.flags = base.flags();
    img.guest_memory_size = base.guest_memory_size();
    img.vcpu = std::move(st.vcpu);
    img.monitor_state = std::move(st.monitor_state);
    img.cpu_features = base.cpu_features();
    img.parent = base.content_hash();
    img.executable = base.executable();
    std::vector<std::string> ids;
    for (const auto& m : inputs)
        ids.push_back(fmt::format("\"{}\"", m.id));
    img.metadata_json = fmt::format("{{\"composite\":\"merged\",\"ids\":[{}],\"pages\":{}}}",
                                    fmt::join(ids, ","), order.size());
    // The working set: the union of the inputs'.
    std::set<uint64_t> ws;
    for (const auto& m : inputs)
        for (const auto& r : m.file->working_set())
            for (uint64_t p = 0; p < r.page_count && ws.size() < (1u << 24); p++)
                ws.insert(r.first_page + p);
    img.working_set = snapshot::to_ranges(std::vector<uint64_t>(ws.begin(), ws.end()));
    for (size_t j = 0; j < order.size();) {
        size_t e = j + 1;
        while (e < order.size() && order[e] == order[e - 1] + 1)
            e++;
        if (auto s = snapshot::add_memory(img, order[j], {buf.get() + j * kPage, (e - j) * kPage},
                                          snapshot::ZeroPages::kRecord);
            !s)
            return std::unexpected(s.error());
        j = e;
    }
    auto bytes = snapshot::serialize_snapshot(img);
    if (!bytes)
        return std::unexpected(bytes.error());
    out.snapshot = std::move(*bytes);
    rep.merged = true;
    rep.us = now_us() - t0;
    return out;
}

namespace {

// Writes `bytes` to `path` atomically: a temporary name in the same
// directory, fsync, rename. Concurrent writers of one path each rename a
// complete file; the last one wins, and both are the same set's composite.
Status write_atomic(const std::string& path, std::span<const uint8_t> bytes) {
    std::string tmp = path + ".tmp-XXXXXX";
    int fd = mkstemp(tmp.data());
    if (fd < 0)
        return make_errno_error(Errc::kIo, errno, "cannot create a temporary file for " + path);
    size_t done = 0;
    int err = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : EIO;
            break;
        }
        done += size_t(n);
    }
    if (!err && fsync(fd) != 0)
        err = errno;
    if (::fchmod(fd, 0644) != 0 && !err)
        err = errno;
    ::close(fd);
    if (!err && ::rename(tmp.c_str(), path.c_str()) != 0)
        err = errno;
    if (err) {
        ::unlink(tmp.c_str());
        return make_errno_error(Errc::kIo, err, "cannot write " + path);
    }
    return {};
}

// Each input's warm-up, replayed on a fresh restore of `chain`, must answer
// as it did when the library was built. "" when it does, else why not.
Result<std::string> verify_chain(const library::Library& lib, std::span<const std::string> ids,
                                 const std::vector<SnapshotFile>& chain,
                                 const runtime::SessionOptions& session) {
    auto links = snapshot::links_of(chain);
    for (const auto& id : ids) {
        const library::Entry* e = lib.find(id);
        auto r = snapshot::replay(links, {e->warmup}, session);
        if (!r)
            return std::unexpected(r.error());
        if (r->outcome.kind != runtime::RunOutcome::Kind::kWaiting || r->responses.size() != 1)
            return fmt::format("{}: the warm-up '{}' did not reach its wait point{}", id, e->warmup,
                               r->outcome.message.empty() ? "" : ": " + r->outcome.message);
        if (r->responses[0] != e->warmup_response) {
            const std::string& got = r->responses[0];
            size_t at = 0;
            while (at < got.size() && at < e->warmup_response.size() &&
                   got[at] == e->warmup_response[at])
                at++;
            return fmt::format("{}: the warm-up '{}' answered differently from the library "
                               "(first difference at byte {}: {} bytes, recorded {})",
                               id, e->warmup, at, got.size(), e->warmup_response.size());
        }
    }
    return std::string{};
}

// Restores the base, replays every input's warm-up in manifest order and
// captures the result: always correct, costs the warm-ups once.
Result<std::vector<uint8_t>> build_chain(const library::Library& lib, const SnapshotFile& base,
                                         std::span<const std::string> ids,
                                         const runtime::SessionOptions& session) {
    snapshot::RestoreOptions ro;
    ro.session = session;
    ro.session.track_dirty = true;
    ro.session.trace = {};
    const SnapshotFile* chain[] = {&base};
    auto s = snapshot::restore(chain, ro);
    if (!s)
        return std::unexpected(s.error());
    std::vector<std::string> warmups;
    for (const auto& id : ids)
        warmups.push_back(lib.find(id)->warmup);
    auto in = runtime::MemoryRequestSource::of_lines(warmups);
    runtime::MemoryResponseSink out;
    auto o = (*s)->run(in, out, runtime::AtEof::kStop);
    if (!o)
        return std::unexpected(o.error());
    if (o->kind != runtime::RunOutcome::Kind::kWaiting)
        return make_error(Errc::kGuest,
                          "chaining the warm-ups of {}: the program did not reach a "
                          "wait point: {}",
                          fmt::join(ids, ","), o->message.empty() ? "it exited" : o->message);
    auto cap = snapshot::capture(**s);
    if (!cap)
        return std::unexpected(cap.error());
    // The working set to prefetch is what a later request of each route
    // touches from the chain (each input's held-out request, replayed alone
    // on a fresh restore), not what the warm-ups touched while building it:
    // those are every route's initialisation, most of the composite.
    {
        auto tmp = snapshot::to_memory(cap->image);
        if (!tmp)
            return std::unexpected(tmp.error());
        const SnapshotFile* links[] = {&base, &*tmp};
        std::set<uint64_t> touched;
        for (const auto& id : ids) {
            auto r = snapshot::replay(links, {lib.find(id)->held_out}, session);
            if (!r)
                return std::unexpected(r.error());
            touched.insert(r->touched.begin(), r->touched.end());
        }
        snapshot::set_working_set(*cap, std::vector<uint64_t>(touched.begin(), touched.end()));
    }
    std::vector<std::string> q;
    for (const auto& id : ids)
        q.push_back(fmt::format("\"{}\"", id));
    cap->image.metadata_json =
        fmt::format("{{\"composite\":\"chained\",\"ids\":[{}],\"pages\":{}}}", fmt::join(q, ","),
                    cap->pages_dirtied);
    return snapshot::serialize_snapshot(cap->image);
}

// Opens composite bytes: from the file just written (so that restores map
// its pages), or from memory.
Result<SnapshotFile> open_bytes(std::vector<uint8_t> bytes, const std::string& path, bool store) {
    if (store) {
        if (auto s = write_atomic(path, bytes); !s)
            return std::unexpected(s.error());
        return SnapshotFile::open(path);
    }
    // A sealed memfd, not a heap buffer: restores then map the composite's
    // pages copy-on-write instead of copying tens of MiB per restore.
    return snapshot::memory_file(bytes);
}

} // namespace

Result<Composite> make_composite(const library::Library& lib, std::span<const std::string> ids_in,
                                 const CompositeOptions& options) {
    double t0 = now_us();
    auto ids = resolve_ids(lib, ids_in);
    if (!ids)
        return std::unexpected(ids.error());
    Composite c;
    c.ids = *ids;
    const snapshot::OpenOptions open_options{options.data_check};
    auto base = SnapshotFile::open(lib.base_path, open_options);
    if (!base)
        return std::unexpected(base.error());
    if (base->kind() != snapshot::SnapshotKind::kFull)
        return make_error(Errc::kFormat, "{}: the library's base is not a full snapshot",
                          lib.base_path);
    c.chain.push_back(std::move(*base));
    const SnapshotFile& b = c.chain.front();
    std::vector<SnapshotFile> files;
    for (const auto& id : c.ids) {
        const library::Entry* e = lib.find(id);
        auto f = SnapshotFile::open(e->path, open_options);
        if (!f)
            return std::unexpected(f.error());
        if (f->kind() != snapshot::SnapshotKind::kDiff || !f->verify_parent(b))
            return make_error(Errc::kFormat,
                              "{}: not a diff of this library's base (parent {}, base {})", e->path,
                              f->parent() ? f->parent()->hex() : "none", b.content_hash().hex());
        files.push_back(std::move(*f));
    }
    auto finish = [&](Composite::How how) -> Result<Composite> {
        c.how = how;
        c.us = now_us() - t0;
        return std::move(c);
    };
    if (c.ids.empty())
        return finish(Composite::How::kBase);
    if (c.ids.size() == 1) {
        c.chain.push_back(std::move(files[0]));
        if (options.verify) {
            auto v = verify_chain(lib, c.ids, c.chain, options.session);
            if (!v)
                return std::unexpected(v.error());
            if (!v->empty())
                return make_error(Errc::kGuest, "verification failed: {}", *v);
        }
        return finish(Composite::How::kSingle);
    }

    std::string dir = library::composites_dir(lib);
    std::string path = dir + "/" + library::composite_file_name(b.content_hash().hex(), c.ids);
    if (options.store) {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec)
            return make_error(Errc::kIo, "cannot create {}: {}", dir, ec.message());
    }
    // A stored composite: reused if it is a diff of this base that says it
    // is this set's (anything else is rebuilt and replaced).
    if (options.use_cache && fs::exists(path)) {
        auto f = SnapshotFile::open(path, open_options);
        if (f && f->kind() == snapshot::SnapshotKind::kDiff && f->verify_parent(b)) {
            std::string meta(f->metadata_json());
            std::vector<std::string> q;
            for (const auto& id : c.ids)
                q.push_back(fmt::format("\"{}\"", id));
            std::string want_ids = fmt::format("\"ids\":[{}]", fmt::join(q, ","));
            bool merged = meta.find("\"composite\":\"merged\"") != std::string::npos;
            bool chained = meta.find("\"composite\":\"chained\"") != std::string::npos;
            if ((merged || chained) && meta.find(want_ids) != std::string::npos) {
                c.chain.push_back(std::move(*f));
                c.path = path;
                c.from_cache = true;
                bool ok = true;
                if (options.verify) {
                    auto v = verify_chain(lib, c.ids, c.chain, options.session);
                    if (!v)
                        return std::unexpected(v.error());
                    ok = v->empty();
                    if (!ok) {
                        c.verify_problem = *v;
                        c.chain.pop_back();
                        c.from_cache = false;
                    }
                }
                if (ok)
                    return finish(merged ? Composite::How::kMerged : Composite::How::kChained);
            }
        }
    }
    if (options.allow_merge && c.verify_problem.empty()) {
        std::vector<MergeInput> inputs;
        for (size_t i = 0; i < c.ids.size(); i++) {
            MergeInput m{c.ids[i], &files[i], {}};
            if (options.rules.scoped) {
                auto sc = read_scoped(*lib.find(c.ids[i]));
                if (!sc)
                    return std::unexpected(sc.error());
                m.scoped = std::move(sc->bytes);
                m.scoped_registers = sc->registers;
            }
            inputs.push_back(std::move(m));
        }
        auto m = merge_snapshots(b, inputs, options.rules);
        if (!m)
            return std::unexpected(m.error());
        c.merge = std::move(m->report);
        if (c.merge.merged) {
            auto f = open_bytes(std::move(m->snapshot), path, options.store);
            if (!f)
                return std::unexpected(f.error());
            c.chain.push_back(std::move(*f));
            if (options.store)
                c.path = path;
            if (!options.verify)
                return finish(Composite::How::kMerged);
            auto v = verify_chain(lib, c.ids, c.chain, options.session);
            if (!v)
                return std::unexpected(v.error());
            if (v->empty())
                return finish(Composite::How::kMerged);
            c.verify_problem = *v;
            c.chain.pop_back();
            c.path.clear();
        }
    }
    double tc = now_us();
    auto bytes = build_chain(lib, b, c.ids, options.session);
    if (!bytes)
        return std::unexpected(bytes.error());
    auto f = open_bytes(std::move(*bytes), path, options.store);
    if (!f)
        return std::unexpected(f.error());
    c.chain.push_back(std::move(*f));
    c.chain_us = now_us() - tc;
    if (options.store)
        c.path = path;
    if (options.verify) {
        auto v = verify_chain(lib, c.ids, c.chain, options.session);
        if (!v)
            return std::unexpected(v.error());
        if (!v->empty())
            return make_error(Errc::kGuest, "verification of the chained composite failed: {}", *v);
    }
    return finish(Composite::How::kChained);
}

Status write_composite(const Composite& c, const std::string& path) {
    std::vector<uint8_t> owned;
    std::span<const uint8_t> bytes;
    if (c.chain.empty())
        return make_error(Errc::kInvalidArgument, "no composite to write");
    if (c.chain.size() >= 2) {
        // A library snapshot whose pages are in the library's page store is
        // written out self-contained (OUT is not in the library).
        auto own = snapshot::self_contained_bytes(c.chain.back());
        if (!own)
            return std::unexpected(own.error());
        owned = std::move(*own);
        bytes = owned;
    } else {
        const SnapshotFile& b = c.chain.front();
        snapshot::SnapshotImage img;
        img.kind = snapshot::SnapshotKind::kDiff;
        img.flags = b.flags();
        img.guest_memory_size = b.guest_memory_size();
        img.vcpu = b.vcpu_state();
        img.monitor_state.assign(b.monitor_state().begin(), b.monitor_state().end());
        img.cpu_features = b.cpu_features();
        img.parent = b.content_hash();
        img.executable = b.executable();
        img.metadata_json = "{\"composite\":\"base\",\"ids\":[]}";
        img.working_set = b.working_set();
        auto s = snapshot::serialize_snapshot(img);
        if (!s)
            return std::unexpected(s.error());
        owned = std::move(*s);
        bytes = owned;
    }
    if (output_kind(path) == OutputKind::kRegular)
        return write_atomic(path, bytes);
    FILE* f = path == "-" ? stdout : std::fopen(path.c_str(), "wb");
    if (!f)
        return make_errno_error(Errc::kIo, errno, "cannot open " + path);
    bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0;
    int err = errno;
    if (f != stdout)
        std::fclose(f);
    if (!ok)
        return make_errno_error(Errc::kIo, err, "cannot write " + path);
    return {};
}

} // namespace presnap::merge
