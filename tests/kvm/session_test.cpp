// Sessions in one process: several guests at once on their own threads,
// each with its own deadline, and snapshots that never touch a file. The
// native run of each program is the oracle.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "presnap/runtime/session.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/vmm/kvm.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace presnap;
using Kind = runtime::RunOutcome::Kind;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The oracle: what PROGRAM prints natively for the requests in FILE.
std::string native(const std::string& program, const std::string& requests_file) {
    std::string cmd = "'" + program + "' < '" + requests_file + "'";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    pclose(p);
    REQUIRE_MESSAGE(!out.empty(), "the native run printed nothing: the test would prove nothing");
    return out;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream ss(text);
    std::string l;
    while (std::getline(ss, l))
        out.push_back(l);
    return out;
}

struct Served {
    runtime::RunOutcome outcome;
    std::string stdout_bytes;
    double seconds = 0;
};

// Boots PROGRAM and serves TEXT to the end, as `snaprun --cold` does.
Served serve_cold(const std::string& program, const std::string& text, double timeout_s) {
    runtime::ProgramSpec spec;
    spec.program = program;
    spec.mem_size = 128ull << 20;
    runtime::SessionOptions opt;
    opt.limits.timeout_s = timeout_s;
    auto t0 = std::chrono::steady_clock::now();
    auto s = runtime::Session::boot(spec, opt);
    REQUIRE_MESSAGE(s.has_value(), (s ? "" : s.error().describe()));
    runtime::MemoryRequestSource in(text);
    runtime::MemoryResponseSink out;
    auto o = (*s)->run(in, out, runtime::AtEof::kDeliver);
    REQUIRE_MESSAGE(o.has_value(), (o ? "" : o.error().describe()));
    Served r;
    r.outcome = *o;
    r.stdout_bytes = out.all_stdout();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

bool disposition_is_default(int sig) {
    struct sigaction sa {};
    sigaction(sig, nullptr, &sa);
    return sa.sa_handler == SIG_DFL;
}

} // namespace

TEST_CASE("sessions on four threads run different programs at once, each deadline on its own") {
    // Two example functions served to the end, and two guests that spin
    // forever in their first request with deadlines of 1 s and 3 s.
    Served numtheory, spellcheck, spin_short, spin_long;
    std::thread a([&] {
        numtheory = serve_cold(PRESNAP_NUMTHEORY, read_file(PRESNAP_NUMTHEORY_REQUESTS), 30);
    });
    std::thread b([&] {
        spellcheck = serve_cold(PRESNAP_SPELLCHECK, read_file(PRESNAP_SPELLCHECK_REQUESTS), 30);
    });
    std::thread c([&] { spin_short = serve_cold(PRESNAP_HOSTILE, "spin\n", 1.0); });
    std::thread d([&] { spin_long = serve_cold(PRESNAP_HOSTILE, "spin\n", 3.0); });
    a.join();
    b.join();
    c.join();
    d.join();

    CHECK(numtheory.outcome.kind == Kind::kExited);
    CHECK(numtheory.stdout_bytes == native(PRESNAP_NUMTHEORY, PRESNAP_NUMTHEORY_REQUESTS));
    CHECK(spellcheck.outcome.kind == Kind::kExited);
    CHECK(spellcheck.stdout_bytes == native(PRESNAP_SPELLCHECK, PRESNAP_SPELLCHECK_REQUESTS));

    REQUIRE(spin_short.outcome.kind == Kind::kTimeout);
    REQUIRE(spin_long.outcome.kind == Kind::kTimeout);
    CHECK(spin_short.outcome.message.find("request 1: timed out after 1 s") != std::string::npos);
    CHECK(spin_long.outcome.message.find("request 1: timed out after 3 s") != std::string::npos);
    CHECK(spin_short.stdout_bytes == "request spin\n");
    // Each deadline is its own: the 3 s guest outlived the 1 s one's deadline
    // and was stopped no earlier than its own.
    CHECK(spin_long.seconds >= 3.0);
    CHECK(spin_short.seconds < spin_long.seconds);

    // The library changed no signal disposition of the process.
    for (int sig : {SIGALRM, SIGPIPE, SIGRTMIN + 6})
        CHECK(disposition_is_default(sig));
}

TEST_CASE("a base and a diff captured in memory restore to the native responses, no file written") {
    char dir_template[] = "/tmp/presnap-session-test-XXXXXX";
    REQUIRE(mkdtemp(dir_template) != nullptr);
    REQUIRE(chdir(dir_template) == 0);

    auto requests = lines_of(read_file(PRESNAP_NUMTHEORY_REQUESTS));
    REQUIRE(requests.size() >= 3);
    std::string oracle = native(PRESNAP_NUMTHEORY, PRESNAP_NUMTHEORY_REQUESTS);

    runtime::ProgramSpec spec;
    spec.program = PRESNAP_NUMTHEORY;
    spec.mem_size = 128ull << 20;
    runtime::SessionOptions opt;
    auto booted = snapshot::boot_for_capture(spec, opt);
    REQUIRE_MESSAGE(booted.has_value(), (booted ? "" : booted.error().describe()));
    // Start-up, then the first request, then a wait point.
    runtime::MemoryResponseSink first;
    auto in1 = runtime::MemoryRequestSource::of_lines({requests[0]});
    auto o = (*booted)->run(in1, first, runtime::AtEof::kStop);
    REQUIRE(o.has_value());
    REQUIRE(o->kind == Kind::kWaiting);
    CHECK(o->requests == 1);
    auto base = snapshot::capture_to_memory(**booted);
    REQUIRE_MESSAGE(base.has_value(), (base ? "" : base.error().describe()));
    CHECK(base->kind() == snapshot::SnapshotKind::kFull);
    CHECK(base->path().rfind("/proc/self/fd/", 0) == 0); // a memfd, not a file

    // A diff over the in-memory base, after the second request.
    std::vector<const snapshot::SnapshotFile*> chain{&*base};
    snapshot::RestoreOptions ro;
    ro.session.track_dirty = true;
    auto warm = snapshot::restore(chain, ro);
    REQUIRE_MESSAGE(warm.has_value(), (warm ? "" : warm.error().describe()));
    runtime::MemoryResponseSink second;
    auto in2 = runtime::MemoryRequestSource::of_lines({requests[1]});
    o = (*warm)->run(in2, second, runtime::AtEof::kStop);
    REQUIRE(o.has_value());
    REQUIRE(o->kind == Kind::kWaiting);
    auto diff = snapshot::capture_to_memory(**warm);
    REQUIRE_MESSAGE(diff.has_value(), (diff ? "" : diff.error().describe()));
    CHECK(diff->kind() == snapshot::SnapshotKind::kDiff);
    CHECK(diff->verify_parent(*base).has_value());

    // Restore base + diff and serve the rest: with what the first two runs
    // printed, the bytes are the native run's.
    chain.push_back(&*diff);
    auto served = snapshot::restore(chain, snapshot::RestoreOptions{});
    REQUIRE_MESSAGE(served.has_value(), (served ? "" : served.error().describe()));
    std::vector<std::string> rest(requests.begin() + 2, requests.end());
    auto in3 = runtime::MemoryRequestSource::of_lines(rest);
    runtime::MemoryResponseSink third;
    o = (*served)->run(in3, third, runtime::AtEof::kDeliver);
    REQUIRE(o.has_value());
    CHECK(o->kind == Kind::kExited);
    CHECK(first.all_stdout() + second.all_stdout() + third.all_stdout() == oracle);
    CHECK((*served)->requests_served() == requests.size());

    // Nothing was written to the working directory (or anywhere we name).
    DIR* d = opendir(".");
    int entries = 0;
    while (dirent* e = readdir(d))
        entries += std::string(e->d_name) != "." && std::string(e->d_name) != "..";
    closedir(d);
    CHECK(entries == 0);
    REQUIRE(chdir("/") == 0);
    rmdir(dir_template);
}

TEST_CASE("a session keeps running after a wait point: requests in several runs equal one run") {
    auto text = read_file(PRESNAP_NUMTHEORY_REQUESTS);
    auto requests = lines_of(text);
    runtime::ProgramSpec spec;
    spec.program = PRESNAP_NUMTHEORY;
    spec.mem_size = 128ull << 20;
    auto s = runtime::Session::boot(spec, {});
    REQUIRE(s.has_value());
    runtime::MemoryResponseSink out;
    for (size_t i = 0; i < requests.size(); i++) {
        auto in = runtime::MemoryRequestSource::of_lines({requests[i]});
        auto o = (*s)->run(in, out, runtime::AtEof::kStop);
        REQUIRE(o.has_value());
        REQUIRE(o->kind == Kind::kWaiting);
        CHECK((*s)->at_wait_point());
    }
    runtime::MemoryRequestSource none("");
    auto o = (*s)->run(none, out, runtime::AtEof::kDeliver);
    REQUIRE(o.has_value());
    CHECK(o->kind == Kind::kExited);
    CHECK(out.responses().size() == requests.size());
    CHECK(out.all_stdout() == native(PRESNAP_NUMTHEORY, PRESNAP_NUMTHEORY_REQUESTS));
    CHECK((*s)->stats().max_request_exits == 1); // one exit per request at steady state
    // An ended session refuses to run again.
    CHECK(!(*s)->run(none, out, runtime::AtEof::kDeliver).has_value());
}

TEST_CASE("one pooled session restored again and again answers like a fresh one each time") {
    auto requests = lines_of(read_file(PRESNAP_NUMTHEORY_REQUESTS));
    std::string oracle = native(PRESNAP_NUMTHEORY, PRESNAP_NUMTHEORY_REQUESTS);
    runtime::ProgramSpec spec;
    spec.program = PRESNAP_NUMTHEORY;
    spec.mem_size = 128ull << 20;
    auto booted = snapshot::boot_for_capture(spec, {});
    REQUIRE(booted.has_value());
    runtime::MemoryResponseSink startup;
    runtime::MemoryRequestSource none("");
    auto o = (*booted)->run(none, startup, runtime::AtEof::kStop);
    REQUIRE(o.has_value());
    REQUIRE(o->kind == Kind::kWaiting);
    auto base = snapshot::capture_to_memory(**booted);
    REQUIRE(base.has_value());
    const snapshot::SnapshotFile* chain[] = {&*base};

    // A fresh restore, then the same Session reused: reset and restored.
    auto pooled = snapshot::restore(chain, {});
    REQUIRE(pooled.has_value());
    std::vector<double> fresh_us{(*pooled)->stats().restore_us}, pooled_us;
    for (int round = 0; round < 6; round++) {
        if (round > 0) {
            auto s = snapshot::restore_into(**pooled, chain, {});
            REQUIRE_MESSAGE(s.has_value(), (s ? "" : s.error().describe()));
            pooled_us.push_back((*pooled)->stats().restore_us);
        }
        // Half the rounds end at a wait point, half run the program to its
        // exit: a pooled VM is reused after either.
        auto in = runtime::MemoryRequestSource::of_lines(requests);
        runtime::MemoryResponseSink out;
        auto r =
            (*pooled)->run(in, out, round % 2 ? runtime::AtEof::kStop : runtime::AtEof::kDeliver);
        REQUIRE(r.has_value());
        CHECK(r->kind == (round % 2 ? Kind::kWaiting : Kind::kExited));
        CHECK(startup.all_stdout() + out.all_stdout() == oracle);
        CHECK((*pooled)->restore_generation() == 1);
    }
    // A pooled Session refuses a snapshot of another memory size.
    runtime::ProgramSpec small = spec;
    small.mem_size = 64ull << 20;
    auto other = snapshot::boot_for_capture(small, {});
    REQUIRE(other.has_value());
    REQUIRE((*other)->run(none, startup, runtime::AtEof::kStop).has_value());
    auto other_snap = snapshot::capture_to_memory(**other);
    REQUIRE(other_snap.has_value());
    const snapshot::SnapshotFile* other_chain[] = {&*other_snap};
    CHECK(!snapshot::restore_into(**pooled, other_chain, {}).has_value());

    for (int i = 0; i < 20; i++) {
        auto fresh = snapshot::restore(chain, {});
        REQUIRE(fresh.has_value());
        fresh_us.push_back((*fresh)->stats().restore_us);
        REQUIRE(snapshot::restore_into(**pooled, chain, {}).has_value());
        pooled_us.push_back((*pooled)->stats().restore_us);
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    MESSAGE("in-memory numtheory base: median restore ", median(fresh_us), " us into a new VM, ",
            median(pooled_us), " us into a pooled one");
}

int main(int argc, char** argv) {
    bool listing = false; // test discovery at build time needs no KVM
    for (int i = 1; i < argc; i++)
        listing |= std::string(argv[i]).rfind("--list", 0) == 0;
    if (auto s = vmm::kvm_available(); !s && !listing) {
        std::fprintf(stderr, "SKIP: %s\n", s.error().describe().c_str());
        return 77;
    }
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
