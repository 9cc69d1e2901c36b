// A snapshot relying on CPU features this host lacks is refused by name.
#include <algorithm>

#include <doctest/doctest.h>

#include "presnap/snapshot/cpu_features.h"
#include "sample.h"

using namespace presnap::snapshot;

TEST_CASE("this host reports the x86-64 baseline and passes a check against itself") {
    const CpuFeatures host = host_cpu_features();
    CHECK(host.vendor.size() == 12);
    CHECK((host.xcr0 & 0x3) == 0x3); // x87 and sse state are always enabled
    const auto names = cpu_feature_names(host);
    for (const char* need : {"sse2", "fxsr", "lm", "syscall"})
        CHECK_MESSAGE(std::find(names.begin(), names.end(), need) != names.end(), need);
    // Bits about the OS or hypervisor are not recorded.
    CHECK(std::find(names.begin(), names.end(), "cpuid.0x1.0.ecx[31]") == names.end());
    CHECK(check_cpu_features(host, host).has_value());
    CHECK(check_cpu_features(sample::baseline_features(), host).has_value());
}

TEST_CASE("a missing cpuid feature and a missing xcr0 component are named") {
    CpuFeatures host = sample::baseline_features();
    CpuFeatures needed = host;
    needed.words.push_back({7, 0, CpuidReg::kEbx, (1u << 16) | (1u << 30)}); // avx512f avx512bw
    needed.xcr0 |= 0xe0;                                                     // opmask zmm
    auto s = check_cpu_features(needed, host);
    REQUIRE_FALSE(s.has_value());
    CHECK(s.error().code == presnap::Errc::kUnsupported);
    CHECK(s.error().message ==
          "this host lacks cpu features the snapshot relies on: avx512f avx512bw xcr0.opmask "
          "xcr0.zmm_hi256 xcr0.hi16_zmm (snapshot made on AuthenticAMD, xcr0 0xe3; this host is "
          "AuthenticAMD, xcr0 0x3)");
}

TEST_CASE("bits without a name are still named by position") {
    CHECK(cpu_feature_name(7, 0, CpuidReg::kEbx, 2) == "cpuid.0x7.0.ebx[2]");
    CHECK(xcr0_feature_name(63) == "xcr0[63]");
    CHECK(cpu_feature_name(1, 0, CpuidReg::kEcx, 28) == "avx");
}
