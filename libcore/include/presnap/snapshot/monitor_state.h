// The monitor's own state at a wait point: the MONITOR_STATE section of a
// snapshot file (docs/formats/snapshot.md, "MONITOR_STATE, version 1").
//
// It says where the monitor put things in guest memory and where the vCPU
// waits. A Session produces it at capture; restore checks every field
// against what presnap itself can produce before the VM runs (a file is
// untrusted input, even with correct checksums). The merge layer reads it
// to know which regions are dead at a wait point (I/O buffers, the stack
// below the saved stack pointer).
#pragma once

#include "presnap/error.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace presnap::snapshot {

// Fixed layout, little-endian. Changing anything here changes the snapshot
// format: bump kMonitorStateVersion and the spec (the pins below trip).
struct MonitorState {
    std::uint32_t version = 0;
    std::uint32_t flags = 0; // kMonitorDeterministic
    std::uint64_t mem_size = 0;
    std::uint64_t page_tables = 0;
    std::uint64_t page_table_pages = 0;
    std::uint64_t rootfs = 0;
    std::uint64_t rootfs_size = 0;
    std::uint64_t out_buf = 0;
    std::uint64_t in_buf = 0;
    std::uint64_t stack_top = 0;
    std::uint64_t stack_low = 0;
    std::uint64_t mmap_top = 0;
    std::uint64_t brk_start = 0;
    std::uint64_t out_len_addr = 0;      // the guest kernel's buffered-stdout counter
    std::uint64_t pending_input_gpa = 0; // the PSN_HC_INPUT struct the vCPU waits on
    std::uint64_t requests_served = 0;   // requests delivered before the snapshot
    std::uint64_t restore_generation = 0;
    std::uint64_t tsc_hz = 0;
};

inline constexpr std::uint32_t kMonitorStateVersion = 1;
inline constexpr std::uint32_t kMonitorDeterministic = 1;
inline constexpr std::uint32_t kMonitorKnownFlags = kMonitorDeterministic;
inline constexpr std::size_t kMonitorStateSize = 136;

#define PRESNAP_MONITOR_PIN(cond) static_assert(cond, "this changes the snapshot file format")
PRESNAP_MONITOR_PIN(sizeof(MonitorState) == kMonitorStateSize);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, flags) == 4);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, mem_size) == 8);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, brk_start) == 88);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, out_len_addr) == 96);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, pending_input_gpa) == 104);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, requests_served) == 112);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, restore_generation) == 120);
PRESNAP_MONITOR_PIN(offsetof(MonitorState, tsc_hz) == 128);
#undef PRESNAP_MONITOR_PIN

// The section bytes of `state`.
std::vector<std::uint8_t> encode_monitor_state(const MonitorState& state);
// Decodes a MONITOR_STATE section: its size, version and flags. The
// layout's consistency is the runtime's to check (it knows the layout rules).
Result<MonitorState> decode_monitor_state(std::span<const std::uint8_t> bytes);

} // namespace presnap::snapshot
