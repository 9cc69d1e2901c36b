// The probability map text and JSON forms (docs/formats/pmap.md).
#include "presnap/analysis/pmap.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "json.h"
#include "lines.h"
#include "presnap/analysis/hash.h"

namespace presnap::analysis {

std::string_view to_string(SegmentKind k) {
    switch (k) {
    case SegmentKind::kFunction:
        return "fn";
    case SegmentKind::kLoop:
        return "loop";
    case SegmentKind::kBranch:
        return "br";
    case SegmentKind::kSwitch:
        return "switch";
    }
    return "?";
}

std::string_view to_string(AddressStatus s) {
    switch (s) {
    case AddressStatus::kNone:
        return "none";
    case AddressStatus::kFound:
        return "found";
    case AddressStatus::kInlined:
        return "inlined";
    case AddressStatus::kMissing:
        return "missing";
    }
    return "?";
}

std::string effects_string(unsigned e) {
    std::string s;
    if (e & kWritesGlobal)
        s += 'W';
    if (e & kStoresHeapPtr)
        s += 'H';
    if (e & kAllocEscapes)
        s += 'A';
    return s.empty() ? "-" : s;
}

static unsigned kind_rank(SegmentKind k) {
    return static_cast<unsigned>(k);
}

void sort_segments(std::vector<Segment>& segs) {
    std::sort(segs.begin(), segs.end(), [](const Segment& a, const Segment& b) {
        if (a.weight != b.weight)
            return a.weight > b.weight;
        if (a.count != b.count)
            return a.count > b.count;
        if (a.kind != b.kind)
            return kind_rank(a.kind) < kind_rank(b.kind);
        if (a.name != b.name)
            return a.name < b.name;
        return a.id < b.id;
    });
}

std::string escape_token(std::string_view raw) {
    std::string s;
    for (unsigned char c : raw) {
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == '\\')
            s += fmt::format("\\x{:02x}", c);
        else
            s.push_back(static_cast<char>(c));
    }
    return s;
}

Result<std::string> unescape_token(std::string_view esc) {
    std::string s;
    for (size_t i = 0; i < esc.size(); i++) {
        if (esc[i] != '\\') {
            s.push_back(esc[i]);
            continue;
        }
        unsigned v = 0;
        if (i + 3 >= esc.size() || esc[i + 1] != 'x' ||
            std::from_chars(esc.data() + i + 2, esc.data() + i + 4, v, 16).ptr !=
                esc.data() + i + 4)
            return make_error(Errc::kFormat, "invalid token escape (expected \\xHH, found \"{}\")",
                              esc.substr(i, 4));
        s.push_back(static_cast<char>(v));
        i += 3;
    }
    return s;
}

static std::string fmt_weight(double w) {
    return fmt::format("{:.6f}", w);
}
static std::string fmt_count(double c) {
    return fmt::format("{:.6g}", c);
}

static std::string ranges_text(const Segment& s) {
    if (s.ranges.empty())
        return "-";
    std::string r;
    for (size_t i = 0; i < s.ranges.size(); i++)
        r += fmt::format("{}{:x}-{:x}", i ? "," : "", s.ranges[i].lo, s.ranges[i].hi);
    return r;
}

static std::string tokens_text(const Segment& s) {
    if (s.tokens.empty())
        return "-";
    std::string r;
    for (size_t i = 0; i < s.tokens.size(); i++)
        r += fmt::format("{}\"{}\"", i ? "," : "", escape_token(s.tokens[i]));
    return r;
}

static std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string r;
    for (size_t i = 0; i < v.size(); i++)
        r += (i ? std::string(sep) : std::string()) + v[i];
    return r;
}

static constexpr std::string_view kColumns =
    "id kind name weight count warm lazy effects address ranges tokens evidence sid shash";

std::string format_pmap_text(const ProbabilityMap& map) {
    std::string out = fmt::format("# presnap-pmap {}\n", kPmapVersion);
    out += fmt::format("# inputs: {}\n", join(map.inputs, " "));
    out += fmt::format("# entries: {}\n", join(map.entries, " "));
    out += fmt::format("# evidence: {}\n", map.evidence.empty() ? "static" : map.evidence);
    if (map.addresses.elf.empty())
        out += "# addresses: none\n";
    else
        out += fmt::format("# addresses: {} found={} inlined={} missing={}\n", map.addresses.elf,
                           map.addresses.found, map.addresses.inlined, map.addresses.missing);
    out += fmt::format("# segments: {}\n", map.segments.size());
    out += fmt::format("# columns: {}\n", kColumns);
    for (const Segment& s : map.segments)
        out += fmt::format("{} {} {} {} {} {} {} {} {} {} {} {} {} {}\n", hex64(s.id),
                           to_string(s.kind), s.name, fmt_weight(s.weight), fmt_count(s.count),
                           s.warmable ? "warm" : "-", s.lazy_init ? "lazy" : "-",
                           effects_string(s.effects), to_string(s.address_status), ranges_text(s),
                           tokens_text(s), s.evidence, hex64(s.sid), hex64(s.shash));
    return out;
}

std::string format_pmap_json(const ProbabilityMap& map) {
    auto strs = [](const std::vector<std::string>& v) {
        std::string r = "[";
        for (size_t i = 0; i < v.size(); i++)
            r += (i ? "," : "") + json::quote(v[i]);
        return r + "]";
    };
    std::string out = fmt::format("{{\"format\":\"presnap-pmap\",\"version\":{},\n", kPmapVersion);
    out +=
        fmt::format(" \"inputs\":{},\"entries\":{},\"evidence\":{},\n", strs(map.inputs),
                    strs(map.entries), json::quote(map.evidence.empty() ? "static" : map.evidence));
    out +=
        fmt::format(" \"addresses\":{{\"elf\":{},\"found\":{},\"inlined\":{},\"missing\":{}}},\n",
                    map.addresses.elf.empty() ? "null" : json::quote(map.addresses.elf),
                    map.addresses.found, map.addresses.inlined, map.addresses.missing);
    out += " \"segments\":[";
    for (size_t i = 0; i < map.segments.size(); i++) {
        const Segment& s = map.segments[i];
        std::string ranges = "[";
        for (size_t r = 0; r < s.ranges.size(); r++)
            ranges += fmt::format("{}[\"0x{:x}\",\"0x{:x}\"]", r ? "," : "", s.ranges[r].lo,
                                  s.ranges[r].hi);
        ranges += "]";
        out += fmt::format(
            "{}\n  {{\"id\":\"{}\",\"sid\":\"{}\",\"shash\":\"{}\",\"kind\":\"{}\",\"name\":{},"
            "\"function\":{},\"line\":{},\"weight\":{},\"count\":{},\"static_weight\":{},"
            "\"warmable\":{},\"lazy_init\":{},\"effects\":\"{}\",\"address\":\"{}\","
            "\"ranges\":{},\"tokens\":{},\"evidence\":{}}}",
            i ? "," : "", hex64(s.id), hex64(s.sid), hex64(s.shash), to_string(s.kind),
            json::quote(s.name), json::quote(s.function), s.line, fmt_weight(s.weight),
            fmt_count(s.count), fmt_weight(s.static_weight), s.warmable ? "true" : "false",
            s.lazy_init ? "true" : "false", effects_string(s.effects), to_string(s.address_status),
            ranges, strs(s.tokens), json::quote(s.evidence));
    }
    out += "\n ]}\n";
    return out;
}

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    size_t pos = 0;
    for (;;) {
        size_t n = s.find(sep, pos);
        parts.push_back(s.substr(pos, n == std::string_view::npos ? s.size() - pos : n - pos));
        if (n == std::string_view::npos)
            break;
        pos = n + 1;
    }
    return parts;
}

std::unexpected<Error> bad(std::string ctx, std::string msg) {
    return std::unexpected(Error{Errc::kFormat, std::move(msg), std::move(ctx)});
}

Result<double> number(std::string_view s, const char* what, const std::string& ctx) {
    std::string tmp(s);
    char* end = nullptr;
    double v = std::strtod(tmp.c_str(), &end);
    // finite only: strtod also reads "nan" and "inf", which the JSON form
    // cannot carry
    if (tmp.empty() || end != tmp.c_str() + tmp.size() || !std::isfinite(v) || v < 0)
        return bad(
            ctx, fmt::format("invalid {} (expected a non-negative number, found \"{}\")", what, s));
    return v;
}

} // namespace

Result<ProbabilityMap> parse_pmap_text(std::string_view text, std::string_view name) {
    ProbabilityMap map;
    size_t lineno = 0, pos = 0;
    bool have_version = false;
    std::string_view line;
    while (detail::next_line(text, pos, line)) {
        lineno++;
        std::string ctx = fmt::format("{}:{}", name, lineno);
        if (!have_version) {
            if (!line.starts_with("# presnap-pmap "))
                return bad(ctx, fmt::format("not a probability map (expected \"# presnap-pmap "
                                            "{}\", found \"{}\")",
                                            kPmapVersion, line.substr(0, 40)));
            if (line.substr(15) != std::to_string(kPmapVersion))
                return std::unexpected(
                    Error{Errc::kUnsupported,
                          fmt::format("unsupported probability map version (expected {}, found {})",
                                      kPmapVersion, line.substr(15)),
                          ctx});
            have_version = true;
            continue;
        }
        if (line.empty())
            continue;
        if (line.starts_with("#")) {
            if (line.starts_with("# inputs: "))
                for (auto p : split(line.substr(10), ' '))
                    if (!p.empty())
                        map.inputs.emplace_back(p);
            if (line.starts_with("# entries: "))
                for (auto p : split(line.substr(11), ' '))
                    if (!p.empty())
                        map.entries.emplace_back(p);
            if (line.starts_with("# evidence: "))
                map.evidence = std::string(line.substr(12));
            continue;
        }
        auto f = split(line, ' ');
        if (f.size() != 14)
            return bad(ctx,
                       fmt::format("wrong number of fields (expected 14, found {})", f.size()));
        Segment s;
        auto id = parse_hex64(f[0]);
        auto sid = parse_hex64(f[12]);
        auto shash = parse_hex64(f[13]);
        if (!id || !sid || !shash)
            return bad(ctx, "invalid hash field (expected 16 hex digits)");
        s.id = *id;
        s.sid = *sid;
        s.shash = *shash;
        if (f[1] == "fn")
            s.kind = SegmentKind::kFunction;
        else if (f[1] == "loop")
            s.kind = SegmentKind::kLoop;
        else if (f[1] == "br")
            s.kind = SegmentKind::kBranch;
        else if (f[1] == "switch")
            s.kind = SegmentKind::kSwitch;
        else
            return bad(ctx, fmt::format("unknown kind (expected fn, loop, br or switch, found "
                                        "\"{}\")",
                                        f[1]));
        s.name = std::string(f[2]);
        auto w = number(f[3], "weight", ctx);
        if (!w)
            return std::unexpected(w.error());
        if (*w > 1)
            return bad(ctx, fmt::format("invalid weight (expected at most 1, found {})", f[3]));
        auto c = number(f[4], "count", ctx);
        if (!c)
            return std::unexpected(c.error());
        s.weight = *w;
        s.count = *c;
        s.warmable = f[5] == "warm";
        s.lazy_init = f[6] == "lazy";
        for (char e : f[7]) {
            if (e == 'W')
                s.effects |= kWritesGlobal;
            if (e == 'H')
                s.effects |= kStoresHeapPtr;
            if (e == 'A')
                s.effects |= kAllocEscapes;
        }
        if (f[8] == "none")
            s.address_status = AddressStatus::kNone;
        else if (f[8] == "found")
            s.address_status = AddressStatus::kFound;
        else if (f[8] == "inlined")
            s.address_status = AddressStatus::kInlined;
        else if (f[8] == "missing")
            s.address_status = AddressStatus::kMissing;
        else
            return bad(ctx, fmt::format("unknown address status (expected none, found, inlined "
                                        "or missing, found \"{}\")",
                                        f[8]));
        if (f[9] != "-") {
            for (auto r : split(f[9], ',')) {
                auto dash = r.find('-');
                AddressRange ar;
                if (dash == std::string_view::npos ||
                    std::from_chars(r.data(), r.data() + dash, ar.lo, 16).ptr != r.data() + dash ||
                    std::from_chars(r.data() + dash + 1, r.data() + r.size(), ar.hi, 16).ptr !=
                        r.data() + r.size() ||
                    ar.hi < ar.lo)
                    return bad(ctx, fmt::format("invalid address range (expected LO-HI in hex, "
                                                "found \"{}\")",
                                                r));
                s.ranges.push_back(ar);
            }
        }
        if (f[10] != "-") {
            for (auto t : split(f[10], ',')) {
                if (t.size() < 2 || t.front() != '"' || t.back() != '"')
                    return bad(ctx, fmt::format("invalid token (expected a quoted string, found "
                                                "{})",
                                                t));
                auto u = unescape_token(t.substr(1, t.size() - 2));
                if (!u)
                    return std::unexpected(u.error().with_context(ctx));
                s.tokens.push_back(*u);
            }
        }
        s.evidence = std::string(f[11]);
        map.segments.push_back(std::move(s));
    }
    if (!have_version)
        return bad(std::string(name), "empty file (expected a probability map)");
    return map;
}

} // namespace presnap::analysis
