// Handlers in a std::unordered_map<std::string, handler> built from
// constants; two of them keep lazy state. Each handler's route token is the
// key it is stored under. Short aliases sit in a table of structs searched
// with std::string == const char* in a range-for loop.
#include <iostream>
#include <string>
#include <unordered_map>
#include <vector>

static std::vector<long>* primes;
static std::string* banner;

static void do_primes(const std::string& arg) {
    if (!primes) {
        primes = new std::vector<long>;
        for (long n = 2; primes->size() < 1000; n++) {
            bool prime = true;
            for (long p : *primes)
                if (n % p == 0) {
                    prime = false;
                    break;
                }
            if (prime)
                primes->push_back(n);
        }
    }
    std::cout << (*primes)[std::stoul(arg) % 1000] << '\n';
}

static void do_greet(const std::string& arg) {
    if (!banner)
        banner = new std::string("hello, ");
    std::cout << *banner << arg << '\n';
}

static void do_echo(const std::string& arg) { std::cout << arg << '\n'; }

static const std::unordered_map<std::string, void (*)(const std::string&)> handlers = {
    {"primes", do_primes},
    {"greet", do_greet},
    {"echo", do_echo},
};

static const struct alias {
    const char* name;
    void (*run)(const std::string&);
} aliases[] = {{"p", do_primes}, {"g", do_greet}};

static bool run_alias(const std::string& cmd, const std::string& arg) {
    for (const alias& a : aliases)
        if (cmd == a.name) {
            a.run(arg);
            return true;
        }
    return false;
}

int main() {
    std::string cmd, arg;
    while (std::cin >> cmd >> arg) {
        auto it = handlers.find(cmd);
        if (it != handlers.end())
            it->second(arg);
        else if (!run_alias(cmd, arg))
            std::cout << "?\n";
    }
}
