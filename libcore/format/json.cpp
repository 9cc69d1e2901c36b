#include "json.h"

#include <cerrno>
#include <cstdlib>

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

class Parser {
  public:
    explicit Parser(std::string_view t) : t_(t) {}

    bool document(Value& out, std::string& err) {
        if (!value(out, 0))
            return fail(err);
        skip_ws();
        if (pos_ != t_.size()) {
            msg_ = "trailing characters after the JSON value";
            return fail(err);
        }
        return true;
    }

  private:
    static constexpr int kMaxDepth = 64;

    bool fail(std::string& err) {
        err = fmt::format("column {}: {}", pos_ + 1, msg_);
        return false;
    }
    void skip_ws() {
        while (pos_ < t_.size() &&
               (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\r' || t_[pos_] == '\n'))
            pos_++;
    }
    bool expect_word(std::string_view w) {
        if (t_.substr(pos_, w.size()) != w) {
            msg_ = fmt::format("invalid literal (expected {})", w);
            return false;
        }
        pos_ += w.size();
        return true;
    }
    bool value(Value& v, int depth) {
        if (depth > kMaxDepth) {
            msg_ = "nesting too deep";
            return false;
        }
        skip_ws();
        if (pos_ >= t_.size()) {
            msg_ = "unexpected end of line (expected a value)";
            return false;
        }
        char c = t_[pos_];
        if (c == '{')
            return object(v, depth);
        if (c == '[')
            return array(v, depth);
        if (c == '"') {
            v.type = Value::Type::kString;
            return string(v.string);
        }
        if (c == 't') {
            v.type = Value::Type::kBool;
            v.boolean = true;
            return expect_word("true");
        }
        if (c == 'f') {
            v.type = Value::Type::kBool;
            return expect_word("false");
        }
        if (c == 'n') {
            v.type = Value::Type::kNull;
            return expect_word("null");
        }
        if (c == '-' || (c >= '0' && c <= '9'))
            return number(v);
        msg_ = fmt::format("unexpected character '{}'", c);
        return false;
    }
    bool number(Value& v) {
        size_t start = pos_;
        if (t_[pos_] == '-')
            pos_++;
        while (pos_ < t_.size() &&
               ((t_[pos_] >= '0' && t_[pos_] <= '9') || t_[pos_] == '.' || t_[pos_] == 'e' ||
                t_[pos_] == 'E' || t_[pos_] == '+' || t_[pos_] == '-'))
            pos_++;
        v.type = Value::Type::kNumber;
        v.string = std::string(t_.substr(start, pos_ - start));
        char* end = nullptr;
        errno = 0;
        v.number = std::strtod(v.string.c_str(), &end);
        if (end != v.string.c_str() + v.string.size() || errno == ERANGE) {
            pos_ = start;
            msg_ = fmt::format("invalid number '{}'", v.string);
            return false;
        }
        return true;
    }
    static int hexval(char c) {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    }
    bool string(std::string& out) {
        pos_++; // opening quote
        out.clear();
        while (pos_ < t_.size()) {
            char c = t_[pos_++];
            if (c == '"')
                return true;
            if (static_cast<unsigned char>(c) < 0x20) {
                pos_--;
                msg_ = "control character in string";
                return false;
            }
            if (c != '\\') {
                out.push_back(c);
                continue;
            }
            if (pos_ >= t_.size())
                break;
            char e = t_[pos_++];
            switch (e) {
            case '"':
                out.push_back('"');
                break;
            case '\\':
                out.push_back('\\');
                break;
            case '/':
                out.push_back('/');
                break;
            case 'b':
                out.push_back('\b');
                break;
            case 'f':
                out.push_back('\f');
                break;
            case 'n':
                out.push_back('\n');
                break;
            case 'r':
                out.push_back('\r');
                break;
            case 't':
                out.push_back('\t');
                break;
            case 'u': {
                unsigned cp = 0;
                for (int i = 0; i < 4; i++) {
                    int h = pos_ < t_.size() ? hexval(t_[pos_]) : -1;
                    if (h < 0) {
                        msg_ = "invalid \\u escape";
                        return false;
                    }
                    cp = cp * 16 + static_cast<unsigned>(h);
                    pos_++;
                }
                // Strings in presnap formats carry bytes: one code point per
                // byte (history.md), so only U+0000..U+00FF are meaningful.
                if (cp > 0xff) {
                    msg_ = fmt::format("escape \\u{:04x} is not a byte (expected at most \\u00ff)",
                                       cp);
                    return false;
                }
                out.push_back(static_cast<char>(cp));
                break;
            }
            default:
                msg_ = fmt::format("invalid escape '\\{}'", e);
                return false;
            }
        }
        msg_ = "unterminated string";
        return false;
    }
    bool array(Value& v, int depth) {
        v.type = Value::Type::kArray;
        pos_++;
        skip_ws();
        if (pos_ < t_.size() && t_[pos_] == ']') {
            pos_++;
            return true;
        }
        for (;;) {
            Value item;
            if (!value(item, depth + 1))
                return false;
            v.array.push_back(std::move(item));
            skip_ws();
            if (pos_ < t_.size() && t_[pos_] == ',') {
                pos_++;
                continue;
            }
            if (pos_ < t_.size() && t_[pos_] == ']') {
                pos_++;
                return true;
            }
            msg_ = "expected ',' or ']' in array";
            return false;
        }
    }
    bool object(Value& v, int depth) {
        v.type = Value::Type::kObject;
        pos_++;
        skip_ws();
        if (pos_ < t_.size() && t_[pos_] == '}') {
            pos_++;
            return true;
        }
        for (;;) {
            skip_ws();
            if (pos_ >= t_.size() || t_[pos_] != '"') {
                msg_ = "expected a string key in object";
                return false;
            }
            std::string key;
            if (!string(key))
                return false;
            skip_ws();
            if (pos_ >= t_.size() || t_[pos_] != ':') {
                msg_ = "expected ':' after key";
                return false;
            }
            pos_++;
            Value item;
            if (!value(item, depth + 1))
                return false;
            v.object[key] = std::move(item);
            skip_ws();
            if (pos_ < t_.size() && t_[pos_] == ',') {
                pos_++;
                continue;
            }
            if (pos_ < t_.size() && t_[pos_] == '}') {
                pos_++;
                return true;
            }
            msg_ = "expected ',' or '}' in object";
            return false;
        }
    }

    std::string_view t_;
    size_t pos_ = 0;
    std::string msg_;
};

} // namespace

bool parse(std::string_view text, Value& out, std::string& err) {
    out = Value{};
    return Parser(text).document(out, err);
}

std::string quote(std::string_view bytes) {
    std::string s = "\"";
    for (unsigned char c : bytes) {
        switch (c) {
        case '"':
            s += "\\\"";
            break;
        case '\\':
            s += "\\\\";
            break;
        case '\n':
            s += "\\n";
            break;
        case '\r':
            s += "\\r";
            break;
        case '\t':
            s += "\\t";
            break;
        default:
            if (c < 0x20 || c >= 0x7f)
                s += fmt::format("\\u{:04x}", c);
            else
                s.push_back(static_cast<char>(c));
        }
    }
    s += '"';
    return s;
}

} // namespace presnap::analysis::json
