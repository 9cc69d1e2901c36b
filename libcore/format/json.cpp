// The history and pmap formats' JSON, through nlohmann-json (Debian
// nlohmann-json3-dev): its SAX parser builds the small Value tree the
// format readers walk, and its serializer writes strings. What is ours is
// only what the formats add: strings carry bytes, one code point each
// (docs/formats/history.md), and nesting is limited.
#include "json.h"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

namespace presnap::analysis::json {

std::string_view type_name(Value::Type t) {
    switch (t) {
    case Value::Type::kNull:
        return "null";
    case Value::Type::kBool:
        return "boolean";
    case Value::Type::kNumber:
        return "number";
    case Value::Type::kString:
        return "string";
    case Value::Type::kArray:
        return "array";
    case Value::Type::kObject:
        return "object";
    }
    return "?";
}

namespace {

constexpr size_t kMaxDepth = 64;
constexpr size_t kMaxMessage = 160; // bytes of the parser's own message kept

// UTF-8 (what the parser returns) back to bytes, one per code point
// U+0000..U+00FF; false for a code point above U+00FF.
bool code_points_to_bytes(const std::string& utf8, std::string& out) {
    out.clear();
    for (size_t i = 0; i < utf8.size(); ++i) {
        auto c = static_cast<unsigned char>(utf8[i]);
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
        } else if ((c & 0xe0) == 0xc0 && i + 1 < utf8.size()) {
            unsigned cp = (c & 0x1fu) << 6 | (static_cast<unsigned char>(utf8[++i]) & 0x3fu);
            if (cp > 0xff)
                return false;
            out.push_back(static_cast<char>(cp));
        } else {
            return false; // three or four bytes: above U+07FF
        }
    }
    return true;
}

// Builds a Value; the first problem stops the parse with its message.
class Builder final : public nlohmann::json_sax<nlohmann::json> {
  public:
    Builder(Value& root, ParseOptions options) : root_(root), options_(options) {}

    bool null() override { return put(Value{}); }
    bool boolean(bool b) override {
        Value v;
        v.type = Value::Type::kBool;
        v.boolean = b;
        return put(std::move(v));
    }
    bool number_integer(number_integer_t n) override {
        return number(static_cast<double>(n), std::to_string(n));
    }
    bool number_unsigned(number_unsigned_t n) override {
        return number(static_cast<double>(n), std::to_string(n));
    }
    bool number_float(number_float_t d, const string_t& raw) override { return number(d, raw); }
    bool string(string_t& s) override {
        Value v;
        v.type = Value::Type::kString;
        if (!code_points_to_bytes(s, v.string))
            return stop("string escape above \\u00ff (strings carry bytes)");
        return put(std::move(v));
    }
    bool binary(binary_t&) override { return stop("binary value"); }
    bool start_object(std::size_t) override { return open(Value::Type::kObject); }
    bool key(string_t& k) override {
        if (!code_points_to_bytes(k, key_))
            return stop("key escape above \\u00ff (strings carry bytes)");
        if (options_.unique_keys && stack_.back()->object.contains(key_))
            return stop(fmt::format("key {}{} twice in one object", quote(key_.substr(0, 40)),
                                    key_.size() > 40 ? "..." : ""));
        return true;
    }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(Value::Type::kArray); }
    bool end_array() override { return close(); }
    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception& ex) override {
        // nlohmann's position counts the bytes read, the offending one included.
        column_ = position == 0 ? 1 : position;
        msg_ = ex.what();
        // "[json.exception.parse_error.101] parse error at line 1, column 19: what"
        // or "[json.exception.out_of_range.406] number overflow parsing '1e400'"
        if (auto at = msg_.find("] "); msg_.starts_with("[json.exception.") && at != msg_.npos)
            msg_ = msg_.substr(at + 2);
        if (auto at = msg_.find(": "); msg_.starts_with("parse error") && at != std::string::npos)
            msg_ = msg_.substr(at + 2);
        if (auto at = msg_.find(": "); msg_.starts_with("syntax error") && at != std::string::npos)
            msg_ = msg_.substr(at + 2);
        // It quotes what it read ("number overflow parsing '1000...'"),
        // which may be the whole line.
        if (msg_.size() > kMaxMessage)
            msg_ = msg_.substr(0, kMaxMessage) + "...";
        return false;
    }

    // A limit of ours (depth, escapes) stops the parse without a position.
    std::string error() const {
        return column_ ? fmt::format("column {}: {}", column_, msg_) : msg_;
    }

  private:
    bool stop(std::string why) {
        msg_ = std::move(why);
        return false;
    }
    bool number(double d, std::string raw) {
        Value v;
        v.type = Value::Type::kNumber;
        v.number = d;
        v.string = std::move(raw);
        return put(std::move(v));
    }
    // Puts a finished value where it belongs: the root, an array, or under
    // the last key of an object.
    Value* put_slot(Value v) {
        if (stack_.empty()) {
            root_ = std::move(v);
            return &root_;
        }
        Value& parent = *stack_.back();
        if (parent.type == Value::Type::kArray) {
            parent.array.push_back(std::move(v));
            return &parent.array.back();
        }
        Value& slot = parent.object[key_];
        slot = std::move(v);
        return &slot;
    }
    bool put(Value v) {
        put_slot(std::move(v));
        return true;
    }
    bool open(Value::Type t) {
        if (stack_.size() >= kMaxDepth)
            return stop(fmt::format("nested deeper than {} levels", kMaxDepth));
        Value v;
        v.type = t;
        stack_.push_back(put_slot(std::move(v)));
        return true;
    }
    bool close() {
        stack_.pop_back();
        return true;
    }

    Value& root_;
    ParseOptions options_;
    std::vector<Value*> stack_; // open arrays and objects; a child never moves its parent
    std::string key_;
    size_t column_ = 0;
    std::string msg_;
};

} // namespace

bool parse(std::string_view text, Value& out, std::string& err, ParseOptions options) {
    out = Value{};
    Builder b(out, options);
    if (nlohmann::json::sax_parse(text.begin(), text.end(), &b))
        return true;
    err = b.error();
    return false;
}

std::string quote(std::string_view bytes) {
    // Each byte is one code point (docs/formats/history.md): as UTF-8 for
    // the serializer, which writes every code point above U+007F as \u00XX.
    std::string utf8;
    utf8.reserve(bytes.size());
    for (unsigned char c : bytes) {
        if (c < 0x80) {
            utf8.push_back(static_cast<char>(c));
        } else {
            utf8.push_back(static_cast<char>(0xc0 | c >> 6));
            utf8.push_back(static_cast<char>(0x80 | (c & 0x3f)));
        }
    }
    std::string s = nlohmann::json(std::move(utf8)).dump(-1, ' ', /*ensure_ascii=*/true);
    // The format writes DEL as \u007f too; a raw 0x7f can only be in a string.
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c == '\x7f')
            out += "\\u007f";
        else
            out.push_back(c);
    }
    return out;
}

} // namespace presnap::analysis::json
