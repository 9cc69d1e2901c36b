#include "presnap/size.h"

#include <cctype>

namespace presnap {

std::optional<uint64_t> parse_size(const std::string& s) {
    size_t i = 0;
    uint64_t v = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        uint64_t d = uint64_t(s[i] - '0');
        if (v > (~0ull - d) / 10)
            return std::nullopt;
        v = v * 10 + d;
        i++;
    }
    if (i == 0)
        return std::nullopt;
    std::string suf = s.substr(i);
    uint64_t mul = 1;
    if (suf == "K" || suf == "k" || suf == "KiB")
        mul = 1ull << 10;
    else if (suf == "M" || suf == "m" || suf == "MiB")
        mul = 1ull << 20;
    else if (suf == "G" || suf == "g" || suf == "GiB")
        mul = 1ull << 30;
    else if (!suf.empty())
        return std::nullopt;
    if (v > ~0ull / mul)
        return std::nullopt;
    return v * mul;
}

} // namespace presnap
