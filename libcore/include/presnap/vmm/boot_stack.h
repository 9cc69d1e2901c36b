// The initial process stack of a Linux program: argc, argv, envp, auxv and
// the strings they point to, laid out exactly as the Linux kernel does for
// x86-64 (System V ABI, section 3.4.1). Built by the host and copied into
// guest memory; pure data, so it is unit tested without a VM.
#pragma once

#include "presnap/error.h"

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace presnap::vmm {

struct StackSpec {
    uint64_t top = 0; // highest address + 1 (16-byte aligned)
    std::vector<std::string> argv;
    std::vector<std::string> envp;
    std::string execfn;                              // AT_EXECFN string
    std::array<uint8_t, 16> at_random{};             // AT_RANDOM bytes
    std::vector<std::pair<uint64_t, uint64_t>> auxv; // without AT_RANDOM/AT_EXECFN/AT_NULL
};

struct StackImage {
    uint64_t rsp = 0;           // initial %rsp: points at argc, 16-byte aligned
    std::vector<uint8_t> bytes; // contents of [rsp, top)
    uint64_t execfn_addr = 0;   // guest address of the AT_EXECFN string
};

inline constexpr uint64_t kMaxStackImage = 128 * 1024; // argv + envp + auxv limit

Result<StackImage> build_stack(const StackSpec& spec);

} // namespace presnap::vmm
