/* A hostile test function: each request names one way to misbehave. The
 * monitor must stop or refuse each with a clear message and never be hurt.
 * Routes whose outcome is defined natively too (wild pointers, escape) print
 * results that the tests compare with the native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char* what, long r) {
    printf("%s -> %ld %s\n", what, r, r < 0 ? strerror(errno) : "ok");
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        printf("request %s\n", line);
        fflush(stdout);
        if (!strcmp(line, "null")) {
            volatile int* p = 0;
            printf("%d\n", *p);
        } else if (!strcmp(line, "div")) {
            unsigned long q = 1, d = 0, zero = 0;
            __asm__ volatile("divq %2" : "+a"(q), "+d"(d) : "r"(zero)); /* #DE */
            printf("%lu\n", q);
        } else if (!strcmp(line, "ud")) {
            __asm__ volatile("ud2");
        } else if (!strcmp(line, "gp")) {
            __asm__ volatile("hlt"); /* privileged: #GP at CPL3 */
        } else if (!strcmp(line, "spin")) {
            for (volatile unsigned long i = 0;; i++)
                ;
        } else if (!strcmp(line, "oom")) {
            /* ask for far more than the guest has, then use what we got */
            void* huge = malloc(64ul << 30);
            size_t got = 0;
            while (malloc(1 << 20))
                got++;
            printf("huge=%s got=%zu MiB\n", huge ? "yes" : "no", got > 0 ? (size_t)1 : (size_t)0);
        } else if (!strcmp(line, "wild")) {
            report("write wild", write(1, (void*)0xdeadbeef000ul, 10));
            report("write kernel-range", write(1, (void*)0x100000ul, 10));
            report("read into null", syscall(SYS_read, 0, (void*)8, 10));
            report("open bad path", open((const char*)0x7ff0000000ul, O_RDONLY));
            report("mmap absurd",
                   (long)mmap(0, 1ul << 46, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
            report("writev bad iov", syscall(SYS_writev, 1, (void*)0x10, 4));
            report("clock_gettime bad", syscall(SYS_clock_gettime, 1, (void*)0x10));
        } else if (!strcmp(line, "fork")) {
            report("fork", syscall(SYS_fork));
        } else if (!strcmp(line, "clone")) {
            report("clone", syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
        } else if (!strcmp(line, "execve")) {
            char* args[] = {"/bin/sh", 0};
            report("execve", execve("/bin/sh", args, 0));
        } else if (!strcmp(line, "socket")) {
            report("socket", socket(AF_INET, SOCK_STREAM, 0));
        } else if (!strcmp(line, "ptrace")) {
            report("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
        } else if (!strncmp(line, "escape", 6)) {
            const char* paths[] = {"../../etc/passwd", "/../../../etc/passwd",
                                   "/etc/passwd",      "data/../../../etc/passwd",
                                   "data/hello.txt",   "/data/./hello.txt"};
            for (unsigned i = 0; i < sizeof paths / sizeof *paths; i++) {
                int fd = open(paths[i], O_RDONLY);
                char buf[64] = {0};
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
                printf("open %s -> %s %s", paths[i], fd >= 0 ? "ok" : strerror(errno),
                       n > 0 ? buf : "\n");
                if (fd >= 0)
                    close(fd);
            }
        } else if (!strcmp(line, "bigout")) {
            /* a 100 MB line */
            static char chunk[1 << 16];
            memset(chunk, 'x', sizeof chunk);
            for (int i = 0; i < 1600; i++)
                fwrite(chunk, 1, sizeof chunk, stdout);
            printf("\n");
        } else if (!strcmp(line, "triple")) {
            /* Overwrite the guest kernel (mapped user-writable, see
             * presnap-guest(7)) and fault: the exception handlers are gone,
             * so the CPU ends in a triple fault. */
            memset((void*)0x100000ul, 0xff, 0x3000);
            __asm__ volatile("ud2");
        } else if (!strcmp(line, "abort")) {
            abort();
        } else if (!strcmp(line, "exit7")) {
            exit(7);
        } else {
            printf("ok\n");
        }
        fflush(stdout);
    }
    return 0;
}
