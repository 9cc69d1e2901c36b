// C++: std::string comparisons for dispatch and a function-local static as
// the lazy initialiser (the C++ ABI's guard variable).
#include <iostream>
#include <map>
#include <string>

static const std::map<std::string, int>& dictionary() {
    static const std::map<std::string, int> words = [] {
        std::map<std::string, int> m;
        for (int i = 0; i < 1000; i++)
            m["w" + std::to_string(i)] = i;
        return m;
    }();
    return words;
}

static int lookup(const std::string& w) {
    auto it = dictionary().find(w);
    return it == dictionary().end() ? -1 : it->second;
}

int main() {
    std::string cmd, arg;
    while (std::cin >> cmd >> arg) {
        if (cmd == "lookup")
            std::cout << lookup(arg) << '\n';
        else if (cmd.compare("echo") == 0)
            std::cout << arg << '\n';
        else
            std::cout << "?\n";
    }
}
