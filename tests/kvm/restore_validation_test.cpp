// A snapshot file is untrusted even when its checksums are right: every
// field of the monitor state and the saved CPU state must be one presnap
// itself can produce, checked at restore before the VM runs. Each case
// forges one field of a real snapshot (the writer recomputes every
// checksum, as a malicious writer would) and expects a refusal that names it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "presnap/runtime/session.h"
#include "presnap/snapshot/cpu_features.h"
#include "presnap/snapshot/monitor_state.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/vmm/kvm.h"

#include <cstdio>
#include <cstring>
#include <functional>
#include <linux/kvm.h>
#include <string>

using namespace presnap;

namespace {

// One captured base snapshot of the forger guest, shared by the cases.
struct Base {
    std::unique_ptr<runtime::Session> session;
    snapshot::Capture capture;
};

Base& base() {
    static Base b = [] {
        runtime::ProgramSpec spec;
        spec.program = PRESNAP_FORGER;
        spec.mem_size = 64ull << 20;
        auto s = snapshot::boot_for_capture(spec, {});
        REQUIRE(s.has_value());
        runtime::MemoryRequestSource none("");
        runtime::NullResponseSink out;
        auto o = (*s)->run(none, out, runtime::AtEof::kStop);
        REQUIRE(o.has_value());
        REQUIRE(o->kind == runtime::RunOutcome::Kind::kWaiting);
        auto c = snapshot::capture(**s);
        REQUIRE(c.has_value());
        return Base{std::move(*s), std::move(*c)};
    }();
    return b;
}

// Restores the base with `forge` applied; returns the error text, or "" if
// the restore was accepted.
std::string restore_forged(const std::function<void(snapshot::SnapshotImage&)>& forge) {
    snapshot::SnapshotImage img = base().capture.image;
    forge(img);
    auto f = snapshot::to_memory(img);
    if (!f)
        return f.error().describe();
    const snapshot::SnapshotFile* chain[] = {&*f};
    auto s = snapshot::restore(chain, {});
    if (!s)
        return s.error().describe();
    // Accepted: it must then serve correctly.
    runtime::MemoryRequestSource in("hello\n");
    runtime::MemoryResponseSink out;
    auto o = (*s)->run(in, out, runtime::AtEof::kDeliver);
    REQUIRE(o.has_value());
    CHECK(out.all_stdout() == "ok hello\n");
    return "";
}

void forge_state(snapshot::SnapshotImage& img,
                 const std::function<void(snapshot::MonitorState&)>& f) {
    auto st = snapshot::decode_monitor_state(img.monitor_state);
    REQUIRE(st.has_value());
    f(*st);
    img.monitor_state = snapshot::encode_monitor_state(*st);
}

template <typename T>
void forge_blob(std::vector<uint8_t>& blob, const std::function<void(T&)>& f) {
    REQUIRE(blob.size() >= sizeof(T));
    T v;
    std::memcpy(&v, blob.data(), sizeof v);
    f(v);
    std::memcpy(blob.data(), &v, sizeof v);
}

#define EXPECT_REFUSED(forge, text)                                                                \
    do {                                                                                           \
        std::string err = restore_forged(forge);                                                   \
        INFO("error: ", err);                                                                      \
        CHECK(err.find(text) != std::string::npos);                                                \
    } while (0)

} // namespace

TEST_CASE("the unforged snapshot restores and serves (the control)") {
    CHECK(restore_forged([](snapshot::SnapshotImage&) {}) == "");
}

TEST_CASE("monitor state fields near 2^64 or outside memory are refused by name") {
    using S = snapshot::MonitorState;
    auto state = [](std::function<void(S&)> f) {
        return [f](snapshot::SnapshotImage& img) { forge_state(img, f); };
    };
    EXPECT_REFUSED(state([](S& s) { s.rootfs_size = ~0ull - 4095; }), "rootfs_size");
    EXPECT_REFUSED(state([](S& s) { s.brk_start = ~0ull - 4095; }), "brk_start");
    EXPECT_REFUSED(state([](S& s) { s.out_len_addr = 0xdeadbeef000ull; }), "out_len_addr");
    EXPECT_REFUSED(state([](S& s) { s.pending_input_gpa = s.mem_size + 4096; }),
                   "pending_input_gpa");
    EXPECT_REFUSED(state([](S& s) { s.requests_served = ~0ull; }), "counters are out of range");
    EXPECT_REFUSED(state([](S& s) { s.flags |= 0x80; }), "monitor state flags 0x80");
    EXPECT_REFUSED(state([](S& s) { s.stack_top += 4096; }), "inconsistent memory layout");
}

TEST_CASE("saved CPU state presnap never produces is refused by name") {
    auto regs = [](std::function<void(kvm_regs&)> f) {
        return [f](snapshot::SnapshotImage& img) { forge_blob<kvm_regs>(img.vcpu.regs, f); };
    };
    auto sregs = [](std::function<void(kvm_sregs&)> f) {
        return [f](snapshot::SnapshotImage& img) { forge_blob<kvm_sregs>(img.vcpu.sregs, f); };
    };
    EXPECT_REFUSED(regs([](kvm_regs& r) { r.rflags |= 0x3000; }), "RFLAGS");      // IOPL 3
    EXPECT_REFUSED(regs([](kvm_regs& r) { r.rflags |= 0x200; }), "RFLAGS");       // IF
    EXPECT_REFUSED(sregs([](kvm_sregs& s) { s.cs.dpl = 0; }), "CS selector");     // DPL 0 at CPL3
    EXPECT_REFUSED(sregs([](kvm_sregs& s) { s.cr3 += 4096; }), "saved CR3");      // other tables
    EXPECT_REFUSED(sregs([](kvm_sregs& s) { s.idt.base = 0x5000; }), "IDT base"); // own IDT
    EXPECT_REFUSED(sregs([](kvm_sregs& s) { s.cr4 &= ~(1ull << 5); }), "saved CR4");
    EXPECT_REFUSED(
        [](snapshot::SnapshotImage& img) {
            uint32_t mxcsr;
            std::memcpy(&mxcsr, img.vcpu.xsave.data() + 24, 4);
            mxcsr |= 0x10000;
            std::memcpy(img.vcpu.xsave.data() + 24, &mxcsr, 4);
        },
        "MXCSR");
    EXPECT_REFUSED(
        [](snapshot::SnapshotImage& img) {
            img.vcpu.msrs.push_back({0x10, 1});
        },
        "MSR 0x10, which presnap never saves");
    EXPECT_REFUSED(
        [](snapshot::SnapshotImage& img) {
            for (auto& m : img.vcpu.msrs)
                if (m.index == 0xc0000082) // LSTAR: the syscall entry
                    m.value += 16;
        },
        "MSR 0xc0000082");
}

TEST_CASE("a snapshot that needs a CPU feature this host lacks is refused at restore") {
    // Find a feature bit of a word the snapshot records that this host does
    // not have, and make the snapshot require it.
    snapshot::CpuFeatures host = snapshot::host_cpu_features();
    REQUIRE(!host.words.empty());
    snapshot::CpuidWord missing{};
    bool found = false;
    for (const auto& w : host.words)
        for (unsigned bit = 0; bit < 32 && !found; bit++)
            if (!(w.bits & (1u << bit))) {
                missing = w;
                missing.bits = 1u << bit;
                found = true;
            }
    REQUIRE(found);
    std::string err = restore_forged(
        [&](snapshot::SnapshotImage& img) { img.cpu_features.words.push_back(missing); });
    INFO("error: ", err);
    CHECK(err.find("this host lacks cpu features") != std::string::npos);
    // And XCR0 state this host cannot give (bit 62 is no real component).
    err = restore_forged([](snapshot::SnapshotImage& img) { img.cpu_features.xcr0 |= 1ull << 62; });
    INFO("error: ", err);
    CHECK(!err.empty());
}

int main(int argc, char** argv) {
    bool listing = false;
    for (int i = 1; i < argc; i++)
        listing |= std::string(argv[i]).rfind("--list", 0) == 0;
    if (auto s = vmm::kvm_available(); !s && !listing) {
        std::fprintf(stderr, "SKIP: %s\n", s.error().describe().c_str());
        return 77;
    }
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
