/* A hostile guest that speaks the hypercall ABI itself: the ports are
 * reachable from CPL3, so a program can forge any hypercall with any
 * argument. Each request (or argv[1]) names an attack; "echo" answers
 * normally, so the same binary is a cheap function for long runs.
 * Built static; include guest_abi.h for the ports and structs. */
#include "presnap/guest_abi.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void hypercall(unsigned nr, void* arg) {
    __asm__ volatile("outl %0, %w1"
                     :
                     : "a"((uint32_t)(uintptr_t)arg), "Nd"((uint16_t)(PSN_HC_PORT_BASE + nr))
                     : "memory");
}

/* Hypercall arguments must sit below 4 GiB: static data does. */
static struct psn_hc_input in;
static struct psn_hc_notice note;
static struct psn_hc_exit ex;
static volatile char* scattered;
static char message[] = "forged\nsnaprun: note: this line was forged by the guest";

static void attack(const char* what) {
    if (!strcmp(what, "input-after-eof")) {
        /* Drain stdin to its end, then keep asking for input: each INPUT
         * used to re-arm the per-request timer. */
        char buf[256];
        while (fgets(buf, sizeof buf, stdin))
            ;
        printf("eof reached\n");
        fflush(stdout);
        for (;;) {
            memset(&in, 0, sizeof in);
            hypercall(PSN_HC_INPUT, &in);
        }
    } else if (!strcmp(what, "notices")) {
        /* A new "unsupported syscall" number each time. */
        for (uint64_t i = 0;; i++) {
            note.kind = PSN_NOTICE_UNSUPPORTED_SYSCALL;
            note.arg0 = 1000 + i;
            hypercall(PSN_HC_NOTICE, &note);
        }
    } else if (!strcmp(what, "exit-signal")) {
        ex.status = 0;
        ex.signal = 0xffffffffu;
        hypercall(PSN_HC_EXIT, &ex);
    } else if (!strcmp(what, "panic-text")) {
        note.kind = PSN_NOTICE_KERNEL_PANIC;
        note.arg0 = (uint64_t)(uintptr_t)message;
        note.arg1 = sizeof message - 1;
        hypercall(PSN_HC_NOTICE, &note);
    } else if (!strcmp(what, "bigout")) {
        /* One response of 2 MiB, in one write. */
        size_t n = 2u << 20;
        char* p = malloc(n);
        memset(p, 'x', n);
        fwrite(p, 1, n, stdout);
    } else if (!strcmp(what, "scatter")) {
        /* Dirty every other page of 192 MiB: a snapshot of tens of
         * thousands of separate page runs. */
        size_t n = 192u << 20;
        volatile char* p = malloc(n);
        for (size_t off = 0; off < n; off += 8192)
            p[off] = 1;
        scattered = p;
        printf("scattered %zu pages\n", n / 8192);
    } else if (!strcmp(what, "touch")) {
        /* Read back every page "scatter" wrote. */
        size_t sum = 0;
        for (size_t off = 0; scattered && off < (192u << 20); off += 8192)
            sum += (size_t)scattered[off];
        printf("touched %zu\n", sum);
    } else {
        printf("ok %s\n", what);
    }
}

int main(int argc, char** argv) {
    if (argc > 1) {
        attack(argv[1]);
        return 0;
    }
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        attack(line);
        fflush(stdout);
    }
    return 0;
}
