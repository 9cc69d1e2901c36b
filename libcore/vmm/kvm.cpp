#include "presnap/vmm/kvm.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace presnap::vmm {

Fd& Fd::operator=(Fd&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = o.release();
    }
    return *this;
}
Fd::~Fd() {
    if (fd_ >= 0)
        ::close(fd_);
}

namespace {

// <linux/kvm.h> declares kvm_cpuid2 and kvm_msrs with __DECLARE_FLEX_ARRAY,
// which in C++ adds an empty member: sizeof and the entries' offset differ
// from the C ABI the kernel uses (and the size is part of the ioctl number).
// These buffers are therefore laid out by hand: an 8-byte header, then the
// entries.
constexpr size_t kFlexHeader = 8;
constexpr unsigned long kIocGetSupportedCpuid =
    _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kFlexHeader);
constexpr unsigned long kIocSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kFlexHeader);
constexpr unsigned long kIocSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, kFlexHeader);
constexpr size_t kXsaveSize = 4096; // struct kvm_xsave in C (legacy KVM_GET_XSAVE)
constexpr unsigned long kIocGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, kXsaveSize);
constexpr unsigned long kIocSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, kXsaveSize);
constexpr unsigned long kIocGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kFlexHeader);
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16);

std::unexpected<Error> kvm_error(const char* what) {
    return make_errno_error(Errc::kKvm, errno, what);
}
} // namespace

Status kvm_available() {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return make_errno_error(Errc::kKvm, errno, "cannot open /dev/kvm");
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    ::close(fd);
    if (v != KVM_API_VERSION)
        return make_error(Errc::kKvm, "/dev/kvm has API version {} (expected {})", v,
                          KVM_API_VERSION);
    return {};
}

Result<Vm> Vm::create() {
    Vm vm;
    vm.kvm_ = Fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
    if (vm.kvm_.get() < 0)
        return make_errno_error(Errc::kKvm, errno, "cannot open /dev/kvm");
    int v = ioctl(vm.kvm_.get(), KVM_GET_API_VERSION, 0);
    if (v != KVM_API_VERSION)
        return make_error(Errc::kKvm, "/dev/kvm has API version {} (expected {})", v,
                          KVM_API_VERSION);
    vm.vm_ = Fd(ioctl(vm.kvm_.get(), KVM_CREATE_VM, 0));
    if (vm.vm_.get() < 0)
        return kvm_error("KVM_CREATE_VM");
    return vm;
}

Status Vm::set_memory(void* host, uint64_t size, bool log_dirty) {
    kvm_userspace_memory_region r{};
    r.slot = 0;
    r.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0;
    r.guest_phys_addr = 0;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    if (ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return kvm_error("KVM_SET_USER_MEMORY_REGION");
    return {};
}

Status Vm::clear_memory() {
    kvm_userspace_memory_region r{};
    r.slot = 0; // memory_size 0 deletes the slot
    if (ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return kvm_error("KVM_SET_USER_MEMORY_REGION (delete)");
    return {};
}

Result<std::vector<uint64_t>> Vm::dirty_log(uint64_t size) const {
    std::vector<uint64_t> bits((size / 4096 + 63) / 64, 0);
    kvm_dirty_log d{};
    d.slot = 0;
    d.dirty_bitmap = bits.data();
    if (ioctl(vm_.get(), KVM_GET_DIRTY_LOG, &d) < 0)
        return kvm_error("KVM_GET_DIRTY_LOG");
    return bits;
}

Result<std::vector<kvm_cpuid_entry2>> Vm::supported_cpuid() const {
    for (uint32_t n = 64; n <= 4096; n *= 2) {
        std::vector<uint8_t> buf(kFlexHeader + n * sizeof(kvm_cpuid_entry2));
        std::memcpy(buf.data(), &n, 4);
        if (ioctl(kvm_.get(), kIocGetSupportedCpuid, buf.data()) == 0) {
            uint32_t got;
            std::memcpy(&got, buf.data(), 4);
            std::vector<kvm_cpuid_entry2> out(std::min(got, n));
            std::memcpy(out.data(), buf.data() + kFlexHeader, out.size() * sizeof out[0]);
            return out;
        }
        if (errno != E2BIG)
            return kvm_error("KVM_GET_SUPPORTED_CPUID");
    }
    return make_error(Errc::kKvm, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

Result<Vcpu> Vcpu::create(const Vm& vm) {
    Vcpu c;
    c.fd_ = Fd(ioctl(vm.fd(), KVM_CREATE_VCPU, 0));
    if (c.fd_.get() < 0)
        return kvm_error("KVM_CREATE_VCPU");
    int sz = ioctl(vm.kvm_fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz < int(sizeof(kvm_run)))
        return kvm_error("KVM_GET_VCPU_MMAP_SIZE");
    void* p = mmap(nullptr, size_t(sz), PROT_READ | PROT_WRITE, MAP_SHARED, c.fd_.get(), 0);
    if (p == MAP_FAILED)
        return make_errno_error(Errc::kKvm, errno, "mmap of kvm_run");
    c.run_ = static_cast<kvm_run*>(p);
    c.run_size_ = size_t(sz);
    return c;
}

Vcpu::Vcpu(Vcpu&& o) noexcept : fd_(std::move(o.fd_)), run_(o.run_), run_size_(o.run_size_) {
    o.run_ = nullptr;
}
Vcpu::~Vcpu() {
    if (run_)
        munmap(run_, run_size_);
}

Result<bool> Vcpu::run() {
    if (ioctl(fd_.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return false;
        if (errno == EFAULT) // KVM could not bring in a page of guest memory
            return make_error(Errc::kIo, "KVM_RUN: guest memory is no longer backed (was a "
                                         "snapshot file truncated while in use?)");
        return kvm_error("KVM_RUN");
    }
    return true;
}

Result<kvm_regs> Vcpu::regs() const {
    kvm_regs r;
    if (ioctl(fd_.get(), KVM_GET_REGS, &r) < 0)
        return kvm_error("KVM_GET_REGS");
    return r;
}
Status Vcpu::set_regs(const kvm_regs& r) {
    if (ioctl(fd_.get(), KVM_SET_REGS, &r) < 0)
        return kvm_error("KVM_SET_REGS");
    return {};
}
Result<kvm_sregs> Vcpu::sregs() const {
    kvm_sregs s;
    if (ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0)
        return kvm_error("KVM_GET_SREGS");
    return s;
}
Status Vcpu::set_sregs(const kvm_sregs& s) {
    if (ioctl(fd_.get(), KVM_SET_SREGS, &s) < 0)
        return kvm_error("KVM_SET_SREGS");
    return {};
}
Status Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    std::vector<uint8_t> buf(kFlexHeader + entries.size() * sizeof(kvm_cpuid_entry2));
    uint32_t n = uint32_t(entries.size());
    std::memcpy(buf.data(), &n, 4);
    std::memcpy(buf.data() + kFlexHeader, entries.data(),
                entries.size() * sizeof(kvm_cpuid_entry2));
    if (ioctl(fd_.get(), kIocSetCpuid2, buf.data()) < 0)
        return kvm_error("KVM_SET_CPUID2");
    return {};
}
Status Vcpu::set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
    std::vector<uint8_t> buf(kFlexHeader + msrs.size() * sizeof(kvm_msr_entry));
    uint32_t count = uint32_t(msrs.size());
    std::memcpy(buf.data(), &count, 4);
    for (size_t i = 0; i < msrs.size(); i++) {
        kvm_msr_entry e{};
        e.index = msrs[i].first;
        e.data = msrs[i].second;
        std::memcpy(buf.data() + kFlexHeader + i * sizeof e, &e, sizeof e);
    }
    int n = ioctl(fd_.get(), kIocSetMsrs, buf.data());
    if (n < 0)
        return kvm_error("KVM_SET_MSRS");
    if (size_t(n) != msrs.size())
        return make_error(Errc::kKvm, "KVM_SET_MSRS refused MSR 0x{:x}", msrs[size_t(n)].first);
    return {};
}
Status Vcpu::set_xcr0(uint64_t xcr0) {
    kvm_xcrs x{};
    x.nr_xcrs = 1;
    x.xcrs[0].xcr = 0;
    x.xcrs[0].value = xcr0;
    if (ioctl(fd_.get(), KVM_SET_XCRS, &x) < 0)
        return kvm_error("KVM_SET_XCRS");
    return {};
}

Result<std::vector<uint64_t>> Vcpu::msrs(const std::vector<uint32_t>& indices) const {
    std::vector<uint8_t> buf(kFlexHeader + indices.size() * sizeof(kvm_msr_entry));
    uint32_t count = uint32_t(indices.size());
    std::memcpy(buf.data(), &count, 4);
    for (size_t i = 0; i < indices.size(); i++) {
        kvm_msr_entry e{};
        e.index = indices[i];
        std::memcpy(buf.data() + kFlexHeader + i * sizeof e, &e, sizeof e);
    }
    int n = ioctl(fd_.get(), kIocGetMsrs, buf.data());
    if (n < 0)
        return kvm_error("KVM_GET_MSRS");
    if (size_t(n) != indices.size())
        return make_error(Errc::kKvm, "KVM_GET_MSRS refused MSR 0x{:x}", indices[size_t(n)]);
    std::vector<uint64_t> out(indices.size());
    for (size_t i = 0; i < indices.size(); i++) {
        kvm_msr_entry e;
        std::memcpy(&e, buf.data() + kFlexHeader + i * sizeof e, sizeof e);
        out[i] = e.data;
    }
    return out;
}

Result<std::vector<uint8_t>> Vcpu::xsave() const {
    std::vector<uint8_t> x(kXsaveSize, 0);
    if (ioctl(fd_.get(), kIocGetXsave, x.data()) < 0)
        return kvm_error("KVM_GET_XSAVE");
    return x;
}
Status Vcpu::set_xsave(std::span<const uint8_t> bytes) {
    if (bytes.size() != kXsaveSize)
        return make_error(Errc::kFormat, "xsave state has {} bytes (expected {})", bytes.size(),
                          kXsaveSize);
    std::vector<uint8_t> x(bytes.begin(), bytes.end());
    if (ioctl(fd_.get(), kIocSetXsave, x.data()) < 0)
        return kvm_error("KVM_SET_XSAVE");
    return {};
}
Result<std::vector<uint8_t>> Vcpu::xcrs() const {
    kvm_xcrs x{};
    if (ioctl(fd_.get(), KVM_GET_XCRS, &x) < 0)
        return kvm_error("KVM_GET_XCRS");
    auto* p = reinterpret_cast<const uint8_t*>(&x);
    return std::vector<uint8_t>(p, p + sizeof x);
}
Status Vcpu::set_xcrs(std::span<const uint8_t> bytes) {
    kvm_xcrs x{};
    if (bytes.size() != sizeof x)
        return make_error(Errc::kFormat, "xcrs state has {} bytes (expected {})", bytes.size(),
                          sizeof x);
    std::memcpy(&x, bytes.data(), sizeof x);
    if (x.nr_xcrs > KVM_MAX_XCRS)
        return make_error(Errc::kFormat, "xcrs state lists {} registers (at most {})", x.nr_xcrs,
                          KVM_MAX_XCRS);
    if (ioctl(fd_.get(), KVM_SET_XCRS, &x) < 0)
        return kvm_error("KVM_SET_XCRS");
    return {};
}
Status Vcpu::complete_pending_exit() {
    run_->immediate_exit = 1;
    int r = ioctl(fd_.get(), KVM_RUN, 0);
    int err = errno;
    run_->immediate_exit = 0;
    if (r < 0 && err != EINTR)
        return make_errno_error(Errc::kKvm, err, "KVM_RUN (completing an exit)");
    return {};
}

} // namespace presnap::vmm
