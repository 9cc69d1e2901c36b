/* A hot loop (checksum over every byte of each request) and a cold error
 * path (a fatal report that exits). The loop must rank above the error
 * path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fatal(const char* what) {
    fprintf(stderr, "hotcold: %s\n", what);
    exit(1);
}

static unsigned checksum(const char* s, size_t n) {
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int main(void) {
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        if (n == 0)
            fatal("empty read");
        printf("%08x\n", checksum(line, n));
    }
    return 0;
}
