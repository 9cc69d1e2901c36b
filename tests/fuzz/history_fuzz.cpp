// libFuzzer target for the history parser. Any input must be refused with a
// message, or give records that the writer turns into lines the parser reads
// back to the same lines (one pass normalises numbers and drops unknown
// record types). Non-strict parsing must never fail where strict succeeds.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "presnap/analysis/history.h"

using namespace presnap::analysis;

namespace {

std::string format_all(const History& h) {
    std::string s = format_history_header(h.header);
    for (const auto& seg : h.segments)
        s += format_history_segment(seg);
    for (const auto& r : h.requests)
        s += format_history_request(r, SIZE_MAX);
    return s;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto lenient = parse_history(text, "fuzz.history", false);
    auto strict = parse_history(text, "fuzz.history", true);
    if (!strict) {
        if (strict.error().message.empty())
            std::abort();
        return 0;
    }
    if (!lenient || lenient->skipped != 0)
        std::abort();
    std::string once = format_all(*strict);
    auto again = parse_history(once, "once.history", true);
    if (!again || format_all(*again) != once)
        std::abort(); // the writer wrote what the reader refuses or reads differently
    return 0;
}
