// A minimal JSON reader and string writer for the history and pmap formats.
// Private to libcore/analysis: it handles exactly what those formats need
// (objects, arrays, strings, numbers, true/false/null) and reports the first
// problem with its byte column.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace presnap::analysis::json {

struct Value {
    enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type = Type::kNull;
    bool boolean = false;
    double number = 0;
    std::string string; // also the raw text of a number
    std::vector<Value> array;
    std::map<std::string, Value> object;

    const Value* find(const std::string& key) const {
        auto it = object.find(key);
        return it == object.end() ? nullptr : &it->second;
    }
};

std::string_view type_name(Value::Type t);

struct ParseOptions {
    // Refuse an object with a key twice (by default the last one is kept).
    bool unique_keys = false;
};

// Parses one JSON document; on failure returns false and sets `err` to a
// lowercase message naming the column.
bool parse(std::string_view text, Value& out, std::string& err, ParseOptions options = {});

// Writes `bytes` as a JSON string literal; bytes >= 0x80 and control bytes
// become \u00XX (each byte is one code point, see history.md).
std::string quote(std::string_view bytes);

} // namespace presnap::analysis::json
