/* A program with its own breakpoint: "trap" runs an int3 (Linux sends
 * SIGTRAP, exit status 133); any other line is echoed. Proves that with
 * tracing on, a breakpoint the host did not place still ends the program as
 * natively, and the interrupted request is recorded as failed. */
#include <stdio.h>
#include <string.h>

static int traps;

__attribute__((noinline)) static void trap(void) {
    traps++;
    __asm__ volatile("int3");
}

__attribute__((noinline)) static void echo(const char* line) {
    printf("echo %s", line);
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "trap", 4) == 0)
            trap();
        echo(line);
        fflush(stdout);
    }
    return traps;
}
