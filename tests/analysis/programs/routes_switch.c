/* switch dispatch on the request's first byte. */
#include <stdio.h>

static long adds, muls;

static void op_add(const char* s) { adds++, printf("add %s", s); }
static void op_mul(const char* s) { muls++, printf("mul %s", s); }
static void op_quit(void) { printf("%ld %ld\n", adds, muls); }

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        switch (line[0]) {
        case '+': op_add(line + 1); break;
        case '*':
        case 'x': op_mul(line + 1); break;
        case 'q': op_quit(); return 0;
        default: puts("?");
        }
    }
    return 0;
}
