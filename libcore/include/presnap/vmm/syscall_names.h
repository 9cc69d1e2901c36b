// Names of x86-64 Linux system calls, for diagnostics.
#pragma once

#include <cstdint>
#include <string>

namespace presnap::vmm {

// Name of an x86-64 Linux syscall number ("syscall_N" when unknown).
std::string syscall_name(uint64_t nr);

} // namespace presnap::vmm
