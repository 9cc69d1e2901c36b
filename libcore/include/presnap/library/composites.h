// The names of the composites a library keeps in DIR/composites/
// (docs/formats/composites.md): one owner for the name's form, written by
// merge::make_composite and read back by select::Selector, which prefers a
// set that is already there.
#pragma once

#include "presnap/library/library.h"

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace presnap::library {

// Sets whose joined ids are longer than this are named by a hash of them.
inline constexpr size_t kMaxJoinedIds = 160;

// DIR/composites
std::string composites_dir(const Library& lib);

// "<base content hash, 32 hex digits>-<ids joined by '-'>.snap"; a long set:
// "<base hash>-<number of ids>-x<FNV-1a 64 of the joined ids, 16 hex>.snap".
std::string composite_file_name(std::string_view base_hash_hex, std::span<const std::string> ids);

// What a composite's file name says: the base's hash and the ids, as
// written. Empty for any other name, and for a long set (named by a hash, its
// ids cannot be read back).
struct CompositeName {
    std::string base_hash_hex;
    std::vector<std::string> ids;
};
std::optional<CompositeName> parse_composite_file_name(std::string_view name);

} // namespace presnap::library
