#include "watchdog.h"

#include <cerrno>
#include <cstring>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace presnap::runtime {
namespace {

int64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

timespec to_timespec(int64_t ns) {
    return {time_t(ns / 1000000000), long(ns % 1000000000)};
}

sigset_t kick_set() {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, kick_signal());
    return s;
}

} // namespace

// A real-time signal: its default action is not "ignore" (an ignored
// signal is discarded when sent and would not end KVM_RUN), and glibc keeps
// only SIGRTMIN and SIGRTMIN+1 for itself.
int kick_signal() {
    return SIGRTMIN + 6;
}

Watchdog::~Watchdog() {
    if (have_timer_)
        timer_delete(timer_);
}

Status Watchdog::enter(int vcpu_fd) {
    sigset_t kick = kick_set();
    if (int e = pthread_sigmask(SIG_BLOCK, &kick, &saved_mask_); e != 0)
        return make_errno_error(Errc::kIo, e, "pthread_sigmask");
    auto fail = [&](int e, const char* what) {
        pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
        return make_errno_error(Errc::kKvm, e, what);
    };
    // Inside KVM_RUN: the thread's own mask, minus the kick.
    // struct kvm_signal_mask { __u32 len; __u8 sigset[]; }: 4 bytes of
    // header, then the kernel's sigset, 8 bytes on x86-64 (the first 8 bytes
    // of glibc's). The ioctl number encodes the header's size, 4; g++ sees
    // the struct as 8 bytes long, which would make KVM_SET_SIGNAL_MASK
    // another number, so it is spelt out here.
    sigset_t inside = saved_mask_;
    sigdelset(&inside, kick_signal());
    constexpr unsigned long kSetSignalMask = _IOW(KVMIO, 0x8b, uint32_t);
    uint8_t buf[4 + 8];
    uint32_t len = 8;
    std::memcpy(buf, &len, 4);
    std::memcpy(buf + 4, &inside, 8);
    if (ioctl(vcpu_fd, kSetSignalMask, buf) < 0)
        return fail(errno, "KVM_SET_SIGNAL_MASK");
    pid_t tid = pid_t(syscall(SYS_gettid));
    if (have_timer_ && timer_tid_ != tid) {
        timer_delete(timer_);
        have_timer_ = false;
    }
    if (!have_timer_) {
        sigevent ev{};
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = kick_signal();
        ev._sigev_un._tid = tid;
        if (timer_create(CLOCK_MONOTONIC, &ev, &timer_) != 0)
            return fail(errno, "timer_create");
        have_timer_ = true;
        timer_tid_ = tid;
    }
    return {};
}

void Watchdog::leave() {
    disarm();
    drain();
    pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
}

void Watchdog::arm(double seconds) {
    int64_t ns = seconds >= 1e9 ? int64_t(1e18) : int64_t(seconds * 1e9);
    deadline_ns_ = now_ns() + std::max<int64_t>(ns, 1);
    armed_ = true;
    itimerspec its{};
    its.it_value = to_timespec(deadline_ns_);
    if (have_timer_)
        timer_settime(timer_, TIMER_ABSTIME, &its, nullptr);
}

void Watchdog::disarm() {
    if (!armed_)
        return;
    armed_ = false;
    itimerspec its{};
    if (have_timer_)
        timer_settime(timer_, 0, &its, nullptr);
}

bool Watchdog::expired() const {
    return armed_ && now_ns() >= deadline_ns_;
}

void Watchdog::drain() {
    sigset_t kick = kick_set();
    timespec zero{};
    while (sigtimedwait(&kick, nullptr, &zero) > 0)
        ;
}

bool Watchdog::sleep_for_ns(uint64_t ns) {
    int64_t wake = now_ns() + int64_t(std::min<uint64_t>(ns, uint64_t(1) << 62));
    if (armed_ && deadline_ns_ <= wake) {
        timespec until = to_timespec(deadline_ns_);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR)
            ;
        return false;
    }
    timespec until = to_timespec(wake);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR)
        ;
    return true;
}

} // namespace presnap::runtime
