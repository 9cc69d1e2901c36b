/* Built with -O2 -g: scale() is small and static, so gcc inlines it into
 * its only caller; report() is kept out of line. */
#include <stdio.h>
#include <stdlib.h>

static int scale(int x) { return x * 3 + 1; }

__attribute__((noinline)) static void report(int v) { printf("%d\n", v); }

int main(void) {
    char line[128];
    while (fgets(line, sizeof line, stdin))
        report(scale(atoi(line)));
    return 0;
}
