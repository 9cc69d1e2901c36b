// The merge rules on whole snapshots, as pictures: a base and two diffs
// built in memory (no KVM), with the guest kernel image this presnap embeds
// so that the guest-kernel rules apply. Each case writes a few bytes on each
// side and says what the composite holds, or which region conflicts.
#include "../../libcore/merge/kernel_symbols.h"
#include "presnap/guest_abi.h"
#include "presnap/merge/composite.h"
#include "presnap/snapshot/monitor_state.h"

#include <doctest/doctest.h>
#include <linux/kvm.h>

#include <cstring>
#include <map>
#include <vector>

namespace {

using namespace presnap;
using merge::kernel_symbol;
constexpr uint64_t kMem = 64ull << 20, kPg = 4096;

snapshot::MonitorState layout() {
    snapshot::MonitorState st;
    st.version = snapshot::kMonitorStateVersion;
    st.mem_size = kMem;
    st.page_tables = 0x10000;
    st.page_table_pages = 1;
    st.in_buf = 0x3c00000;
    st.out_buf = 0x3d00000;
    st.stack_low = 0x3000000;
    st.stack_top = 0x3800000;
    st.mmap_top = 0x2f00000;
    st.brk_start = 0x600000;
    st.requests_served = 1;
    st.restore_generation = 1;
    return st;
}

// Guest memory as page number -> bytes.
using Memory = std::map<uint64_t, std::vector<uint8_t>>;

void poke(Memory& m, uint64_t addr, const void* data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        auto& page = m[(addr + i) / kPg];
        if (page.empty())
            page.assign(kPg, 0);
        page[(addr + i) % kPg] = static_cast<const uint8_t*>(data)[i];
    }
}
void poke64(Memory& m, uint64_t addr, uint64_t v) {
    poke(m, addr, &v, 8);
}

struct Side {
    Memory pages;        // the pages this side changed (full content)
    kvm_regs regs{};     // its registers
    uint64_t served = 2; // requests served
};

snapshot::SnapshotFile build(snapshot::SnapshotKind kind, const Memory& m, const kvm_regs& regs,
                             const snapshot::MonitorState& st,
                             std::optional<snapshot::Hash128> parent) {
    snapshot::SnapshotImage img;
    img.kind = kind;
    img.guest_memory_size = kMem;
    img.vcpu.regs.resize(sizeof regs);
    std::memcpy(img.vcpu.regs.data(), &regs, sizeof regs);
    img.vcpu.sregs.assign(snapshot::kSregsSize, 0);
    img.monitor_state = snapshot::encode_monitor_state(st);
    img.parent = parent;
    for (const auto& [page, bytes] : m)
        REQUIRE(snapshot::add_memory(img, page, bytes,
                                     kind == snapshot::SnapshotKind::kFull
                                         ? snapshot::ZeroPages::kSkip
                                         : snapshot::ZeroPages::kRecord));
    auto bytes = snapshot::serialize_snapshot(img);
    REQUIRE(bytes);
    auto f = snapshot::SnapshotFile::parse(std::move(*bytes));
    REQUIRE(f);
    return std::move(*f);
}

struct Fixture {
    Memory base;
    kvm_regs regs{};
    uint64_t user_rsp = 0x37ff000;
    Fixture() {
        // The guest kernel's text as this presnap embeds it.
        auto img = merge::embedded_kernel_image();
        poke(base, PSN_KERNEL_BASE, img.data(), img.size());
        poke64(base, kernel_symbol("psn_user_rsp")->address, user_rsp);
        // The vCPU waits on the out of hypercall(), on the kernel stack.
        regs.rip = kernel_symbol("hypercall")->address + 8;
        regs.rsp = kernel_symbol("psn_kernel_stack_top")->address - 0x100;
        regs.rbx = 0x1234;
    }
    // A side: the base's pages it changes, with `edit` applied.
    Side side() const {
        Side s;
        s.regs = regs;
        return s;
    }
    void change(Side& s, uint64_t addr, const std::string& bytes) const {
        uint64_t page = addr / kPg;
        if (!s.pages.count(page))
            s.pages[page] = base.count(page) ? base.at(page) : std::vector<uint8_t>(kPg, 0);
        poke(s.pages, addr, bytes.data(), bytes.size());
    }
    void change64(Side& s, uint64_t addr, uint64_t v) const {
        change(s, addr, std::string(reinterpret_cast<const char*>(&v), 8));
    }
    struct Result {
        merge::MergeReport report;
        Memory memory; // the composite's pages
        kvm_regs regs{};
    };
    Result merge(const Side& a, const Side& b, merge::MergeRules rules = {},
                 std::vector<std::pair<uint64_t, uint64_t>> scoped_a = {},
                 uint32_t scoped_regs_a = 0) const {
        auto st = layout();
        auto base_file = build(snapshot::SnapshotKind::kFull, base, regs, st, std::nullopt);
        auto sa = st, sb = st;
        sa.requests_served = a.served;
        sb.requests_served = b.served;
        sa.restore_generation = sb.restore_generation = 2;
        auto fa =
            build(snapshot::SnapshotKind::kDiff, a.pages, a.regs, sa, base_file.content_hash());
        auto fb =
            build(snapshot::SnapshotKind::kDiff, b.pages, b.regs, sb, base_file.content_hash());
        merge::MergeInput in[] = {{"s001", &fa, scoped_a, scoped_regs_a}, {"s002", &fb, {}, 0}};
        auto out = merge::merge_snapshots(base_file, in, rules);
        REQUIRE(out);
        Result r;
        r.report = out->report;
        if (out->report.merged) {
            auto f = snapshot::SnapshotFile::parse(std::move(out->snapshot));
            REQUIRE(f);
            for (const auto& run : f->page_runs()) {
                std::vector<uint8_t> data(run.bytes());
                REQUIRE(f->read_run(run, data));
                for (uint64_t p = 0; p < run.page_count; p++)
                    r.memory[run.first_page + p].assign(data.begin() + p * kPg,
                                                        data.begin() + (p + 1) * kPg);
            }
            std::memcpy(&r.regs, f->regs().data(), sizeof r.regs);
            auto ms = snapshot::decode_monitor_state(f->monitor_state());
            REQUIRE(ms);
            CHECK(ms->requests_served == 1 + (a.served - 1) + (b.served - 1));
            CHECK(ms->restore_generation == 2);
        }
        return r;
    }
};

std::string at(const Memory& m, uint64_t addr, size_t n) {
    std::string s;
    for (size_t i = 0; i < n; i++) {
        auto it = m.find((addr + i) / kPg);
        s += it == m.end() ? '\0' : char(it->second[(addr + i) % kPg]);
    }
    return s;
}
uint64_t at64(const Memory& m, uint64_t addr) {
    uint64_t v;
    std::memcpy(&v, at(m, addr, 8).data(), 8);
    return v;
}
std::vector<std::string> regions(const merge::MergeReport& r) {
    std::vector<std::string> out;
    for (const auto& c : r.conflicts)
        out.push_back(c.region +
                      (c.symbol.empty() ? "" : " " + c.symbol.substr(0, c.symbol.find('+'))));
    return out;
}

} // namespace

TEST_CASE("rules: disjoint program data merges; the same byte written differently conflicts") {
    Fixture f;
    auto a = f.side(), b = f.side();
    f.change(a, 0x500000, "AA");
    f.change(b, 0x500010, "BB");
    auto r = f.merge(a, b);
    REQUIRE(r.report.merged);
    CHECK(at(r.memory, 0x500000, 2) == "AA");
    CHECK(at(r.memory, 0x500010, 2) == "BB");
    f.change(b, 0x500001, "X");
    r = f.merge(a, b);
    CHECK_FALSE(r.report.merged);
    CHECK(regions(r.report) == std::vector<std::string>{"other"});
}

TEST_CASE("rule a: the boot-info fields a restore rewrites are the base's") {
    Fixture f;
    auto a = f.side(), b = f.side();
    uint64_t seed = PSN_BOOT_INFO_ADDR + offsetof(psn_boot_info, random_seed);
    f.change(a, seed, "aaaa");
    f.change(b, seed, "bbbb");
    CHECK_FALSE(f.merge(a, b, {false, false, false}).report.merged);
    auto r = f.merge(a, b);
    REQUIRE(r.report.merged);
    CHECK(at(r.memory, seed, 4) == std::string(4, '\0'));
}

TEST_CASE("rule a: guest kernel variables dead at the wait point, clock floors the latest") {
    Fixture f;
    auto a = f.side(), b = f.side();
    uint64_t in_len = kernel_symbol("in_len")->address, mono = kernel_symbol("last_mono")->address;
    f.change64(a, in_len, 11);
    f.change64(b, in_len, 7);
    f.change64(a, mono, 500);
    f.change64(b, mono, 900);
    auto off = f.merge(a, b, {false, false, false});
    CHECK_FALSE(off.report.merged);
    CHECK(regions(off.report) ==
          std::vector<std::string>{"guest kernel in_len", "guest kernel last_mono"});
    auto r = f.merge(a, b);
    REQUIRE(r.report.merged);
    CHECK(at64(r.memory, in_len) == 0);
    CHECK(at64(r.memory, mono) == 900);
}

TEST_CASE("rule a: the guest kernel's mapping table still conflicts") {
    Fixture f;
    auto a = f.side(), b = f.side();
    uint64_t maps = kernel_symbol("maps")->address;
    f.change64(a, maps, 0x2e00000);
    f.change64(b, maps, 0x2d00000);
    auto r = f.merge(a, b);
    CHECK_FALSE(r.report.merged);
    CHECK(regions(r.report) == std::vector<std::string>{"guest kernel maps"});
}

TEST_CASE("rule a: caller-saved registers are dead at the wait point, callee-saved must agree") {
    Fixture f;
    auto a = f.side(), b = f.side();
    a.regs.r8 = 1;
    b.regs.r8 = 2;
    a.regs.rax = 5;
    CHECK_FALSE(f.merge(a, b, {false, false, false}).report.merged);
    auto r = f.merge(a, b);
    REQUIRE(r.report.merged);
    CHECK(r.regs.r8 == f.regs.r8);
    CHECK(r.regs.rax == f.regs.rax);
    b.regs.rbx = 0x9999;
    r = f.merge(a, b);
    CHECK_FALSE(r.report.merged);
    CHECK(r.report.refusal.find("rbx") != std::string::npos);
}

TEST_CASE("rule b: the stack below the saved stack pointer and its red zone is dead") {
    Fixture f;
    auto a = f.side(), b = f.side();
    uint64_t below = f.user_rsp - 128 - 64, red = f.user_rsp - 64, above = f.user_rsp + 16;
    f.change(a, below, "aa");
    f.change(b, below, "bb");
    auto off = f.merge(a, b, {true, false, false});
    CHECK_FALSE(off.report.merged);
    CHECK(regions(off.report) == std::vector<std::string>{"stack"});
    auto r = f.merge(a, b);
    REQUIRE(r.report.merged);
    CHECK(at(r.memory, below, 2) == std::string(2, '\0'));
    // The red zone and the live stack above the pointer still conflict.
    f.change(a, red, "r");
    f.change(b, red, "s");
    CHECK(regions(f.merge(a, b).report) == std::vector<std::string>{"stack"});
    auto a2 = f.side(), b2 = f.side();
    f.change(a2, above, "x");
    f.change(b2, above, "y");
    CHECK(regions(f.merge(a2, b2).report) == std::vector<std::string>{"stack"});
}

TEST_CASE("rule b: sides that saved different stack pointers get no dead stack") {
    Fixture f;
    auto a = f.side(), b = f.side();
    uint64_t below = f.user_rsp - 4096;
    f.change(a, below, "aa");
    f.change(b, below, "bb");
    f.change64(b, kernel_symbol("psn_user_rsp")->address, f.user_rsp - 16);
    CHECK_FALSE(f.merge(a, b).report.merged);
}

TEST_CASE("rule c: a side's request-scoped bytes and registers are not its warm state") {
    Fixture f;
    auto a = f.side(), b = f.side();
    f.change(a, 0x500000, "Aq");
    f.change(b, 0x500000, "Bq");
    CHECK_FALSE(f.merge(a, b).report.merged);
    auto r = f.merge(a, b, {}, {{0x500000, 0x500001}});
    REQUIRE(r.report.merged);
    CHECK(at(r.memory, 0x500000, 2) == "Bq");
    CHECK_FALSE(f.merge(a, b, {true, true, false}, {{0x500000, 0x500001}}).report.merged);
    // A callee-saved register a steady-state request of a's route changes.
    auto a2 = f.side(), b2 = f.side();
    a2.regs.r15 = 8;
    b2.regs.r15 = 7;
    CHECK_FALSE(f.merge(a2, b2).report.merged);
    b2.regs.r15 = f.regs.r15;
    r = f.merge(a2, b2, {}, {}, 1u << 15);
    REQUIRE(r.report.merged);
    CHECK(r.regs.r15 == f.regs.r15);
}

TEST_CASE("rule d: each side's own mmap window is not carried into the composite") {
    Fixture f;
    auto a = f.side(), b = f.side();
    uint64_t w = PSN_BOOT_INFO_ADDR + offsetof(psn_boot_info, mmap_window);
    f.change64(a, w, 0x2000000);
    f.change64(b, w, 0x1000000);
    f.change(a, 0x2000000 - 4096, "big a");
    f.change(b, 0x1000000 - 4096, "big b");
    CHECK_FALSE(f.merge(a, b, {false, false, false}).report.merged);
    auto r = f.merge(a, b);
    REQUIRE(r.report.merged);
    CHECK(at64(r.memory, w) == 0);
    CHECK(at(r.memory, 0x2000000 - 4096, 5) == "big a");
    CHECK(at(r.memory, 0x1000000 - 4096, 5) == "big b");
}
