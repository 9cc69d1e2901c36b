// Request-scoped bytes of a library snapshot (docs/formats/composites.md,
// DIR/sNNN.scoped): the bytes that a steady-state request of the snapshot's
// route rewrites. They are not warm state, so snapmerge resolves a conflict
// confined to them to the base's value (merge rule c).
//
// Learnt at library build time: restore the snapshot, serve one more
// request of its route, and compare every page the request dirtied with the
// snapshot's own content; repeated for each request given (the union).
#pragma once

#include "presnap/error.h"
#include "presnap/runtime/session.h"
#include "presnap/snapshot/reader.h"

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace presnap::library {

using ByteRanges = std::vector<std::pair<uint64_t, uint64_t>>; // [begin, end) guest addresses

struct Scoped {
    ByteRanges bytes;
    // General registers (kvm_regs slots: bit 0 rax ... bit 15 r15, 16 rip,
    // 17 rflags) whose value at the wait point a steady-state request changed.
    uint32_t registers = 0;
};
inline constexpr const char* kRegisterNames[18] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi",
                                                   "rsp", "rbp", "r8",  "r9",  "r10", "r11",
                                                   "r12", "r13", "r14", "r15", "rip", "rflags"};

Result<Scoped> learn_scoped(std::span<const snapshot::SnapshotFile* const> chain,
                            const std::vector<std::string>& requests,
                            const runtime::SessionOptions& session);

// "presnap-scoped 1", then "reg NAME" lines, then one "ADDRESS(hex) LENGTH"
// line per range; atomic.
Status write_scoped(const std::string& path, const Scoped& scoped);
// Reads it back; a missing file is an empty Scoped.
Result<Scoped> read_scoped_file(const std::string& path);

// learn_scoped() + write_scoped(): the build's hook.
Status learn_and_write_scoped(std::span<const snapshot::SnapshotFile* const> chain,
                              const std::vector<std::string>& requests,
                              const runtime::SessionOptions& session, const std::string& path);

// Merge rule (d): gives the warm-up of route `index` of `count` its own mmap
// window in `session` (restored, at its wait point, not yet run): the space
// between the program break's start and the mmap top is cut into count + 2
// equal parts (the top one for the base's own mappings, the bottom one for
// the brk heap) and the route's window is part index + 1 from the top. The
// guest kernel maps below the window's top first (psn_boot_info.mmap_window);
// the window is recorded in the snapshot's boot information page.
Status set_mmap_window(runtime::Session& session, size_t index, size_t count);

} // namespace presnap::library
