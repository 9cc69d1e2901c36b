#include "watchdog.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <sys/ioctl.h>
#include <vector>

namespace presnap::runtime {

// A real-time signal: its default action is not "ignore" (an ignored
// signal is discarded when sent and would not end KVM_RUN), and glibc keeps
// only SIGRTMIN and SIGRTMIN+1 for itself.
int kick_signal() {
    return SIGRTMIN + 6;
}

Watchdog::Watchdog(kvm_run* run) : run_(run), thread_([this] { loop(); }) {}

Watchdog::~Watchdog() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void Watchdog::arm(double seconds) {
    bool wake;
    {
        std::lock_guard lock(mu_);
        auto d = std::chrono::duration<double>(seconds);
        deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(d);
        armed_ = true;
        expired_ = false;
        run_->immediate_exit = 0;
        wake = deadline_ < wakes_at_;
    }
    if (wake)
        cv_.notify_all();
}

void Watchdog::disarm() {
    std::lock_guard lock(mu_);
    armed_ = false;
}

bool Watchdog::expired() const {
    std::lock_guard lock(mu_);
    return expired_;
}

void Watchdog::loop() {
    std::unique_lock lock(mu_);
    for (;;) {
        if (stop_)
            return;
        if (!armed_ || expired_) {
            cv_.wait(lock);
            continue;
        }
        if (cv_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ && !expired_ &&
            Clock::now() >= deadline_) {
            expired_ = true;
            run_->immediate_exit = 1;
            if (in_run_)
                pthread_kill(target_, kick_signal());
            cv_.notify_all(); // wakes a sleep_for_ns()
        }
    }
}

Status Watchdog::enter(int vcpu_fd) {
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, kick_signal());
    if (int e = pthread_sigmask(SIG_BLOCK, &kick, &saved_mask_); e != 0)
        return make_errno_error(Errc::kIo, e, "pthread_sigmask");
    // Inside KVM_RUN: the thread's own mask, minus the kick.
    sigset_t inside = saved_mask_;
    sigdelset(&inside, kick_signal());
    // struct kvm_signal_mask { __u32 len; __u8 sigset[]; }: 4 bytes of
    // header, then the kernel's sigset, 8 bytes on x86-64 (the first 8 bytes
    // of glibc's). The ioctl number encodes the header's size, 4; g++ sees
    // the struct as 8 bytes long, which would make KVM_SET_SIGNAL_MASK
    // another number, so it is spelt out here.
    constexpr unsigned long kSetSignalMask = _IOW(KVMIO, 0x8b, uint32_t);
    uint8_t buf[4 + 8];
    uint32_t len = 8;
    std::memcpy(buf, &len, 4);
    std::memcpy(buf + 4, &inside, 8);
    if (ioctl(vcpu_fd, kSetSignalMask, buf) < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
        return make_errno_error(Errc::kKvm, e, "KVM_SET_SIGNAL_MASK");
    }
    std::lock_guard lock(mu_);
    target_ = pthread_self();
    in_run_ = true;
    return {};
}

void Watchdog::leave() {
    {
        std::lock_guard lock(mu_);
        in_run_ = false;
    }
    // No kick can be sent now; take away one that was.
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, kick_signal());
    timespec zero{};
    while (sigtimedwait(&kick, nullptr, &zero) > 0)
        ;
    pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
}

bool Watchdog::sleep_for_ns(uint64_t ns) {
    std::unique_lock lock(mu_);
    auto wake = Clock::now() + std::chrono::nanoseconds(std::min<uint64_t>(ns, 1ull << 62));
    for (;;) {
        if (expired_)
            return false;
        auto until = armed_ && deadline_ < wake ? deadline_ : wake;
        if (Clock::now() >= wake)
            return true;
        cv_.wait_until(lock, until);
        if (armed_ && !expired_ && Clock::now() >= deadline_) {
            // The watchdog thread sets expired_ too; do it here so the sleep
            // ends exactly at the deadline whichever thread wakes first.
            expired_ = true;
            run_->immediate_exit = 1;
        }
    }
}

} // namespace presnap::runtime
