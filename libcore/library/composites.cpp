#include "presnap/library/composites.h"

#include <fmt/format.h>

#include <cstdint>

namespace presnap::library {
namespace {

constexpr size_t kHashHexDigits = 32;

bool is_hex(std::string_view s) {
    return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

} // namespace

std::string composites_dir(const Library& lib) {
    return lib.dir + "/composites";
}

std::string composite_file_name(std::string_view base_hash_hex, std::span<const std::string> ids) {
    std::string joined;
    for (const auto& id : ids)
        joined += (joined.empty() ? "" : "-") + id;
    if (joined.size() > kMaxJoinedIds) {
        uint64_t h = 0xcbf29ce484222325ull; // FNV-1a 64
        for (unsigned char c : joined)
            h = (h ^ c) * 0x100000001b3ull;
        joined = fmt::format("{}-x{:016x}", ids.size(), h);
    }
    return fmt::format("{}-{}.snap", base_hash_hex, joined);
}

std::optional<CompositeName> parse_composite_file_name(std::string_view name) {
    constexpr std::string_view kSuffix = ".snap";
    if (name.size() < kHashHexDigits + 2 + kSuffix.size() || name[kHashHexDigits] != '-' ||
        !name.ends_with(kSuffix))
        return std::nullopt;
    CompositeName out;
    out.base_hash_hex = std::string(name.substr(0, kHashHexDigits));
    if (!is_hex(out.base_hash_hex))
        return std::nullopt;
    std::string_view ids = name.substr(kHashHexDigits + 1);
    ids.remove_suffix(kSuffix.size());
    if (ids.size() > kMaxJoinedIds)
        return std::nullopt;
    while (!ids.empty()) {
        size_t dash = ids.find('-');
        std::string_view id = ids.substr(0, dash);
        // Library ids are "s" and digits; "x..." is a long set's hash.
        if (id.size() < 2 || id[0] != 's' ||
            id.substr(1).find_first_not_of("0123456789") != std::string_view::npos)
            return std::nullopt;
        out.ids.emplace_back(id);
        if (dash == std::string_view::npos)
            break;
        ids.remove_prefix(dash + 1);
        if (ids.empty()) // a trailing '-'
            return std::nullopt;
    }
    if (out.ids.empty())
        return std::nullopt;
    return out;
}

} // namespace presnap::library
