#include "presnap/snapshot/cpu_features.h"

#include <array>
#include <cstring>

#include <cpuid.h>
#include <fmt/format.h>

namespace presnap::snapshot {
namespace {

struct FeatureName {
    std::uint32_t leaf;
    std::uint32_t subleaf;
    CpuidReg reg;
    unsigned bit;
    const char* name;
};

constexpr auto kEax = CpuidReg::kEax;
constexpr auto kEbx = CpuidReg::kEbx;
constexpr auto kEcx = CpuidReg::kEcx;
constexpr auto kEdx = CpuidReg::kEdx;

// Names as Linux prints them in /proc/cpuinfo, for the bits user code uses.
constexpr FeatureName kFeatureNames[] = {
    {1, 0, kEcx, 0, "sse3"},
    {1, 0, kEcx, 1, "pclmulqdq"},
    {1, 0, kEcx, 9, "ssse3"},
    {1, 0, kEcx, 12, "fma"},
    {1, 0, kEcx, 13, "cx16"},
    {1, 0, kEcx, 19, "sse4_1"},
    {1, 0, kEcx, 20, "sse4_2"},
    {1, 0, kEcx, 22, "movbe"},
    {1, 0, kEcx, 23, "popcnt"},
    {1, 0, kEcx, 25, "aes"},
    {1, 0, kEcx, 26, "xsave"},
    {1, 0, kEcx, 28, "avx"},
    {1, 0, kEcx, 29, "f16c"},
    {1, 0, kEcx, 30, "rdrand"},
    {1, 0, kEdx, 0, "fpu"},
    {1, 0, kEdx, 4, "tsc"},
    {1, 0, kEdx, 5, "msr"},
    {1, 0, kEdx, 6, "pae"},
    {1, 0, kEdx, 8, "cx8"},
    {1, 0, kEdx, 11, "sep"},
    {1, 0, kEdx, 15, "cmov"},
    {1, 0, kEdx, 16, "pat"},
    {1, 0, kEdx, 19, "clflush"},
    {1, 0, kEdx, 23, "mmx"},
    {1, 0, kEdx, 24, "fxsr"},
    {1, 0, kEdx, 25, "sse"},
    {1, 0, kEdx, 26, "sse2"},
    {7, 0, kEbx, 0, "fsgsbase"},
    {7, 0, kEbx, 3, "bmi1"},
    {7, 0, kEbx, 4, "hle"},
    {7, 0, kEbx, 5, "avx2"},
    {7, 0, kEbx, 8, "bmi2"},
    {7, 0, kEbx, 9, "erms"},
    {7, 0, kEbx, 11, "rtm"},
    {7, 0, kEbx, 16, "avx512f"},
    {7, 0, kEbx, 17, "avx512dq"},
    {7, 0, kEbx, 18, "rdseed"},
    {7, 0, kEbx, 19, "adx"},
    {7, 0, kEbx, 21, "avx512ifma"},
    {7, 0, kEbx, 23, "clflushopt"},
    {7, 0, kEbx, 24, "clwb"},
    {7, 0, kEbx, 26, "avx512pf"},
    {7, 0, kEbx, 27, "avx512er"},
    {7, 0, kEbx, 28, "avx512cd"},
    {7, 0, kEbx, 29, "sha_ni"},
    {7, 0, kEbx, 30, "avx512bw"},
    {7, 0, kEbx, 31, "avx512vl"},
    {7, 0, kEcx, 1, "avx512vbmi"},
    {7, 0, kEcx, 3, "pku"},
    {7, 0, kEcx, 5, "waitpkg"},
    {7, 0, kEcx, 6, "avx512_vbmi2"},
    {7, 0, kEcx, 8, "gfni"},
    {7, 0, kEcx, 9, "vaes"},
    {7, 0, kEcx, 10, "vpclmulqdq"},
    {7, 0, kEcx, 11, "avx512_vnni"},
    {7, 0, kEcx, 12, "avx512_bitalg"},
    {7, 0, kEcx, 14, "avx512_vpopcntdq"},
    {7, 0, kEcx, 22, "rdpid"},
    {7, 0, kEcx, 27, "movdiri"},
    {7, 0, kEcx, 28, "movdir64b"},
    {7, 0, kEdx, 4, "fsrm"},
    {7, 0, kEdx, 8, "avx512_vp2intersect"},
    {7, 0, kEdx, 14, "serialize"},
    {7, 0, kEdx, 22, "amx_bf16"},
    {7, 0, kEdx, 23, "avx512_fp16"},
    {7, 0, kEdx, 24, "amx_tile"},
    {7, 0, kEdx, 25, "amx_int8"},
    {7, 1, kEax, 4, "avx_vnni"},
    {7, 1, kEax, 5, "avx512_bf16"},
    {0xd, 1, kEax, 0, "xsaveopt"},
    {0xd, 1, kEax, 1, "xsavec"},
    {0xd, 1, kEax, 2, "xgetbv1"},
    {0x80000001, 0, kEcx, 0, "lahf_lm"},
    {0x80000001, 0, kEcx, 5, "abm"},
    {0x80000001, 0, kEcx, 6, "sse4a"},
    {0x80000001, 0, kEcx, 7, "misalignsse"},
    {0x80000001, 0, kEcx, 8, "3dnowprefetch"},
    {0x80000001, 0, kEcx, 11, "xop"},
    {0x80000001, 0, kEcx, 16, "fma4"},
    {0x80000001, 0, kEcx, 21, "tbm"},
    {0x80000001, 0, kEdx, 11, "syscall"},
    {0x80000001, 0, kEdx, 20, "nx"},
    {0x80000001, 0, kEdx, 22, "mmxext"},
    {0x80000001, 0, kEdx, 25, "fxsr_opt"},
    {0x80000001, 0, kEdx, 26, "pdpe1gb"},
    {0x80000001, 0, kEdx, 27, "rdtscp"},
    {0x80000001, 0, kEdx, 29, "lm"},
};

constexpr const char* kXcr0Names[] = {
    "x87",      "sse", "avx",  "bndregs", "bndcsr",   "opmask", "zmm_hi256",
    "hi16_zmm", "pt",  "pkru", "pasid",   "cet_u",    "cet_s",  "hdc",
    "uintr",    "lbr", "hwp",  "tilecfg", "tiledata",
};

// The words recorded, and the bits in each that describe the operating
// system, the hypervisor or CPL0-only facilities rather than what user code
// may execute: they differ between hosts that run the same user code.
struct RecordedWord {
    std::uint32_t leaf;
    std::uint32_t subleaf;
    CpuidReg reg;
    std::uint32_t ignored;
};

constexpr std::uint32_t bit(unsigned b) {
    return std::uint32_t{1} << b;
}

constexpr RecordedWord kRecordedWords[] = {
    // monitor vmx smx est tm2 xtpr pdcm pcid dca x2apic tsc_deadline osxsave
    // hypervisor dtes64 ds_cpl
    {1, 0, kEcx,
     bit(2) | bit(3) | bit(4) | bit(5) | bit(6) | bit(7) | bit(8) | bit(14) | bit(15) | bit(17) |
         bit(18) | bit(21) | bit(24) | bit(27) | bit(31)},
    // vme de pse mce apic mtrr pge mca psn ds acpi ss htt tm pbe
    {1, 0, kEdx,
     bit(1) | bit(2) | bit(3) | bit(7) | bit(9) | bit(12) | bit(13) | bit(14) | bit(17) | bit(18) |
         bit(21) | bit(22) | bit(27) | bit(28) | bit(29) | bit(31)},
    // tsc_adjust sgx smep invpcid smap and friends
    {7, 0, kEbx, bit(1) | bit(2) | bit(7) | bit(10) | bit(12) | bit(13) | bit(15) | bit(20)},
    // umip ospke la57 sgx_lc
    {7, 0, kEcx, bit(2) | bit(4) | bit(16) | bit(30)},
    // md_clear hybrid pconfig ibt speculation controls
    {7, 0, kEdx,
     bit(10) | bit(15) | bit(18) | bit(20) | bit(26) | bit(27) | bit(28) | bit(29) | bit(30) |
         bit(31)},
    {7, 1, kEax, 0},
    // xsaves (CPL0 only)
    {0xd, 1, kEax, bit(3)},
    // cmp_legacy svm extapic osvw ibs skinit wdt topoext perfctr_*
    {0x80000001, 0, kEcx,
     bit(1) | bit(2) | bit(3) | bit(9) | bit(10) | bit(12) | bit(13) | bit(22) | bit(23) | bit(24) |
         bit(28)},
    {0x80000001, 0, kEdx, 0},
};

const char* reg_name(CpuidReg reg) {
    switch (reg) {
    case CpuidReg::kEax:
        return "eax";
    case CpuidReg::kEbx:
        return "ebx";
    case CpuidReg::kEcx:
        return "ecx";
    case CpuidReg::kEdx:
        return "edx";
    }
    return "?";
}

std::uint64_t read_xcr0() {
    std::uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (std::uint64_t{edx} << 32) | eax;
}

} // namespace

std::string cpu_feature_name(std::uint32_t leaf, std::uint32_t subleaf, CpuidReg reg, unsigned b) {
    for (const auto& f : kFeatureNames)
        if (f.leaf == leaf && f.subleaf == subleaf && f.reg == reg && f.bit == b)
            return f.name;
    return fmt::format("cpuid.{:#x}.{}.{}[{}]", leaf, subleaf, reg_name(reg), b);
}

std::string xcr0_feature_name(unsigned b) {
    if (b < std::size(kXcr0Names))
        return fmt::format("xcr0.{}", kXcr0Names[b]);
    return fmt::format("xcr0[{}]", b);
}

// CPUID may trap to a hypervisor (these hosts are VMs themselves) and the
// answer does not change while the process runs: ask once.
static CpuFeatures read_host_cpu_features();

CpuFeatures host_cpu_features() {
    static const CpuFeatures features = read_host_cpu_features();
    return features;
}

static CpuFeatures read_host_cpu_features() {
    CpuFeatures features;
    unsigned a = 0, b = 0, c = 0, d = 0;
    __cpuid(0, a, b, c, d);
    const unsigned max_leaf = a;
    char vendor[12];
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &c, 4);
    features.vendor.assign(vendor, 12);
    __cpuid(0x80000000, a, b, c, d);
    const unsigned max_ext_leaf = a;

    bool osxsave = false;
    for (const auto& w : kRecordedWords) {
        const unsigned max = w.leaf >= 0x80000000 ? max_ext_leaf : max_leaf;
        std::uint32_t regs[4] = {0, 0, 0, 0};
        if (w.leaf <= max)
            __cpuid_count(w.leaf, w.subleaf, regs[0], regs[1], regs[2], regs[3]);
        const std::uint32_t value = regs[static_cast<unsigned>(w.reg)];
        if (w.leaf == 1 && w.reg == CpuidReg::kEcx)
            osxsave = value & bit(27);
        features.words.push_back({w.leaf, w.subleaf, w.reg, value & ~w.ignored});
    }
    features.xcr0 = osxsave ? read_xcr0() : 0;
    return features;
}

Status check_cpu_features(const CpuFeatures& required, const CpuFeatures& host) {
    std::vector<std::string> missing;
    for (const auto& need : required.words) {
        std::uint32_t have = 0;
        for (const auto& h : host.words)
            if (h.leaf == need.leaf && h.subleaf == need.subleaf && h.reg == need.reg)
                have |= h.bits;
        const std::uint32_t lacking = need.bits & ~have;
        for (unsigned b = 0; b < 32; ++b)
            if (lacking & bit(b))
                missing.push_back(cpu_feature_name(need.leaf, need.subleaf, need.reg, b));
    }
    const std::uint64_t lacking_xcr0 = required.xcr0 & ~host.xcr0;
    for (unsigned b = 0; b < 64; ++b)
        if (lacking_xcr0 & (std::uint64_t{1} << b))
            missing.push_back(xcr0_feature_name(b));
    if (missing.empty())
        return {};
    return make_error(Errc::kUnsupported,
                      "this host lacks cpu features the snapshot relies on: {} (snapshot made on "
                      "{}, xcr0 {:#x}; this host is {}, xcr0 {:#x})",
                      fmt::join(missing, " "), required.vendor.empty() ? "?" : required.vendor,
                      required.xcr0, host.vendor.empty() ? "?" : host.vendor, host.xcr0);
}

std::vector<std::string> cpu_feature_names(const CpuFeatures& features) {
    std::vector<std::string> names;
    for (const auto& w : features.words)
        for (unsigned b = 0; b < 32; ++b)
            if (w.bits & bit(b))
                names.push_back(cpu_feature_name(w.leaf, w.subleaf, w.reg, b));
    for (unsigned b = 0; b < 64; ++b)
        if (features.xcr0 & (std::uint64_t{1} << b))
            names.push_back(xcr0_feature_name(b));
    return names;
}

} // namespace presnap::snapshot
