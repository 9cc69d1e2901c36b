// One checked reader for the JSON-lines files presnap writes and reads back:
// the library manifest and timings.jsonl, a shard's shard.jsonl, the
// selection model. Use it for any new one. It gives a bounded read of a
// regular file, the lines as JSON objects with "FILE:LINE:" on every error,
// and typed field getters whose checks are the same for every format: a
// count is an integer from 0 to 2^53, decided on the number's text, so a
// value no double holds exactly (2^53 + 1) or out of range (1e300) is
// refused and never cast. Private to libcore (not installed).
#pragma once

#include "json.h"
#include "presnap/error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace presnap::jsonl {

namespace json = analysis::json;

// The largest count and the largest magnitude of a signed integer: every
// integer up to it is a double exactly, so readers in any language agree.
inline constexpr uint64_t kMaxCount = uint64_t{1} << 53;

// The bytes of the regular file at `path` (not followed if a symlink; a FIFO
// or device is refused without blocking), refused past `max_bytes` even if
// it grows while being read. Errors carry `path` as their context.
Result<std::string> read_file(const std::string& path, uint64_t max_bytes);

// The value a JSON number's text denotes when it is an integer of magnitude
// at most `max_abs` (itself at most kMaxCount); nullopt for a fraction, a
// larger integer, or text that is not a JSON number. Decided on the text, not
// on the double: 9007199254740993 rounds to 2^53 as a double and is refused;
// 1e3, 1000.0 and -0 are integers.
std::optional<int64_t> exact_integer(std::string_view number_text, uint64_t max_abs = kMaxCount);

// A value's checked forms; nullopt when it is not one. These are the only
// conversions from a JSON number to an integer the readers use.
std::optional<double> as_number(const json::Value& v); // finite
std::optional<uint64_t> as_count(const json::Value& v, uint64_t max = kMaxCount);
std::optional<int64_t> as_integer(const json::Value& v); // |x| <= kMaxCount
std::optional<uint64_t> as_hex64(const json::Value& v);  // a string of 16 hex digits

// A value for a message: numbers as written, strings quoted; at most about
// 40 bytes (a hostile value may be megabytes).
std::string shown(const json::Value& v);
std::string shown(std::string_view string); // quoted, cut the same way

enum class Need { kRequired, kOptional };

// Typed access to one object's keys. The first problem is kept (as
// "\"KEY\" ..." text, without the line) and later getters return zero
// values, so a record is read in a straight line and checked once:
//     Fields f(obj);
//     e.pages = f.count("pages");
//     e.weight = f.number("weight");
//     if (!f.ok()) return lines.fail(f.error());
// An absent optional key gives the zero value (0, "", false, nullptr) and
// is no problem.
class Fields {
  public:
    explicit Fields(const json::Value& object) : obj_(object) {}

    bool has(std::string_view key) const;
    std::string string(std::string_view key, Need need = Need::kRequired);
    double number(std::string_view key, Need need = Need::kRequired);
    // An integer from `min` to `max` (max at most kMaxCount).
    uint64_t count(std::string_view key, Need need = Need::kRequired, uint64_t max = kMaxCount,
                   uint64_t min = 0);
    int64_t integer(std::string_view key, Need need = Need::kRequired);
    uint64_t hex64(std::string_view key, Need need = Need::kRequired);
    bool boolean(std::string_view key, Need need = Need::kRequired);
    // nullptr when absent (a problem if required) or of another type.
    const json::Value* object(std::string_view key, Need need = Need::kRequired);
    const json::Value* array(std::string_view key, Need need = Need::kRequired);

    // Records a problem of the caller's, unless one is already kept.
    void fail(std::string what);
    bool ok() const { return error_.empty(); }
    const std::string& error() const { return error_; }

  private:
    const json::Value* get(std::string_view key, json::Value::Type type, Need need);

    const json::Value& obj_;
    std::string error_;
};

// The lines of a JSON-lines text, each parsed as one JSON object (a
// duplicate key is refused: two readers could take different ones). Every
// error names "NAME:LINE".
class Lines {
  public:
    struct Options {
        bool skip_blank = false; // lines of only spaces, tabs and CRs are skipped
    };
    Lines(std::string_view text, std::string name) : Lines(text, std::move(name), Options{}) {}
    Lines(std::string_view text, std::string name, Options options)
        : text_(text), name_(std::move(name)), options_(options) {}

    // The next line's object in `out`: true, or false at the end of the text.
    // Refuses a last line without its newline (a cut file), a line that is
    // not JSON, and one that is not an object.
    Result<bool> next(json::Value& out);

    size_t line() const { return line_; } // of the last line read, 1-based
    const std::string& name() const { return name_; }

    // An error at the current line: context "NAME:LINE".
    std::unexpected<Error> fail(std::string what) const;
    // An error about the whole text: context "NAME".
    std::unexpected<Error> fail_file(std::string what) const;

  private:
    std::string_view text_;
    std::string name_;
    Options options_;
    size_t pos_ = 0;
    size_t line_ = 0;
};

} // namespace presnap::jsonl
