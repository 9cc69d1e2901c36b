/* Every library call here is on the documented list of side-effect-free
 * functions (string, conversion, character and formatting functions, stdio
 * output), and the program stores to no global: no segment may be warm,
 * although the calls are given pointers to globals. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char greeting[32] = "hello";
static const char* motto = "carpe diem";
static const char* const names[] = {"ann", "bob"};

static void describe(const char* w) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s/%s/%zu", greeting, motto, strlen(motto));
    fputs(buf, stdout);
    fprintf(stdout, " %d %c\n", strcmp(motto, w), toupper((unsigned char)greeting[0]));
}

static void measure(const char* w) {
    char* end;
    long n = strtol(motto, &end, 10);
    const char* space = strchr(motto, ' ');
    printf("%ld %s %g %d\n", n, space ? space : "", sqrt((double)strlen(w)),
           memcmp(greeting, w, strlen(w)) == 0);
}

static void who(const char* w) {
    for (size_t i = 0; i < 2; i++)
        if (strncmp(names[i], w, 3) == 0)
            puts(names[i]);
    puts(greeting);
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == 'd')
            describe(line);
        else if (line[0] == 'm')
            measure(line);
        else
            who(line);
    }
    return 0;
}
