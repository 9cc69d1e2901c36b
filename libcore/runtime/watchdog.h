// A Session's deadline, private to the runtime: a POSIX timer of the
// Session's own that, when the deadline passes, signals the thread running
// the vCPU, which makes KVM_RUN return.
//
// The kick is a thread-directed real-time signal (kick_signal(); the timer
// is created with SIGEV_THREAD_ID for the thread in run()). That thread
// keeps the signal blocked while it is outside KVM_RUN and has KVM unblock
// it inside (KVM_SET_SIGNAL_MASK), so a kick ends KVM_RUN with EINTR, or
// makes the next KVM_RUN return at once, and is never delivered to a
// handler; what is left pending is drained. No helper thread, no signal
// handler, no process-wide state.
#pragma once

#include "presnap/error.h"

#include <csignal>
#include <cstdint>
#include <ctime>
#include <sys/types.h>

namespace presnap::runtime {

int kick_signal();

class Watchdog {
  public:
    Watchdog() = default;
    ~Watchdog();
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

    // Brackets the calling thread's stay in Session::run(): blocks the kick
    // in this thread, tells KVM to unblock it inside KVM_RUN (vcpu_fd) and
    // points the timer at this thread.
    Status enter(int vcpu_fd);
    // Disarms, drains a pending kick and restores the signal mask.
    void leave();

    // The deadline is `seconds` from now. Only the host arms it; a guest
    // cannot (the caller decides when a new request starts).
    void arm(double seconds);
    void disarm();
    bool expired() const;
    // Takes away a kick that is no longer wanted (the deadline moved).
    void drain();

    // Sleeps for `ns` or until the deadline, whichever is first; false when
    // the deadline ended it.
    bool sleep_for_ns(uint64_t ns);

  private:
    timer_t timer_{};
    bool have_timer_ = false;
    pid_t timer_tid_ = 0;
    bool armed_ = false;
    int64_t deadline_ns_ = 0; // CLOCK_MONOTONIC
    sigset_t saved_mask_{};
};

} // namespace presnap::runtime
