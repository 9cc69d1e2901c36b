/* Program B: different program, different names; fill_buffer() has the
 * same body as program A's warm_cache(). */
#include <stdio.h>
#include <string.h>

static char buffer[256];
static long lines_seen;

static void fill_buffer(const char* s) {
    for (int i = 0; i < 255 && s[i]; i++)
        buffer[i] = (char)(s[i] ^ 0x20);
}

static void count_line(void) { lines_seen++; }

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        count_line();
        if (line[0] == '!' && line[1] == '!')
            fill_buffer(line);
        printf("%ld %s\n", lines_seen, buffer);
    }
    return 0;
}
