/* Program A: its history is recorded; warm_cache() is the shared code. */
#include <stdio.h>
#include <string.h>

static char cache[256];

static void warm_cache(const char* s) {
    for (int i = 0; i < 255 && s[i]; i++)
        cache[i] = (char)(s[i] ^ 0x20);
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'w')
            warm_cache(line);
        printf("%s\n", cache);
    }
    return 0;
}
