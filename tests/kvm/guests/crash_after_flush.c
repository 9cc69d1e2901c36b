/* Flushes a response, then crashes on a request starting with 'c'; loops
 * forever after EOF when given an argument. Natively the flushed bytes reach
 * stdout before the SIGSEGV: the guest must do the same (oracle test), and a
 * loop after the end of input must still be stopped by --timeout. */
#include <stdio.h>

int main(int argc, char** argv) {
    char line[100];
    while (fgets(line, sizeof line, stdin)) {
        printf("got %s", line);
        fflush(stdout);
        if (line[0] == 'c') {
            volatile int* p = 0;
            *p = 1;
        }
    }
    if (argc > 1)
        for (volatile int spin = 1; spin;)
            ;
    return 0;
}
