// The CPU features a snapshot relies on. Guest code at CPL3 sees the host's
// real CPUID and XCR0 (KVM_SET_CPUID2 does not hide them under PVM, and
// glibc picks its string functions by them at start-up), so a snapshot made on
// one CPU may execute instructions another CPU lacks. The monitor records
// host_cpu_features() in every snapshot; a restore calls check_cpu_features()
// against the current host and refuses with the names of what is missing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "presnap/error.h"
#include "presnap/snapshot/format.h"

namespace presnap::snapshot {

// One 32-bit CPUID output register: the feature bits it must have set.
struct CpuidWord {
    std::uint32_t leaf = 0;
    std::uint32_t subleaf = 0;
    CpuidReg reg = CpuidReg::kEax;
    std::uint32_t bits = 0;
    friend bool operator==(const CpuidWord&, const CpuidWord&) = default;
};

struct CpuFeatures {
    std::string vendor; // "AuthenticAMD", "GenuineIntel" ...; informational
    std::uint64_t xcr0 = 0;
    std::vector<CpuidWord> words;
    friend bool operator==(const CpuFeatures&, const CpuFeatures&) = default;
};

// Reads CPUID and XCR0 on this host: the feature words of leaves 1, 7.0, 7.1,
// 0xd.1 and 0x80000001, without the bits that describe the operating system
// or the hypervisor rather than what user code may execute (hypervisor,
// OSXSAVE, OSPKE, APIC, x2APIC, VMX ...).
CpuFeatures host_cpu_features();

// kUnsupported when `host` lacks a feature `required` relies on. The message
// names every missing feature: "this host lacks cpu features the snapshot
// relies on: avx512f avx512bw (xcr0 ...)".
Status check_cpu_features(const CpuFeatures& required, const CpuFeatures& host);

// "avx2", "xcr0.opmask", or "cpuid.0x7.0.ebx[27]" for bits without a name.
std::string cpu_feature_name(std::uint32_t leaf, std::uint32_t subleaf, CpuidReg reg, unsigned bit);
std::string xcr0_feature_name(unsigned bit);

// Names of every feature set in `features` (xcr0 components last).
std::vector<std::string> cpu_feature_names(const CpuFeatures& features);

} // namespace presnap::snapshot
