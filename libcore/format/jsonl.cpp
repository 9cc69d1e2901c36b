// The checked JSON-lines reader (jsonl.h).
#include "jsonl.h"

#include "presnap/analysis/hash.h"

#include <cerrno>
#include <cmath>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

namespace presnap::jsonl {

Result<std::string> read_file(const std::string& path, uint64_t max_bytes) {
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        if (err == ELOOP)
            return std::unexpected(
                Error{Errc::kFormat, "a symbolic link, not a regular file", path});
        return make_errno_error(Errc::kIo, err, "cannot open " + path);
    }
    struct Close {
        int fd;
        ~Close() { ::close(fd); }
    } close_fd{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        return make_errno_error(Errc::kIo, errno, "cannot stat " + path);
    if (!S_ISREG(st.st_mode))
        return std::unexpected(Error{Errc::kFormat, "not a regular file", path});
    auto too_large = [&](uint64_t size) {
        return std::unexpected(Error{Errc::kFormat,
                                     fmt::format("{} bytes, more than the limit of {}", size,
                                                 max_bytes % (1 << 20) == 0 && max_bytes
                                                     ? fmt::format("{} MiB", max_bytes >> 20)
                                                     : fmt::format("{} bytes", max_bytes)),
                                     path});
    };
    if (static_cast<uint64_t>(st.st_size) > max_bytes)
        return too_large(static_cast<uint64_t>(st.st_size));
    // Read to the end, one byte past the limit at most: the file may have
    // grown since fstat.
    std::string text(static_cast<size_t>(st.st_size) + 1, '\0');
    size_t got = 0;
    for (;;) {
        if (got == text.size()) {
            if (got > max_bytes)
                return too_large(got);
            text.resize(std::min<uint64_t>(max_bytes + 1, uint64_t(text.size()) * 2 + 4096));
        }
        ssize_t n = ::read(fd, text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return make_errno_error(Errc::kIo, errno, "cannot read " + path);
        if (n == 0)
            break;
        got += static_cast<size_t>(n);
    }
    text.resize(got);
    return text;
}

std::optional<int64_t> exact_integer(std::string_view s, uint64_t max_abs) {
    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? as JSON writes numbers.
    size_t i = 0;
    bool negative = i < s.size() && s[i] == '-';
    if (negative)
        i++;
    auto digit = [&](size_t at) { return at < s.size() && s[at] >= '0' && s[at] <= '9'; };
    size_t int_begin = i;
    while (digit(i))
        i++;
    std::string_view int_digits = s.substr(int_begin, i - int_begin);
    std::string_view frac_digits;
    if (int_digits.empty())
        return std::nullopt;
    if (i < s.size() && s[i] == '.') {
        size_t b = ++i;
        while (digit(i))
            i++;
        frac_digits = s.substr(b, i - b);
        if (frac_digits.empty())
            return std::nullopt;
    }
    int64_t exp = 0; // saturated: past a million digits the answer is the same
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool exp_negative = i < s.size() && s[i] == '-';
        if (i < s.size() && (s[i] == '-' || s[i] == '+'))
            i++;
        if (!digit(i))
            return std::nullopt;
        while (digit(i)) {
            exp = std::min<int64_t>(exp * 10 + (s[i] - '0'), 1'000'000'000);
            i++;
        }
        if (exp_negative)
            exp = -exp;
    }
    if (i != s.size())
        return std::nullopt;
    // The significant digits D (integer and fraction digits, leading and
    // trailing zeros dropped) and the power of ten they are scaled by.
    std::string digits;
    digits.reserve(std::min<size_t>(int_digits.size() + frac_digits.size(), 64));
    int64_t scale = exp - static_cast<int64_t>(frac_digits.size());
    bool leading = true;
    size_t zeros = 0; // trailing zeros seen and not yet appended
    for (std::string_view part : {int_digits, frac_digits}) {
        for (char c : part) {
            if (leading && c == '0')
                continue;
            leading = false;
            if (c == '0') {
                zeros++;
                continue;
            }
            if (digits.size() + zeros > 17)
                return std::nullopt; // more than 17 significant digits: above 2^53 or a fraction
            digits.append(zeros, '0');
            zeros = 0;
            digits.push_back(c);
        }
    }
    scale += static_cast<int64_t>(zeros); // trailing zeros are a power of ten
    if (digits.empty())
        return 0; // zero, however written (-0, 0.000e5)
    if (scale < 0)
        return std::nullopt; // a fraction: its last significant digit is past the point
    if (static_cast<int64_t>(digits.size()) + scale > 16)
        return std::nullopt; // 17 digits or more: at least 10^16 > 2^53
    uint64_t value = 0;
    for (char c : digits)
        value = value * 10 + static_cast<uint64_t>(c - '0');
    for (int64_t k = 0; k < scale; k++)
        value *= 10;
    if (value > std::min(max_abs, kMaxCount))
        return std::nullopt;
    return negative ? -static_cast<int64_t>(value) : static_cast<int64_t>(value);
}

std::optional<double> as_number(const json::Value& v) {
    if (v.type != json::Value::Type::kNumber || !std::isfinite(v.number))
        return std::nullopt;
    return v.number;
}

std::optional<uint64_t> as_count(const json::Value& v, uint64_t max) {
    if (v.type != json::Value::Type::kNumber)
        return std::nullopt;
    auto n = exact_integer(v.string, max);
    if (!n || *n < 0)
        return std::nullopt;
    return static_cast<uint64_t>(*n);
}

std::optional<int64_t> as_integer(const json::Value& v) {
    if (v.type != json::Value::Type::kNumber)
        return std::nullopt;
    return exact_integer(v.string);
}

std::optional<uint64_t> as_hex64(const json::Value& v) {
    if (v.type != json::Value::Type::kString)
        return std::nullopt;
    return analysis::parse_hex64(v.string);
}

namespace {
constexpr size_t kShownBytes = 40;
}

std::string shown(std::string_view string) {
    return json::quote(string.substr(0, kShownBytes)) + (string.size() > kShownBytes ? "..." : "");
}

std::string shown(const json::Value& v) {
    switch (v.type) {
    case json::Value::Type::kNumber:
        return v.string.size() > kShownBytes ? v.string.substr(0, kShownBytes) + "..." : v.string;
    case json::Value::Type::kString:
        return shown(std::string_view(v.string));
    case json::Value::Type::kBool:
        return v.boolean ? "true" : "false";
    default:
        return std::string(json::type_name(v.type));
    }
}

// ---- Fields ----

namespace {

std::string_view a_type(json::Value::Type t) {
    switch (t) {
    case json::Value::Type::kArray:
        return "an array";
    case json::Value::Type::kObject:
        return "an object";
    case json::Value::Type::kNull:
        return "null";
    case json::Value::Type::kBool:
        return "a boolean";
    case json::Value::Type::kNumber:
        return "a number";
    case json::Value::Type::kString:
        return "a string";
    }
    return "?";
}

} // namespace

bool Fields::has(std::string_view key) const {
    return obj_.find(std::string(key)) != nullptr;
}

void Fields::fail(std::string what) {
    if (error_.empty())
        error_ = std::move(what);
}

const json::Value* Fields::get(std::string_view key, json::Value::Type type, Need need) {
    if (!ok())
        return nullptr;
    const json::Value* v = obj_.find(std::string(key));
    if (!v) {
        if (need == Need::kRequired)
            fail(fmt::format("missing key \"{}\"", key));
        return nullptr;
    }
    if (v->type != type) {
        fail(fmt::format("\"{}\" is {}, expected {}", key, a_type(v->type), a_type(type)));
        return nullptr;
    }
    return v;
}

std::string Fields::string(std::string_view key, Need need) {
    const json::Value* v = get(key, json::Value::Type::kString, need);
    return v ? v->string : std::string();
}

double Fields::number(std::string_view key, Need need) {
    const json::Value* v = get(key, json::Value::Type::kNumber, need);
    if (!v)
        return 0;
    auto d = as_number(*v);
    if (!d)
        fail(fmt::format("\"{}\" is not a finite number (found {})", key, shown(*v)));
    return d.value_or(0);
}

uint64_t Fields::count(std::string_view key, Need need, uint64_t max, uint64_t min) {
    const json::Value* v = get(key, json::Value::Type::kNumber, need);
    if (!v)
        return 0;
    auto n = as_count(*v, max);
    if (!n || *n < min) {
        fail(fmt::format("\"{}\" is not a count (expected an integer from {} to {}, found {})", key,
                         min, std::min(max, kMaxCount), shown(*v)));
        return 0;
    }
    return *n;
}

int64_t Fields::integer(std::string_view key, Need need) {
    const json::Value* v = get(key, json::Value::Type::kNumber, need);
    if (!v)
        return 0;
    auto n = as_integer(*v);
    if (!n)
        fail(fmt::format("\"{}\" is not an integer (expected one from -{} to {}, found {})", key,
                         kMaxCount, kMaxCount, shown(*v)));
    return n.value_or(0);
}

uint64_t Fields::hex64(std::string_view key, Need need) {
    const json::Value* v = get(key, json::Value::Type::kString, need);
    if (!v)
        return 0;
    auto h = as_hex64(*v);
    if (!h)
        fail(fmt::format("\"{}\" is not 16 hex digits (found {})", key, shown(*v)));
    return h.value_or(0);
}

bool Fields::boolean(std::string_view key, Need need) {
    const json::Value* v = get(key, json::Value::Type::kBool, need);
    return v && v->boolean;
}

const json::Value* Fields::object(std::string_view key, Need need) {
    return get(key, json::Value::Type::kObject, need);
}

const json::Value* Fields::array(std::string_view key, Need need) {
    return get(key, json::Value::Type::kArray, need);
}

// ---- Lines ----

Result<bool> Lines::next(json::Value& out) {
    for (;;) {
        if (pos_ >= text_.size())
            return false;
        size_t end = text_.find('\n', pos_);
        ++line_;
        if (end == std::string_view::npos)
            return fail("the last line has no newline (a cut file?)");
        std::string_view line = text_.substr(pos_, end - pos_);
        pos_ = end + 1;
        if (options_.skip_blank && line.find_first_not_of(" \t\r") == std::string_view::npos)
            continue;
        std::string err;
        if (!json::parse(line, out, err, {.unique_keys = true}))
            return fail("not JSON: " + err);
        if (out.type != json::Value::Type::kObject)
            return fail(fmt::format("expected a JSON object, found {}", a_type(out.type)));
        return true;
    }
}

std::unexpected<Error> Lines::fail(std::string what) const {
    return std::unexpected(
        Error{Errc::kFormat, std::move(what), fmt::format("{}:{}", name_, line_)});
}

std::unexpected<Error> Lines::fail_file(std::string what) const {
    return std::unexpected(Error{Errc::kFormat, std::move(what), name_});
}

} // namespace presnap::jsonl
