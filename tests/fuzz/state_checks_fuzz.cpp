// libFuzzer target for the checks a restored snapshot's monitor state and
// vCPU state must pass (runtime::validate_monitor_state,
// vmm::validate_vcpu_state). The input is applied as XOR over a state that
// presnap itself would produce for a layout the input also picks, so the
// fuzzer starts from valid states and explores the fields one by one. A
// state that passes must be one that stays inside guest memory; the checks
// may refuse anything, but never crash, and never accept a state that
// breaks what the run loop relies on.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <linux/kvm.h>

#include "presnap/guest_abi.h"
#include "presnap/runtime/session.h"
#include "presnap/snapshot/monitor_state.h"
#include "presnap/vmm/vcpu_state.h"
#include "presnap/vmm/x86_64.h"

using namespace presnap;

namespace {

template <typename T> void xor_into(T& v, const std::uint8_t*& data, std::size_t& size) {
    auto* p = reinterpret_cast<std::uint8_t*>(&v);
    for (std::size_t i = 0; i < sizeof v && size; i++, size--)
        p[i] ^= *data++;
}
void xor_bytes(std::vector<std::uint8_t>& v, const std::uint8_t*& data, std::size_t& size) {
    for (std::size_t i = 0; i < v.size() && size; i++, size--)
        v[i] ^= *data++;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // A layout: memory 16 MiB .. 1 GiB, an image end, a file tree size.
    std::uint8_t pick[3] = {};
    for (int i = 0; i < 3 && size; i++, size--)
        pick[i] = *data++;
    std::uint64_t mem = (16ull + 2ull * (pick[0] % 128)) << 20;
    std::uint64_t image_high = PSN_USER_BASE + (std::uint64_t(pick[1]) << 16);
    std::uint64_t rootfs = std::uint64_t(pick[2]) << 12;
    auto layout = vmm::compute_layout(mem, rootfs, image_high);
    if (!layout)
        return 0;
    psn_kernel_header kh{};
    kh.magic = PSN_KERNEL_MAGIC;
    kh.abi_version = PSN_ABI_VERSION;
    kh.syscall_entry = PSN_KERNEL_BASE + 0x100;
    kh.image_end = PSN_KERNEL_BASE + 0x1b000;
    kh.out_len_addr = PSN_KERNEL_BASE + 0x1a000;
    snapshot::MonitorState st;
    st.version = snapshot::kMonitorStateVersion;
    st.mem_size = layout->mem_size;
    st.page_tables = layout->page_tables;
    st.page_table_pages = layout->page_table_pages;
    st.rootfs = layout->rootfs;
    st.rootfs_size = layout->rootfs_size;
    st.out_buf = layout->out_buf;
    st.in_buf = layout->in_buf;
    st.stack_top = layout->stack_top;
    st.stack_low = layout->stack_low;
    st.mmap_top = layout->mmap_top;
    st.brk_start = layout->brk_start;
    st.out_len_addr = kh.out_len_addr;
    st.pending_input_gpa = PSN_KERNEL_BASE + 0x19000;
    xor_into(st, data, size);
    xor_into(kh, data, size);
    auto bytes = snapshot::encode_monitor_state(st);
    auto decoded = snapshot::decode_monitor_state(bytes);
    if (!decoded)
        return 0;
    auto checked = runtime::validate_monitor_state(*decoded, kh);
    if (!checked) {
        if (checked.error().message.empty())
            std::abort();
        return 0;
    }
    // Accepted: what the run loop then touches lies inside guest memory.
    if (!vmm::range_inside(st.pending_input_gpa, sizeof(psn_hc_input), st.mem_size) ||
        !vmm::range_inside(st.out_len_addr, 8, st.mem_size) ||
        !vmm::range_inside(checked->in_buf, PSN_IO_BUFFER_SIZE, st.mem_size) ||
        !vmm::range_inside(checked->out_buf, PSN_IO_BUFFER_SIZE, st.mem_size))
        std::abort();

    // The vCPU state presnap would save for this layout, then the input.
    kvm_regs regs{};
    regs.rflags = 0x2;
    kvm_sregs sregs = vmm::long_mode_sregs(kvm_sregs{}, *checked);
    snapshot::VcpuState vs;
    vs.regs.resize(sizeof regs);
    vs.sregs.resize(sizeof sregs);
    xor_into(regs, data, size);
    xor_into(sregs, data, size);
    std::memcpy(vs.regs.data(), &regs, sizeof regs);
    std::memcpy(vs.sregs.data(), &sregs, sizeof sregs);
    vs.xsave.assign(4096, 0);
    xor_bytes(vs.xsave, data, size);
    for (const auto& [index, value] : vmm::syscall_msrs(kh.syscall_entry))
        for (std::uint32_t saved : vmm::saved_msrs())
            if (saved == index)
                vs.msrs.push_back({index, value});
    if (size >= 12) {
        snapshot::Msr extra;
        std::memcpy(&extra.index, data, 4);
        std::memcpy(&extra.value, data + 4, 8);
        vs.msrs.push_back(extra);
    }
    auto ok = vmm::validate_vcpu_state(vs, {*checked, kh.syscall_entry, 0xe7});
    if (!ok && ok.error().message.empty())
        std::abort();
    if (ok) {
        // Accepted: never IF, IOPL or VM, and the page tables are the layout's.
        kvm_regs r;
        kvm_sregs s;
        std::memcpy(&r, vs.regs.data(), sizeof r);
        std::memcpy(&s, vs.sregs.data(), sizeof s);
        if ((r.rflags & (0x200 | 0x3000 | 0x20000)) || s.cr3 != checked->page_tables)
            std::abort();
    }
    return 0;
}
