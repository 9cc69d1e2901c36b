// A route that compiles a std::regex with character classes on first use.
// libstdc++'s regex_traits looks class and collating names up in tables of
// its own ("alnum", "NUL", ...): those are not routes, so no segment may
// carry them, and the route's code keeps its own token.
#include <iostream>
#include <regex>
#include <string>

static std::regex* words;

static void do_find(const std::string& arg) {
    if (!words)
        words = new std::regex("[[:alpha:]]+|[[.hyphen.]]");
    std::cout << std::regex_search(arg, *words) << '\n';
}

int main() {
    std::string cmd, arg;
    while (std::cin >> cmd >> arg) {
        if (cmd == "find")
            do_find(arg);
        else
            std::cout << "?\n";
    }
}
