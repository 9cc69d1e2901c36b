// libFuzzer target for the probability-map text parser. Any input must be
// refused with a message, or give a map that the writer turns into text the
// parser reads back to the same text (one pass normalises numbers and drops
// unknown comment lines), and into JSON that is valid JSON.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "json.h"
#include "presnap/analysis/pmap.h"

using namespace presnap::analysis;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto map = parse_pmap_text(text, "fuzz.pmap");
    if (!map) {
        if (map.error().message.empty())
            std::abort();
        return 0;
    }
    std::string once = format_pmap_text(*map);
    auto again = parse_pmap_text(once, "once.pmap");
    if (!again || format_pmap_text(*again) != once)
        std::abort(); // the writer wrote what the reader refuses or reads differently
    json::Value v;
    std::string err;
    if (!json::parse(format_pmap_json(*map), v, err))
        std::abort(); // the JSON form is not JSON
    for (const auto& s : map->segments)
        for (const auto& t : s.tokens) {
            auto u = unescape_token(escape_token(t));
            if (!u || *u != t)
                std::abort();
        }
    return 0;
}
