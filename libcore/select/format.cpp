// The selection formats (docs/formats/selection.md) and --explain's text.
#include "presnap/select/select.h"

#include "../format/json.h"
#include "presnap/analysis/hash.h"

#include <algorithm>
#include <set>

namespace presnap::select {

namespace json = analysis::json;

std::string format_selection_header() {
    return "presnap-selection 1\n";
}

std::string format_selection_header_json() {
    return "{\"format\":\"presnap-selection\",\"version\":1}\n";
}

std::string format_selection_line(const Selection& s) {
    std::string out = "select";
    for (const auto& id : s.snapshots)
        out += " " + id;
    return out + "\n";
}

std::string format_selection_json(std::string_view request, const Selection& s) {
    std::string ids, path;
    for (size_t i = 0; i < s.snapshots.size(); i++)
        ids += (i ? "," : "") + json::quote(s.snapshots[i]);
    for (size_t i = 0; i < s.path.size(); i++)
        path += fmt::format("{}{{\"segment\":\"{}\",\"name\":{},\"p\":{:.3f}}}", i ? "," : "",
                            analysis::hex64(s.path[i].segment), json::quote(s.path[i].name),
                            s.path[i].probability);
    return fmt::format("{{\"type\":\"selection\",\"request\":{},\"snapshots\":[{}],\"path\":[{}],"
                       "\"saving_us\":{:.0f},\"bytes\":{},\"warm_all\":{},\"source\":\"{}\"}}\n",
                       json::quote(request), ids, path, s.expected_saving_us, s.bytes,
                       s.warm_all ? "true" : "false", s.source);
}

std::string format_explanation(std::string_view request, const Selection& s,
                               const SelectOptions& options) {
    std::string out = fmt::format("# request: {}\n", json::quote(request));
    if (s.source == "history")
        out +=
            fmt::format("# source: history ({} model, nearest example similarity {:.2f})\n",
                        s.user_model.empty() ? "everyone's"
                                             : fmt::format("user {}'s", json::quote(s.user_model)),
                        s.similarity);
    else
        out += "# source: static (the map's weights and route tokens)\n";
    if (s.path.empty())
        out += "# path: no library segment predicted\n";
    else {
        out += "# path:";
        for (const auto& p : s.path)
            out += fmt::format(" {} {:.2f}", p.name, p.probability);
        out += "\n";
    }
    out += fmt::format("# budget: max-bytes {}, page cost {:.3g} us\n",
                       options.max_bytes ? std::to_string(options.max_bytes) : "none",
                       options.page_cost_us);
    for (const auto& c : s.candidates)
        out += fmt::format(
            "# candidate {}: p {:.2f} x benefit {:.0f} us - pages {:.0f} us = {:.0f} "
            "us, {} bytes: {}\n",
            c.id, c.probability, c.benefit_us, c.page_cost_us, c.value_us, c.bytes, c.why);
    out += fmt::format("# warm-all: {}\n", s.warm_all_reason);
    out += fmt::format("# chosen: {} snapshot(s), {} bytes, expected saving {:.0f} us\n",
                       s.snapshots.size(), s.bytes, s.expected_saving_us);
    return out;
}

namespace {

std::unexpected<Error> bad(std::string_view name, size_t line, std::string msg) {
    return std::unexpected(Error{Errc::kFormat, std::move(msg), fmt::format("{}:{}", name, line)});
}

bool snapshot_id(std::string_view id) {
    if (id.size() < 2 || id[0] != 's')
        return false;
    for (char c : id.substr(1))
        if (c < '0' || c > '9')
            return false;
    return id.size() <= 12;
}

} // namespace

Result<std::vector<std::vector<std::string>>>
parse_selection(std::string_view text, std::string_view name, const library::Library* lib) {
    std::vector<std::vector<std::string>> out;
    bool header = false, is_json = false;
    size_t pos = 0, line_no = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        line_no++;
        if (line.empty() || line[0] == '#')
            continue;
        if (!header) {
            if (line == "presnap-selection 1") {
                header = true;
                continue;
            }
            json::Value v;
            std::string err;
            if (json::parse(line, v, err) && v.type == json::Value::Type::kObject) {
                const auto* f = v.find("format");
                const auto* ver = v.find("version");
                if (f && f->type == json::Value::Type::kString &&
                    f->string == "presnap-selection") {
                    if (!ver || ver->type != json::Value::Type::kNumber || ver->number != 1)
                        return bad(name, line_no, "unsupported selection version (expected 1)");
                    header = is_json = true;
                    continue;
                }
            }
            return bad(name, line_no,
                       "not a selection (expected 'presnap-selection 1' or its "
                       "JSON header first)");
        }
        std::vector<std::string> ids;
        if (is_json) {
            json::Value v;
            std::string err;
            if (!json::parse(line, v, err))
                return bad(name, line_no, "not JSON: " + err);
            const auto* type = v.find("type");
            if (!type || type->type != json::Value::Type::kString || type->string != "selection")
                continue; // other record types: ignored
            const auto* s = v.find("snapshots");
            if (!s || s->type != json::Value::Type::kArray)
                return bad(name, line_no, "missing 'snapshots' array");
            for (const auto& x : s->array) {
                if (x.type != json::Value::Type::kString)
                    return bad(name, line_no, "a snapshot id is not a string");
                ids.push_back(x.string);
            }
        } else {
            if (line.substr(0, 6) != "select" || (line.size() > 6 && line[6] != ' '))
                return bad(name, line_no,
                           fmt::format("expected 'select IDS...', found '{}'", line.substr(0, 40)));
            std::string_view rest = line.substr(std::min<size_t>(6, line.size()));
            while (!rest.empty()) {
                if (rest[0] != ' ' || rest.size() == 1)
                    return bad(name, line_no, "ids must be separated by single spaces");
                rest.remove_prefix(1);
                size_t sp = rest.find(' ');
                ids.emplace_back(rest.substr(0, sp));
                rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
            }
        }
        std::set<std::string> seen;
        for (const auto& id : ids) {
            if (!snapshot_id(id))
                return bad(name, line_no,
                           fmt::format("bad snapshot id '{}' (expected sNNN)", id.substr(0, 40)));
            if (lib && !lib->find(id))
                return bad(name, line_no, fmt::format("no snapshot {} in the library", id));
            if (!seen.insert(id).second)
                return bad(name, line_no, fmt::format("snapshot {} given twice", id));
        }
        // Writers list ids in manifest order; a reader with the library puts
        // them in it (found by the selection fuzzer: the order was taken as given).
        if (lib)
            std::sort(ids.begin(), ids.end(), [&](const std::string& a, const std::string& b) {
                return lib->find(a) < lib->find(b);
            });
        out.push_back(std::move(ids));
    }
    if (!header)
        return std::unexpected(Error{
            Errc::kFormat, "empty selection (expected 'presnap-selection 1')", std::string(name)});
    return out;
}

} // namespace presnap::select
