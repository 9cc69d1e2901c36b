// Request features (docs/formats/model.md, "Features"). Cheap on purpose: one
// pass over the bytes, plus a JSON parse when the request looks like JSON.
#include "presnap/select/select.h"

#include "../format/json.h"

#include <algorithm>
#include <bit>

namespace presnap::select {

namespace {

bool word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c >= 0x80;
}

bool all_digits(std::string_view w) {
    if (!w.empty() && w[0] == '-')
        w.remove_prefix(1);
    return !w.empty() &&
           std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void add_word(std::vector<std::string>& out, std::string_view w) {
    if (w.size() > 64)
        w = w.substr(0, 64);
    out.push_back("w:" + std::string(w));
    if (all_digits(w))
        out.push_back("n:" + std::to_string(w.size()));
}

void add_json(std::vector<std::string>& out, const analysis::json::Value& v,
              const std::string& path, int depth) {
    using T = analysis::json::Value::Type;
    if (depth > 8 || out.size() > kMaxExampleFeatures)
        return;
    switch (v.type) {
    case T::kObject:
        for (const auto& [k, member] : v.object) {
            std::string key = path.empty() ? k : path + "." + k;
            if (key.size() > 64)
                key.resize(64);
            out.push_back("k:" + key);
            add_json(out, member, key, depth + 1);
        }
        break;
    case T::kArray:
        for (size_t i = 0; i < v.array.size() && i < 16; i++)
            add_json(out, v.array[i], path + "[]", depth + 1);
        break;
    case T::kString:
        out.push_back("kv:" + path + "=" + v.string.substr(0, 64));
        break;
    case T::kNumber:
        out.push_back("kv:" + path + "=" + v.string.substr(0, 32));
        break;
    case T::kBool:
        out.push_back("kv:" + path + "=" + (v.boolean ? "true" : "false"));
        break;
    case T::kNull:
        out.push_back("kv:" + path + "=null");
        break;
    }
}

} // namespace

std::vector<std::string> request_features(std::string_view request) {
    while (!request.empty() && (request.back() == '\n' || request.back() == '\r'))
        request.remove_suffix(1);
    std::vector<std::string> out;
    // Length bucket: the bit width of the length (0, 1, 2-3, 4-7 ...).
    out.push_back("len:" + std::to_string(std::bit_width(request.size())));
    bool first = true;
    size_t words = 0;
    for (size_t i = 0; i < request.size() && words < 128;) {
        if (!word_byte(static_cast<unsigned char>(request[i]))) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < request.size() && word_byte(static_cast<unsigned char>(request[j])))
            j++;
        std::string_view w = request.substr(i, j - i);
        if (first) {
            out.push_back("f:" + std::string(w.substr(0, 64)));
            first = false;
        }
        add_word(out, w);
        words++;
        i = j;
    }
    if (first)
        out.push_back(request.empty() ? "empty" : "f:");
    // JSON: the line itself, or a JSON body after a command word
    // ("acme {\"op\":...}"): the text from the first '{' or '['.
    size_t start = request.find_first_of("{[");
    if (start != std::string_view::npos) {
        analysis::json::Value v;
        std::string err;
        if (analysis::json::parse(request.substr(start), v, err))
            add_json(out, v, "", 0);
        else
            out.push_back("json:bad");
    }
    for (auto& f : out)
        if (f.size() > kMaxFeatureBytes)
            f.resize(kMaxFeatureBytes);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    if (out.size() > kMaxExampleFeatures)
        out.resize(kMaxExampleFeatures);
    return out;
}

} // namespace presnap::select
