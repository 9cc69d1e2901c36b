/* Micro-benchmark run both natively and as a presnap guest: the cost of a
 * syscall the guest kernel serves without an exit (getppid), of one that
 * makes an exit to the monitor and back (write(2, p, 0): a hypercall with
 * nothing to write), and of first touches of fresh memory. Prints medians of
 * 9 rounds in nanoseconds per operation. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000ll + t.tv_nsec;
}
static int cmp(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}
static double median9(double* v) {
    qsort(v, 9, sizeof *v, cmp);
    return v[4];
}

int main(void) {
    double r[9];
    for (int k = 0; k < 9; k++) {
        long long t = now_ns();
        for (int i = 0; i < 20000; i++)
            syscall(SYS_getppid);
        r[k] = (double)(now_ns() - t) / 20000;
    }
    printf("in_guest_syscall_ns=%.0f\n", median9(r));
    for (int k = 0; k < 9; k++) {
        long long t = now_ns();
        for (int i = 0; i < 2000; i++)
            syscall(SYS_write, 2, "", 0);
        r[k] = (double)(now_ns() - t) / 2000;
    }
    printf("exit_round_trip_ns=%.0f\n", median9(r));
    for (int k = 0; k < 9; k++) {
        size_t n = 4u << 20;
        char* p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        long long t = now_ns();
        for (size_t i = 0; i < n; i += 4096)
            p[i] = 1;
        r[k] = (double)(now_ns() - t) / (double)(n / 4096);
        /* not unmapped: each round must touch memory never touched before */
    }
    printf("first_touch_per_page_ns=%.0f\n", median9(r));
    return 0;
}
