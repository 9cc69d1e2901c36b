// The read-only file tree given with --rootfs, packed into one image that is
// copied into guest memory (so it is part of the VM and of its snapshots; a
// restore needs no host files). Layout: struct psn_fs_header in guest_abi.h.
// Symbolic links are followed only when they stay inside the tree; special
// files (devices, FIFOs, sockets) are refused.
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace presnap::vmm {

inline constexpr uint64_t kMaxRootfsBytes = 1ull << 30;
inline constexpr uint64_t kMaxRootfsEntries = 100000;

Result<std::vector<uint8_t>> build_rootfs_image(const std::string& dir);

} // namespace presnap::vmm
