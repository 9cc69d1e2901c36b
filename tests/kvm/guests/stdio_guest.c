/* A test function exercising what static C programs commonly use: stdio,
 * malloc (small and large, so both brk and mmap), realloc growth (mremap),
 * TLS, getrandom, /dev/urandom, clocks, uname, files under --rootfs.
 * Its output must not depend on where it runs, so it prints only facts that
 * are the same natively and in a guest. Built for glibc, musl and static-pie. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static __thread int tls_counter = 41;
static char* big;

static unsigned long checksum(const unsigned char* p, size_t n) {
    unsigned long h = 1469598103934665603ul;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ul;
    return h;
}

int main(int argc, char** argv) {
    char line[8192];
    printf("argc=%d tls=%d\n", argc, ++tls_counter);
    for (int i = 1; i < argc; i++)
        printf("arg%d=%s\n", i, argv[i]);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        char* arg = strchr(line, ' ');
        if (arg)
            *arg++ = 0;
        if (!strcmp(line, "echo")) {
            printf("echo %s\n", arg ? arg : "");
        } else if (!strcmp(line, "alloc")) {
            /* many small blocks, then a big one, then grow it */
            size_t n = arg ? strtoul(arg, 0, 10) : 1000;
            void** v = malloc(n * sizeof *v);
            for (size_t i = 0; i < n; i++) {
                v[i] = malloc(i % 512 + 1);
                memset(v[i], (int)i, i % 512 + 1);
            }
            for (size_t i = 0; i < n; i += 2)
                free(v[i]);
            big = realloc(big, 8u << 20);
            memset(big, 0x5a, 8u << 20);
            big = realloc(big, 32u << 20);
            unsigned long sum = checksum((unsigned char*)big, 8u << 20);
            for (size_t i = 1; i < n; i += 2)
                free(v[i]);
            free(v);
            printf("alloc ok %lx\n", sum);
        } else if (!strcmp(line, "random")) {
            unsigned char a[32], b[32];
            ssize_t r = getrandom(a, sizeof a, 0);
            int fd = open("/dev/urandom", O_RDONLY);
            ssize_t r2 = fd >= 0 ? read(fd, b, sizeof b) : -1;
            if (fd >= 0)
                close(fd);
            printf("random %zd %zd differ=%d\n", r, r2, memcmp(a, b, sizeof a) != 0);
        } else if (!strcmp(line, "randhex")) {
            /* differs run to run: not in the oracle's requests */
            unsigned char r[16];
            getrandom(r, sizeof r, 0);
            printf("randhex ");
            for (unsigned i = 0; i < sizeof r; i++)
                printf("%02x", r[i]);
            printf("\n");
        } else if (!strcmp(line, "generation")) {
            /* presnap only: the restore generation in the boot information
             * page (presnap-guest(7)); natively this address is unmapped */
            printf("generation %llu\n", (unsigned long long)*(volatile unsigned long long*)0x3070);
        } else if (!strcmp(line, "clock")) {
            struct timespec t1, t2;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            volatile unsigned long x = 0;
            for (unsigned long i = 0; i < 1000000; i++)
                x += i;
            clock_gettime(CLOCK_MONOTONIC, &t2);
            long long d = (t2.tv_sec - t1.tv_sec) * 1000000000ll + (t2.tv_nsec - t1.tv_nsec);
            time_t now = time(0);
            printf("clock forward=%d year_ok=%d\n", d > 0, now > 1700000000);
        } else if (!strcmp(line, "devstat")) {
            /* device numbers by path and by descriptor: the same natively */
            const char* devs[] = {"/dev/null", "/dev/zero", "/dev/urandom"};
            for (unsigned i = 0; i < 3; i++) {
                struct stat a, b;
                int fd = open(devs[i], O_RDONLY);
                int ok = stat(devs[i], &a) == 0 && fd >= 0 && fstat(fd, &b) == 0;
                printf("devstat %s %d %o %u:%u same=%d\n", devs[i], ok,
                       (unsigned)(a.st_mode & 07777), major(a.st_rdev), minor(a.st_rdev),
                       ok && a.st_rdev == b.st_rdev && a.st_mode == b.st_mode);
                if (fd >= 0)
                    close(fd);
            }
        } else if (!strcmp(line, "uname")) {
            struct utsname u;
            printf("uname %d %s %s\n", uname(&u), u.sysname, u.machine);
        } else if (!strcmp(line, "cat")) {
            FILE* f = fopen(arg ? arg : "", "r");
            if (!f) {
                printf("cat %s: %s\n", arg ? arg : "", strerror(errno));
                continue;
            }
            char buf[256];
            size_t n;
            unsigned long total = 0;
            while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
                total += n;
                fwrite(buf, 1, n, stdout);
            }
            fclose(f);
            printf("cat %lu bytes\n", total);
        } else if (!strcmp(line, "exit")) {
            printf("exiting %s\n", arg ? arg : "0");
            return arg ? atoi(arg) : 0;
        } else {
            printf("unknown '%s'\n", line);
        }
    }
    printf("eof tls=%d\n", tls_counter);
    return 0;
}
