/* rare_repair() is only reached through a branch the programmer marked
 * unlikely, nested under another condition; common_path() runs on every
 * request. rare_repair must rank low. */
#include <stdio.h>
#include <string.h>

static long total;
static long repairs;

static void rare_repair(char* s) {
    for (char* p = s; *p; p++)
        if (*p == '\t')
            *p = ' ';
    repairs++;
}

static void common_path(const char* s) { total += (long)strlen(s); }

int main(void) {
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == '#') {
            if (__builtin_expect(strchr(line, '\t') != NULL, 0))
                rare_repair(line);
        }
        common_path(line);
        printf("%ld %ld\n", total, repairs);
    }
    return 0;
}
