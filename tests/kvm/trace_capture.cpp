// Tracing leaves no mark in a snapshot: a Session traced with every segment
// of a probability map that has an address serves requests (breakpoints hit
// and removed), is captured at a wait point (a full snapshot, then a diff
// after more traced requests), and then
//   - the live guest's code equals the executable's bytes, and what the
//     breakpoint handler wrote (fault record, exception stack) is zero again;
//   - restored from the captured chain, the code equals the executable's
//     bytes; the diff holds no page of code at all;
//   - the restored chain answers the remaining requests as the native run;
//   - with a virtual clock and a fixed seed, a traced and an untraced guest
//     that served the same requests have byte-identical memory (page-table
//     accessed and dirty bits included).
// Usage: trace_capture PROGRAM PMAP REQUESTS. Exit 77 without /dev/kvm.
#include "presnap/analysis/pmap.h"
#include "presnap/guest_abi.h"
#include "presnap/runtime/session.h"
#include "presnap/runtime/trace.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/vmm/elf_loader.h"
#include "presnap/vmm/kvm.h"

#include <cstdio>
#include <cstring>
#include <elf.h>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace presnap;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

[[noreturn]] void fail(const std::string& msg) {
    std::fprintf(stderr, "FAIL: %s\n", msg.c_str());
    std::exit(1);
}

template <typename T> T need(Result<T> r, const char* what) {
    if (!r)
        fail(std::string(what) + ": " + r.error().describe());
    return std::move(*r);
}

// Bytes of guest memory over the executable's code that differ from the file.
size_t code_mismatches(const vmm::GuestMemory& mem, const vmm::ElfImage& elf,
                       const std::string& file) {
    size_t bad = 0;
    for (const auto& seg : elf.segments) {
        if (!(seg.flags & PF_X))
            continue;
        auto span = need(mem.span(seg.vaddr, seg.file_size), "code span");
        for (uint64_t i = 0; i < seg.file_size; i++)
            if (span[i] != uint8_t(file[seg.file_offset + i]))
                bad++;
    }
    return bad;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 4)
        fail("usage: trace_capture PROGRAM PMAP REQUESTS");
    if (auto s = vmm::kvm_available(); !s) {
        std::fprintf(stderr, "SKIP: %s\n", s.error().describe().c_str());
        return 77;
    }
    std::string program = argv[1];
    std::string exe = read_file(program);
    auto elf = need(
        vmm::parse_elf({reinterpret_cast<const uint8_t*>(exe.data()), exe.size()}, PSN_PIE_BASE),
        "parse_elf");
    auto map = need(analysis::parse_pmap_text(read_file(argv[2]), argv[2]), "map");
    auto points = need(runtime::trace_points(map, elf, true), "trace_points");
    std::string native;
    {
        std::string cmd = "'" + program + "' < '" + argv[3] + "'";
        FILE* p = popen(cmd.c_str(), "r");
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0)
            native.append(buf, n);
        pclose(p);
    }
    std::vector<std::string> requests, answers;
    {
        std::stringstream rs(read_file(argv[3])), ns(native);
        std::string l;
        while (std::getline(rs, l))
            requests.push_back(l);
        while (std::getline(ns, l))
            answers.push_back(l + "\n");
    }
    if (requests.size() < 6 || answers.size() != requests.size())
        fail("need at least 6 requests, one response line each natively");

    runtime::ProgramSpec spec;
    spec.program = program;
    runtime::SessionOptions opt;
    opt.trace.points = points;
    auto session = need(snapshot::boot_for_capture(spec, opt), "boot");
    size_t third = requests.size() / 3;
    std::vector<std::string> first(requests.begin(), requests.begin() + third),
        second(requests.begin() + third, requests.begin() + 2 * third),
        rest(requests.begin() + 2 * third, requests.end());

    size_t hits = 0;
    auto serve = [&](const std::vector<std::string>& reqs, size_t offset) {
        auto src = runtime::MemoryRequestSource::of_lines(reqs);
        runtime::MemoryResponseSink out;
        auto o = need(session->run(src, out, runtime::AtEof::kStop), "run");
        if (o.kind != runtime::RunOutcome::Kind::kWaiting)
            fail("traced run ended: " + o.message);
        for (size_t i = 0; i < reqs.size(); i++) {
            if (out.responses()[i] != answers[offset + i])
                fail("traced response to '" + reqs[i] + "' differs from native");
            if (!out.requests()[i].traced)
                fail("request '" + reqs[i] + "' was not traced");
            hits += out.requests()[i].segments.size();
        }
        if (size_t bad = code_mismatches(session->memory(), elf, exe))
            fail(std::to_string(bad) + " bytes of code differ from the executable at the wait "
                                       "point");
        uint8_t residue[64];
        if (auto s = session->memory().read(PSN_EXC_STACK_TOP - sizeof residue, residue); !s)
            fail("read exception stack: " + s.error().describe());
        for (uint8_t b : residue)
            if (b)
                fail("the breakpoint handler's frame is left on the exception stack");
    };
    serve(first, 0);
    auto base = need(snapshot::capture_to_memory(*session), "capture base");
    serve(second, third);
    auto diff = need(snapshot::capture_to_memory(*session), "capture diff");
    if (hits == 0)
        fail("no trace point was hit: the test would prove nothing");

    // The diff holds no page of the executable's code: tracing wrote there
    // and put everything back, and the guest never writes its code.
    for (const auto& run : diff.page_runs())
        for (const auto& seg : elf.segments)
            if ((seg.flags & PF_X) && run.first_page * vmm::kPageSize < seg.vaddr + seg.file_size &&
                (run.first_page + run.page_count) * vmm::kPageSize > seg.vaddr)
                fail("the diff snapshot holds code pages");

    std::vector<const snapshot::SnapshotFile*> chain{&base, &diff};
    for (size_t links = 1; links <= 2; links++) {
        snapshot::RestoreOptions ro;
        auto restored = need(snapshot::restore({chain.data(), links}, ro), "restore");
        if (size_t bad = code_mismatches(restored->memory(), elf, exe))
            fail(std::to_string(bad) + " bytes of restored code differ from the executable");
        if (links == 2) {
            auto src = runtime::MemoryRequestSource::of_lines(rest);
            runtime::MemoryResponseSink out;
            auto o = need(restored->run(src, out, runtime::AtEof::kStop), "run restored");
            if (o.kind != runtime::RunOutcome::Kind::kWaiting)
                fail("restored run ended: " + o.message);
            for (size_t i = 0; i < rest.size(); i++)
                if (out.responses()[i] != answers[2 * third + i])
                    fail("restored response to '" + rest[i] + "' differs from native");
        }
    }
    std::printf("ok: %zu trace points, %zu hits in %zu traced requests; live code, base and "
                "base+diff code equal the executable; the diff has no code page; %zu restored "
                "responses equal native\n",
                points.size(), hits, 2 * third, rest.size());

    // No mark at all: with a virtual clock and a fixed seed, a traced and an
    // untraced guest that served the same requests have the same memory,
    // byte for byte, at the wait point.
    std::vector<std::unique_ptr<runtime::Session>> twins;
    for (bool traced : {false, true}) {
        runtime::ProgramSpec det = spec;
        det.deterministic = true;
        det.seed = 7;
        runtime::SessionOptions o;
        if (traced)
            o.trace.points = points;
        twins.push_back(need(runtime::Session::boot(det, o), "boot twin"));
        auto src = runtime::MemoryRequestSource::of_lines(first);
        runtime::MemoryResponseSink out;
        auto r = need(twins.back()->run(src, out, runtime::AtEof::kStop), "run twin");
        if (r.kind != runtime::RunOutcome::Kind::kWaiting)
            fail("twin run ended: " + r.message);
        if (traced && out.requests().back().segments.empty())
            fail("the traced twin hit no trace point");
    }
    const auto& a = twins[0]->memory();
    const auto& b = twins[1]->memory();
    if (a.size() != b.size())
        fail("twins differ in memory size");
    size_t differing = 0;
    uint64_t first_diff = 0;
    for (uint64_t off = 0; off < a.size(); off += vmm::kPageSize)
        if (std::memcmp(a.host_base() + off, b.host_base() + off, vmm::kPageSize) != 0 &&
            differing++ == 0)
            first_diff = off;
    if (differing) // what differs in the first page, to say what left the mark
        for (uint64_t i = 0, shown = 0; i < vmm::kPageSize && shown < 16; i++)
            if (a.host_base()[first_diff + i] != b.host_base()[first_diff + i] && ++shown)
                std::fprintf(stderr, "0x%llx: untraced %02x, traced %02x\n",
                             (unsigned long long)(first_diff + i), a.host_base()[first_diff + i],
                             b.host_base()[first_diff + i]);
    if (differing)
        fail(std::to_string(differing) + " pages differ between the traced and the untraced " +
             "guest (first at 0x" + fmt::format("{:x}", first_diff) + ")");
    std::printf("ok: traced and untraced deterministic guests have identical memory (%llu MiB) "
                "after %zu requests\n",
                (unsigned long long)(a.size() >> 20), first.size());
    return 0;
}
