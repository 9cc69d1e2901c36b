// The checks a snapshot's monitor state must pass before a Session resumes
// from it (session.h). Pure: no KVM, so that it can be fuzzed
// (tests/fuzz/state_checks_fuzz.cpp).
#include "presnap/runtime/session.h"

namespace presnap::runtime {

Result<vmm::GuestLayout> validate_monitor_state(const snapshot::MonitorState& st,
                                                const psn_kernel_header& kh) {
    // The layout must be the one compute_layout() gives: nothing else is trusted.
    if (st.brk_start < PSN_USER_BASE || st.brk_start % vmm::kPageSize ||
        st.brk_start >= st.mem_size)
        return make_error(Errc::kFormat, "monitor state brk_start 0x{:x} is outside guest memory",
                          st.brk_start);
    if (st.rootfs_size >= st.mem_size)
        return make_error(Errc::kFormat, "monitor state rootfs_size {} is not below memory size {}",
                          st.rootfs_size, st.mem_size);
    auto layout = vmm::compute_layout(st.mem_size, st.rootfs_size, st.brk_start);
    if (!layout)
        return make_error(Errc::kFormat, "monitor state has an impossible layout: {}",
                          layout.error().message);
    if (layout->page_tables != st.page_tables || layout->page_table_pages != st.page_table_pages ||
        layout->in_buf != st.in_buf || layout->out_buf != st.out_buf ||
        layout->stack_top != st.stack_top || layout->stack_low != st.stack_low ||
        layout->mmap_top != st.mmap_top || layout->rootfs != st.rootfs)
        return make_error(Errc::kFormat, "monitor state has an inconsistent memory layout");
    // The guest kernel in memory says where its stdout counter is; the
    // state must agree with it and point inside it.
    if (kh.magic != PSN_KERNEL_MAGIC || kh.abi_version != PSN_ABI_VERSION ||
        kh.image_end > PSN_KERNEL_LIMIT || kh.image_end <= PSN_KERNEL_BASE)
        return make_error(Errc::kUnsupported,
                          "snapshot's guest kernel has ABI version {} (this presnap has {})",
                          kh.abi_version, PSN_ABI_VERSION);
    auto in_kernel = [&](uint64_t addr, uint64_t size) {
        return addr >= PSN_KERNEL_BASE && addr <= kh.image_end && size <= kh.image_end - addr;
    };
    if (st.out_len_addr != kh.out_len_addr || !in_kernel(st.out_len_addr, 8))
        return make_error(Errc::kFormat,
                          "monitor state out_len_addr 0x{:x} is not the guest kernel's (0x{:x})",
                          st.out_len_addr, kh.out_len_addr);
    if (!in_kernel(st.pending_input_gpa, sizeof(psn_hc_input)) || st.pending_input_gpa % 8)
        return make_error(Errc::kFormat,
                          "monitor state pending_input_gpa 0x{:x} is not inside the guest kernel",
                          st.pending_input_gpa);
    constexpr uint64_t kMaxCount = 1ull << 62;
    if (st.requests_served >= kMaxCount || st.restore_generation >= kMaxCount)
        return make_error(Errc::kFormat,
                          "monitor state counters are out of range ({} requests, generation {})",
                          st.requests_served, st.restore_generation);
    if (st.tsc_hz > 100'000'000'000ull)
        return make_error(Errc::kFormat, "monitor state tsc_hz {} is out of range", st.tsc_hz);
    return *layout;
}

} // namespace presnap::runtime
