/* strcmp dispatch: each route's handler is reached only after the request's
 * first word compared equal to the route's name. */
#include <stdio.h>
#include <string.h>

static long hits[3];

static void do_get(const char* arg) { hits[0]++, printf("get %s\n", arg); }
static void do_put(const char* arg) { hits[1]++, printf("put %s\n", arg); }
static void do_stats(void) { hits[2]++, printf("%ld %ld\n", hits[0], hits[1]); }

static void handle(char* line) {
    char* cmd = strtok(line, " \n");
    char* arg = strtok(NULL, " \n");
    if (!cmd)
        return;
    if (strcmp(cmd, "get") == 0)
        do_get(arg ? arg : "");
    else if (!strcmp(cmd, "put"))
        do_put(arg ? arg : "");
    else if (strncmp(cmd, "statistics", 5) == 0)
        do_stats();
    else
        puts("unknown");
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin))
        handle(line);
    return 0;
}
