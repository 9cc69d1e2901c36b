// The read-only file tree given with --rootfs, packed into one image that is
// copied into guest memory (so it is part of the VM and of its snapshots; a
// restore needs no host files). Layout: struct psn_fs_header in guest_abi.h.
//
// The tree may be writable by someone else while it is packed, so every path
// is resolved beneath the tree's directory descriptor, one component at a
// time with O_NOFOLLOW, and every check is made on the opened descriptor
// (never "check a path string, then open it"). Symbolic links are followed
// only when they stay inside the tree (relative, or absolute naming a path
// inside it); a link that leads outside, a directory loop, and special files
// (devices, FIFOs, sockets) are refused. A file reached by several paths is
// stored once. The limits below bound the host memory a tree can make the
// packer use, whatever its shape.
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace presnap::vmm {

// The whole image: header, entries, path names and file contents.
inline constexpr uint64_t kMaxRootfsBytes = 1ull << 30;
// Files and directories, the root included.
inline constexpr uint64_t kMaxRootfsEntries = 100000;
// Components in a path ("/a/b" has 2).
inline constexpr uint64_t kMaxRootfsDepth = 64;
// Bytes in a path: the guest kernel looks up paths of at most 1023 bytes
// (PATH_MAX_ in guest/kernel.c), so a longer entry could never be opened.
inline constexpr uint64_t kMaxRootfsPathBytes = 1023;
// Symbolic links followed while resolving one entry (Linux's MAXSYMLINKS).
inline constexpr int kMaxRootfsLinkHops = 40;

Result<std::vector<uint8_t>> build_rootfs_image(const std::string& dir);

} // namespace presnap::vmm
