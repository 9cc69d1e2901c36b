// A C++ test function: std::string, containers, iostreams, std::regex and
// exceptions (which need the unwinder to walk the program's own stack).
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

static int parse_positive(const std::string& s) {
    int v = std::stoi(s); // throws std::invalid_argument
    if (v <= 0)
        throw std::out_of_range("not positive: " + s);
    return v;
}

int main() {
    std::unordered_map<std::string, int> counts;
    std::map<std::string, int> ordered;
    const std::regex kv(R"((\w+)=(\d+))");
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        if (cmd == "count") {
            std::string w;
            while (in >> w)
                ordered[w] = ++counts[w];
            std::cout << "count";
            for (const auto& [k, v] : ordered)
                std::cout << ' ' << k << ':' << v;
            std::cout << '\n';
        } else if (cmd == "kv") {
            std::string rest;
            std::getline(in, rest);
            int sum = 0;
            for (std::sregex_iterator it(rest.begin(), rest.end(), kv), end; it != end; ++it)
                sum += std::stoi((*it)[2]);
            std::cout << "kv sum=" << sum << '\n';
        } else if (cmd == "num") {
            std::string s;
            in >> s;
            try {
                std::cout << "num " << parse_positive(s) * 2 << '\n';
            } catch (const std::exception& e) {
                std::cout << "num error: " << e.what() << '\n';
            }
        } else if (cmd == "vec") {
            std::vector<std::string> v;
            for (int i = 0; i < 20000; i++)
                v.push_back(std::to_string(i * 7919 % 10007));
            size_t total = 0;
            for (const auto& s : v)
                total += s.size();
            std::cout << "vec " << v.size() << ' ' << total << std::endl;
        } else {
            std::cout << "unknown " << cmd << '\n';
        }
    }
    return 0;
}
