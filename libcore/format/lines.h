// Line splitting for the text formats (probability map, history): '\n'
// separated, the last line may lack its newline.
#pragma once

#include <cstddef>
#include <string_view>

namespace presnap::analysis::detail {

// Sets `line` to the line starting at `pos` and moves `pos` past it; false at
// the end of `text`.
inline bool next_line(std::string_view text, size_t& pos, std::string_view& line) {
    if (pos >= text.size())
        return false;
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    line = text.substr(pos, end - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    return true;
}

} // namespace presnap::analysis::detail
