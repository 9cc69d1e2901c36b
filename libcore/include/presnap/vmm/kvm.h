// Thin RAII wrappers over /dev/kvm: the VM (fd, memory slot, dirty log) and
// its single vCPU (kvm_run mapping, registers, the KVM_RUN call). No policy
// here: the monitor decides what to run and how to handle each exit.
#pragma once

#include "presnap/error.h"

#include <cstdint>
#include <linux/kvm.h>
#include <memory>
#include <span>
#include <vector>

namespace presnap::vmm {

class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept;
    ~Fd();
    int get() const { return fd_; }
    int release() {
        int f = fd_;
        fd_ = -1;
        return f;
    }

  private:
    int fd_ = -1;
};

// Is /dev/kvm usable here? Returns the reason when not.
Status kvm_available();

class Vm {
  public:
    static Result<Vm> create();

    // Maps `size` bytes at `host` as guest physical [0, size) in slot 0.
    Status set_memory(void* host, uint64_t size, bool log_dirty);
    // Deletes slot 0 (a pooled VM about to get new memory).
    Status clear_memory();
    // Pages written by the guest since the last call (or since logging began),
    // one bit per page; needs set_memory(..., log_dirty = true).
    Result<std::vector<uint64_t>> dirty_log(uint64_t size) const;
    Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
    int fd() const { return vm_.get(); }
    int kvm_fd() const { return kvm_.get(); }

  private:
    Fd kvm_, vm_;
};

class Vcpu {
  public:
    static Result<Vcpu> create(const Vm& vm);
    Vcpu(Vcpu&&) noexcept;
    ~Vcpu();

    // Runs until the next exit. Returns false when interrupted by a signal
    // (KVM_RUN gave EINTR), true on a real exit.
    Result<bool> run();
    kvm_run* state() const { return run_; }
    int fd() const { return fd_.get(); }

    Result<kvm_regs> regs() const;
    Status set_regs(const kvm_regs& r);
    Result<kvm_sregs> sregs() const;
    Status set_sregs(const kvm_sregs& s);
    Status set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    Status set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
    Status set_xcr0(uint64_t xcr0);
    Result<std::vector<uint64_t>> msrs(const std::vector<uint32_t>& indices) const;
    Result<std::vector<uint8_t>> xsave() const; // struct kvm_xsave bytes
    Status set_xsave(std::span<const uint8_t> bytes);
    Result<std::vector<uint8_t>> xcrs() const; // struct kvm_xcrs bytes
    Status set_xcrs(std::span<const uint8_t> bytes);
    // Completes an exit KVM left pending (the `out` of a hypercall), so that
    // the registers read next are those after the instruction.
    Status complete_pending_exit();

  private:
    Vcpu() = default;
    Fd fd_;
    kvm_run* run_ = nullptr;
    size_t run_size_ = 0;
};

} // namespace presnap::vmm
