#include "presnap/merge/selection_input.h"

#include <nlohmann/json.hpp>

namespace presnap::merge {

namespace {

// The string under `key`, "" when absent or not a string: nlohmann's
// value(key, "") throws (and snapmerge aborted) when it is another type.
std::string string_at(const nlohmann::json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

} // namespace

Result<std::vector<std::vector<std::string>>> parse_selections(std::string_view text) {
    std::vector<std::vector<std::string>> out;
    bool json = false, header = false;
    size_t line_no = 0;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        line_no++;
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.empty() || line[0] == '#')
            continue;
        if (!header) {
            header = true;
            if (line == "presnap-selection 1")
                continue;
            json = line[0] == '{';
            if (json) {
                auto h = nlohmann::json::parse(line, nullptr, false);
                if (h.is_object() && string_at(h, "format") == "presnap-selection" &&
                    h.contains("version") && h["version"] == 1)
                    continue;
            }
            return make_error(Errc::kFormat,
                              "line {}: expected the header 'presnap-selection 1' or "
                              "{{\"format\":\"presnap-selection\",\"version\":1}}, found '{}'",
                              line_no, std::string(line.substr(0, 60)));
        }
        std::vector<std::string> ids;
        if (json) {
            auto v = nlohmann::json::parse(line, nullptr, false);
            if (!v.is_object())
                return make_error(Errc::kFormat, "line {}: not a JSON object", line_no);
            if (string_at(v, "type") != "selection")
                continue; // other record types are for other readers
            if (!v.contains("snapshots") || !v["snapshots"].is_array())
                return make_error(Errc::kFormat, "line {}: a selection without \"snapshots\"",
                                  line_no);
            for (const auto& s : v["snapshots"]) {
                if (!s.is_string())
                    return make_error(Errc::kFormat, "line {}: a snapshot id is not a string",
                                      line_no);
                ids.push_back(s.get<std::string>());
            }
        } else {
            if (line.substr(0, 6) != "select" || (line.size() > 6 && line[6] != ' '))
                return make_error(Errc::kFormat, "line {}: expected 'select ID...', found '{}'",
                                  line_no, std::string(line.substr(0, 60)));
            std::string_view rest = line.size() > 6 ? line.substr(7) : std::string_view{};
            while (!rest.empty()) {
                size_t sp = rest.find(' ');
                std::string_view id = rest.substr(0, sp);
                if (id.empty())
                    return make_error(Errc::kFormat, "line {}: empty id (two spaces)", line_no);
                ids.emplace_back(id);
                rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
            }
        }
        if (ids.size() > kMaxSelectionIds)
            return make_error(Errc::kFormat, "line {}: {} ids (at most {})", line_no, ids.size(),
                              kMaxSelectionIds);
        out.push_back(std::move(ids));
    }
    if (!header)
        return make_error(Errc::kFormat, "no selection (empty input)");
    return out;
}

} // namespace presnap::merge
