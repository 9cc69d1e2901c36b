/* Table-driven dispatch: a constant table of { name, handler } searched by
 * a loop with strcmp, and an array of const char* whose matching index
 * picks a unit. Each handler's route token is its entry's name; the units'
 * code gets the names of the array. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long* squares;
static char history[1024];
static size_t history_len;

static void cmd_square(const char* arg) {
    if (!squares) {
        squares = malloc(1000 * sizeof *squares);
        for (long i = 0; i < 1000; i++)
            squares[i] = i * i;
    }
    printf("%ld\n", squares[atoi(arg) % 1000]);
}

static void cmd_note(const char* arg) {
    size_t n = strlen(arg);
    if (history_len + n < sizeof history) {
        memcpy(history + history_len, arg, n);
        history_len += n;
    }
    printf("%zu\n", history_len);
}

static void cmd_help(const char* arg) {
    (void)arg;
    puts("square note help km mi");
}

static const struct command {
    const char* name;
    void (*run)(const char*);
} commands[] = {
    {"square", cmd_square},
    {"note", cmd_note},
    {"help", cmd_help},
};

static const char* const units[] = {"km", "mi"};
static double factors[2];

static void convert(size_t unit, const char* arg) {
    if (factors[unit] == 0)
        factors[unit] = unit == 0 ? 1.0 : 1.609344;
    printf("%g\n", atof(arg) * factors[unit]);
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        char* word = strtok(line, " \n");
        char* arg = strtok(NULL, "\n");
        if (!word)
            continue;
        int done = 0;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(word, commands[i].name) == 0) {
                commands[i].run(arg ? arg : "");
                done = 1;
                break;
            }
        for (size_t u = 0; !done && u < 2; u++)
            if (strcmp(units[u], word) == 0) {
                convert(u, arg ? arg : "0");
                done = 1;
            }
        if (!done)
            puts("?");
    }
    return 0;
}

/* Of the handlers' type and address-taken, but not in the table: the
 * table's call never reaches it. */
static void log_error(const char* arg) { fprintf(stderr, "error: %s\n", arg); }
void (*on_error)(const char*) = log_error;
