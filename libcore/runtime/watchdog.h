// A Session's deadline: a thread of its own that, when the deadline passes,
// makes the vCPU leave KVM_RUN. Private to the runtime.
//
// The kick is a thread-directed signal (kKickSignal) sent to the thread in
// run(). That thread keeps the signal blocked while it is outside KVM_RUN
// and has KVM unblock it inside (KVM_SET_SIGNAL_MASK), so a kick ends
// KVM_RUN with EINTR and is never delivered to a handler; what is left
// pending is drained before run() returns. kvm_run->immediate_exit covers a
// kick that lands between two KVM_RUN calls.
#pragma once

#include "presnap/error.h"

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <linux/kvm.h>
#include <mutex>
#include <pthread.h>
#include <thread>

namespace presnap::runtime {

class Watchdog {
  public:
    using Clock = std::chrono::steady_clock;
    explicit Watchdog(kvm_run* run);
    ~Watchdog();
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    // The deadline is `seconds` from now. Only the host re-arms it: a guest
    // cannot (the caller decides when a new request starts).
    void arm(double seconds);
    void disarm();
    bool expired() const;

    // Brackets the vCPU thread's stay in run(): blocks the kick signal in
    // this thread and tells KVM to unblock it inside KVM_RUN (vcpu_fd).
    Status enter(int vcpu_fd);
    // Stops kicks, drains a pending one and restores the signal mask.
    void leave();

    // Sleeps for `ns` or until the deadline, whichever is first; false when
    // the deadline ended it.
    bool sleep_for_ns(uint64_t ns);

  private:
    void loop();

    kvm_run* run_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::thread thread_;
    bool stop_ = false;
    bool armed_ = false;
    bool expired_ = false;
    Clock::time_point deadline_{};
    // When the watchdog thread will next wake by itself (max: never). A new
    // deadline later than that needs no wake-up: the thread finds it when it
    // wakes, so arming per request costs no context switch.
    Clock::time_point wakes_at_ = Clock::time_point::max();
    bool in_run_ = false;
    pthread_t target_{};
    sigset_t saved_mask_{};
};

int kick_signal();

} // namespace presnap::runtime
