// The history format (docs/formats/history.md): writer and reader.
#include "presnap/analysis/history.h"

#include <fmt/format.h>

#include "json.h"
#include "lines.h"
#include "presnap/analysis/hash.h"

namespace presnap::analysis {

std::string hex64(uint64_t v) {
    return fmt::format("{:016x}", v);
}

std::optional<uint64_t> parse_hex64(std::string_view s) {
    if (s.size() != 16)
        return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return std::nullopt;
        v = v << 4 | static_cast<uint64_t>(d);
    }
    return v;
}

std::string format_history_header(const HistoryHeader& h) {
    std::string s = fmt::format("{{\"format\":\"presnap-history\",\"version\":{},\"program\":{}",
                                h.version, json::quote(h.program));
    if (!h.program_hash.empty())
        s += fmt::format(",\"program_hash\":{}", json::quote(h.program_hash));
    return s + "}\n";
}

std::string format_history_segment(const HistorySegment& seg) {
    return fmt::format("{{\"type\":\"segment\",\"id\":\"{}\",\"sid\":\"{}\",\"name\":{}}}\n",
                       hex64(seg.id), hex64(seg.sid), json::quote(seg.name));
}

std::string format_history_request(HistoryRequest r, size_t max_bytes) {
    if (r.length < r.bytes.size())
        r.length = r.bytes.size();
    if (r.bytes.size() > max_bytes) {
        r.bytes.resize(max_bytes);
        r.truncated = true;
    }
    if (r.bytes.size() < r.length)
        r.truncated = true;
    std::string segs;
    for (size_t i = 0; i < r.segments.size(); i++)
        segs += fmt::format("{}\"{}\"", i ? "," : "", hex64(r.segments[i]));
    std::string extra;
    if (r.index)
        extra += fmt::format(",\"index\":{}", *r.index);
    if (r.response_len)
        extra += fmt::format(",\"response_len\":{}", *r.response_len);
    if (r.failed)
        extra += fmt::format(",\"failed\":{}", *r.failed ? "true" : "false");
    if (!r.user.empty())
        extra += fmt::format(",\"user\":{}", json::quote(r.user));
    return fmt::format(
        "{{\"type\":\"request\",\"seq\":{},\"hash\":\"{}\",\"len\":{},\"bytes\":{},"
        "\"truncated\":{},\"segments\":[{}],\"latency_us\":{:.3f},\"snapshot\":{}{}}}\n",
        r.seq, hex64(r.hash), r.length, json::quote(r.bytes), r.truncated ? "true" : "false", segs,
        r.latency_us, json::quote(r.snapshot), extra);
}

namespace {

using json::Value;

std::unexpected<Error> bad(std::string ctx, std::string msg) {
    return std::unexpected(Error{Errc::kFormat, std::move(msg), std::move(ctx)});
}

// Field accessors: each failure says which field and what it found.
Result<const Value*> field(const Value& obj, const std::string& key, Value::Type t, bool required,
                           const std::string& ctx) {
    const Value* v = obj.find(key);
    if (!v) {
        if (required)
            return bad(ctx, fmt::format("missing field '{}'", key));
        return nullptr;
    }
    if (v->type != t)
        return bad(ctx, fmt::format("field '{}' has the wrong type (expected {}, found {})", key,
                                    json::type_name(t), json::type_name(v->type)));
    return v;
}

Result<uint64_t> hex_field(const Value& v, const std::string& what, const std::string& ctx) {
    auto h = parse_hex64(v.string);
    if (!h)
        return bad(ctx, fmt::format("{} is not a hash (expected 16 hex digits, found \"{}\")", what,
                                    v.string));
    return *h;
}

Result<uint64_t> count_field(const Value& v, const std::string& key, const std::string& ctx) {
    // 2^64 is the first double a uint64_t cannot hold: casting it, or
    // anything larger, NaN or negative, is undefined behaviour
    if (!(v.number >= 0 && v.number < 18446744073709551616.0) ||
        v.number != static_cast<double>(static_cast<uint64_t>(v.number)))
        return bad(ctx, fmt::format("field '{}' is not a count (expected a non-negative "
                                    "integer, found {})",
                                    key, v.string));
    return static_cast<uint64_t>(v.number);
}

Status parse_header(const Value& v, const std::string& ctx, HistoryHeader& h) {
    if (v.type != Value::Type::kObject)
        return bad(ctx, fmt::format("not a history header (expected an object, found {})",
                                    json::type_name(v.type)));
    auto fmt_ = field(v, "format", Value::Type::kString, true, ctx);
    if (!fmt_)
        return bad(ctx, "not a history file (expected a header line with "
                        "\"format\":\"presnap-history\", found none)");
    if ((*fmt_)->string != "presnap-history")
        return bad(ctx, fmt::format("not a history file (expected format \"presnap-history\", "
                                    "found \"{}\")",
                                    (*fmt_)->string));
    auto ver = field(v, "version", Value::Type::kNumber, true, ctx);
    if (!ver)
        return std::unexpected(ver.error());
    if ((*ver)->number != kHistoryVersion)
        return std::unexpected(Error{Errc::kUnsupported,
                                     fmt::format("unsupported history version (expected {}, "
                                                 "found {})",
                                                 kHistoryVersion, (*ver)->string),
                                     ctx});
    h.version = kHistoryVersion;
    if (auto p = field(v, "program", Value::Type::kString, false, ctx); p && *p)
        h.program = (*p)->string;
    if (auto p = field(v, "program_hash", Value::Type::kString, false, ctx); p && *p)
        h.program_hash = (*p)->string;
    return {};
}

Status parse_segment(const Value& v, const std::string& ctx, HistorySegment& s) {
    auto id = field(v, "id", Value::Type::kString, true, ctx);
    if (!id)
        return std::unexpected(id.error());
    auto sid = field(v, "sid", Value::Type::kString, true, ctx);
    if (!sid)
        return std::unexpected(sid.error());
    auto idv = hex_field(**id, "segment id", ctx);
    if (!idv)
        return std::unexpected(idv.error());
    auto sidv = hex_field(**sid, "structural id", ctx);
    if (!sidv)
        return std::unexpected(sidv.error());
    s.id = *idv;
    s.sid = *sidv;
    if (auto n = field(v, "name", Value::Type::kString, false, ctx); !n)
        return std::unexpected(n.error());
    else if (*n)
        s.name = (*n)->string;
    return {};
}

Status parse_request(const Value& v, const std::string& ctx, HistoryRequest& r) {
    auto hash = field(v, "hash", Value::Type::kString, true, ctx);
    if (!hash)
        return std::unexpected(hash.error());
    auto hv = hex_field(**hash, "request hash", ctx);
    if (!hv)
        return std::unexpected(hv.error());
    r.hash = *hv;
    auto segs = field(v, "segments", Value::Type::kArray, true, ctx);
    if (!segs)
        return std::unexpected(segs.error());
    for (size_t i = 0; i < (*segs)->array.size(); i++) {
        const Value& e = (*segs)->array[i];
        if (e.type != Value::Type::kString)
            return bad(ctx, fmt::format("segments[{}] has the wrong type (expected string, "
                                        "found {})",
                                        i, json::type_name(e.type)));
        auto id = hex_field(e, fmt::format("segments[{}]", i), ctx);
        if (!id)
            return std::unexpected(id.error());
        r.segments.push_back(*id);
    }
    if (auto f = field(v, "seq", Value::Type::kNumber, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f) {
        auto n = count_field(**f, "seq", ctx);
        if (!n)
            return std::unexpected(n.error());
        r.seq = *n;
    }
    if (auto f = field(v, "bytes", Value::Type::kString, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f)
        r.bytes = (*f)->string;
    else
        r.truncated = true; // none of the request's bytes are stored: not a complete request
    r.length = r.bytes.size();
    if (auto f = field(v, "len", Value::Type::kNumber, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f) {
        auto n = count_field(**f, "len", ctx);
        if (!n)
            return std::unexpected(n.error());
        if (*n < r.bytes.size())
            return bad(ctx, fmt::format("field 'len' is shorter than 'bytes' (expected at "
                                        "least {}, found {})",
                                        r.bytes.size(), *n));
        r.length = *n;
    }
    if (auto f = field(v, "truncated", Value::Type::kBool, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f)
        r.truncated = r.truncated || (*f)->boolean;
    if (auto f = field(v, "latency_us", Value::Type::kNumber, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f)
        r.latency_us = (*f)->number;
    if (auto f = field(v, "snapshot", Value::Type::kString, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f)
        r.snapshot = (*f)->string;
    for (auto [key, dst] :
         {std::pair{"index", &r.index}, std::pair{"response_len", &r.response_len}}) {
        if (auto f = field(v, key, Value::Type::kNumber, false, ctx); !f)
            return std::unexpected(f.error());
        else if (*f) {
            auto n = count_field(**f, key, ctx);
            if (!n)
                return std::unexpected(n.error());
            *dst = *n;
        }
    }
    if (auto f = field(v, "failed", Value::Type::kBool, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f)
        r.failed = (*f)->boolean;
    if (auto f = field(v, "user", Value::Type::kString, false, ctx); !f)
        return std::unexpected(f.error());
    else if (*f) {
        if ((*f)->string.size() > kHistoryMaxUserBytes)
            return bad(ctx, fmt::format("user too long (expected at most {} bytes, found {})",
                                        kHistoryMaxUserBytes, (*f)->string.size()));
        r.user = (*f)->string;
    }
    // A complete request must hash to its recorded hash: catches records
    // whose bytes and hash come from different requests.
    if (v.find("bytes") && !r.truncated && r.bytes.size() == r.length &&
        request_hash(r.bytes) != r.hash)
        return bad(ctx, fmt::format("request hash does not match its bytes (expected {}, "
                                    "found {})",
                                    hex64(request_hash(r.bytes)), hex64(r.hash)));
    return {};
}

} // namespace

Result<History> parse_history(std::string_view text, std::string_view name, bool strict) {
    History h;
    bool have_header = false;
    size_t lineno = 0;
    size_t pos = 0;
    std::string_view line;
    while (detail::next_line(text, pos, line)) {
        lineno++;
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (line.find_first_not_of(" \t") == std::string_view::npos)
            continue;
        std::string ctx = fmt::format("{}:{}", name, lineno);
        Value v;
        std::string err;
        Status st;
        if (!json::parse(line, v, err)) {
            st = bad(ctx, "invalid JSON: " + err);
        } else if (!have_header) {
            // The header is not optional: without it nothing says which
            // format or version the rest is in.
            if (auto hs = parse_header(v, ctx, h.header); !hs)
                return std::unexpected(hs.error());
            have_header = true;
            continue;
        } else if (v.type != Value::Type::kObject) {
            st = bad(ctx, fmt::format("record is not an object (expected object, found {})",
                                      json::type_name(v.type)));
        } else {
            const Value* type = v.find("type");
            if (!type || type->type != Value::Type::kString) {
                st = bad(ctx, "record has no \"type\" (expected \"request\" or \"segment\")");
            } else if (type->string == "request") {
                HistoryRequest r;
                st = parse_request(v, ctx, r);
                if (st)
                    h.requests.push_back(std::move(r));
            } else if (type->string == "segment") {
                HistorySegment s;
                st = parse_segment(v, ctx, s);
                if (st)
                    h.segments.push_back(std::move(s));
            }
            // Other record types are reserved for later minor additions and
            // are skipped without complaint (history.md, compatibility).
        }
        if (!st && !have_header)
            return std::unexpected(st.error());
        if (!st) {
            if (strict)
                return std::unexpected(st.error());
            h.skipped++;
            h.problems.push_back(st.error());
        }
    }
    if (!have_header)
        return bad(std::string(name), "empty history (expected a header line with "
                                      "\"format\":\"presnap-history\", found none)");
    return h;
}

} // namespace presnap::analysis
