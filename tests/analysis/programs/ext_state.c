/* State that only library code keeps: the analysis has no bitcode for
 * tsearch or regcomp. "add" puts a word in a search tree whose root is a
 * global passed by address; "match" compiles a pattern into a global
 * regex_t on first use; "has" only looks the tree up (tfind is on the list
 * of side-effect-free functions), so it keeps nothing. */
#include <regex.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* words;
static regex_t number_re;
static regex_t* number;

static int compare(const void* a, const void* b) { return strcmp(a, b); }

static void do_add(const char* w) {
    tsearch(strdup(w), &words, compare);
    puts("added");
}

static void do_has(const char* w) {
    puts(tfind(w, &words, compare) ? "yes" : "no");
}

static void do_match(const char* w) {
    if (!number) {
        regcomp(&number_re, "^[0-9]+$", REG_EXTENDED | REG_NOSUB);
        number = &number_re;
    }
    puts(regexec(number, w, 0, NULL, 0) == 0 ? "number" : "word");
}

int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "add ", 4) == 0)
            do_add(line + 4);
        else if (strncmp(line, "has ", 4) == 0)
            do_has(line + 4);
        else if (strncmp(line, "match ", 6) == 0)
            do_match(line + 6);
        else
            puts("?");
    }
    return 0;
}
