#include "presnap/snapshot/describe.h"

#include <fmt/format.h>

namespace presnap::snapshot {
namespace {

// A recursive-descent check of RFC 8259 syntax.
class JsonChecker {
  public:
    explicit JsonChecker(std::string_view text) : s_(text) {}

    bool check() {
        ws();
        if (!value(0))
            return false;
        ws();
        return pos_ == s_.size();
    }
    std::size_t position() const { return pos_; }

  private:
    static constexpr int kMaxDepth = 64;

    bool at_end() const { return pos_ >= s_.size(); }
    char peek() const { return at_end() ? '\0' : s_[pos_]; }
    void ws() {
        while (!at_end() &&
               (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool literal(std::string_view word) {
        if (s_.substr(pos_, word.size()) != word)
            return false;
        pos_ += word.size();
        return true;
    }
    bool value(int depth) {
        switch (peek()) {
        case '{':
            return object(depth + 1);
        case '[':
            return array(depth + 1);
        case '"':
            return string();
        case 't':
            return literal("true");
        case 'f':
            return literal("false");
        case 'n':
            return literal("null");
        default:
            return number();
        }
    }
    bool object(int depth) {
        if (depth > kMaxDepth)
            return false;
        ++pos_; // {
        ws();
        if (peek() == '}') {
            ++pos_;
            return true;
        }
        for (;;) {
            ws();
            if (peek() != '"' || !string())
                return false;
            ws();
            if (peek() != ':')
                return false;
            ++pos_;
            ws();
            if (!value(depth))
                return false;
            ws();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() != '}')
                return false;
            ++pos_;
            return true;
        }
    }
    bool array(int depth) {
        if (depth > kMaxDepth)
            return false;
        ++pos_; // [
        ws();
        if (peek() == ']') {
            ++pos_;
            return true;
        }
        for (;;) {
            ws();
            if (!value(depth))
                return false;
            ws();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() != ']')
                return false;
            ++pos_;
            return true;
        }
    }
    static bool is_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }
    bool string() {
        ++pos_; // "
        while (!at_end()) {
            const auto c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return true;
            }
            if (c < 0x20)
                return false;
            if (c == '\\') {
                ++pos_;
                const char e = peek();
                if (e == 'u') {
                    for (int i = 1; i <= 4; ++i)
                        if (pos_ + i >= s_.size() || !is_hex(s_[pos_ + i]))
                            return false;
                    pos_ += 5;
                    continue;
                }
                if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos || e == 0)
                    return false;
            }
            ++pos_;
        }
        return false;
    }
    bool digits() {
        const std::size_t start = pos_;
        while (!at_end() && s_[pos_] >= '0' && s_[pos_] <= '9')
            ++pos_;
        return pos_ > start;
    }
    bool number() {
        if (peek() == '-')
            ++pos_;
        if (peek() == '0')
            ++pos_;
        else if (!digits())
            return false;
        if (peek() == '.') {
            ++pos_;
            if (!digits())
                return false;
        }
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            if (peek() == '+' || peek() == '-')
                ++pos_;
            if (!digits())
                return false;
        }
        return true;
    }

    std::string_view s_;
    std::size_t pos_ = 0;
};

std::string flag_names(std::uint32_t flags) {
    std::string out;
    if (flags & kFlagDeterministic)
        out += "deterministic";
    if (flags & ~kKnownHeaderFlags)
        out += fmt::format("{}{:#x}", out.empty() ? "" : " ", flags & ~kKnownHeaderFlags);
    return out.empty() ? "none" : out;
}

std::string section_flag_names(std::uint32_t flags) {
    return (flags & kSectionMustUnderstand) ? "must" : "-";
}

} // namespace

bool is_valid_json(std::string_view text, std::size_t* error_offset) {
    JsonChecker checker(text);
    const bool ok = checker.check();
    if (!ok && error_offset)
        *error_offset = checker.position();
    return ok;
}

std::string json_quote(std::string_view text) {
    std::string out = "\"";
    for (char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20)
                out += fmt::format("\\u{:04x}", c);
            else
                out += ch;
        }
    }
    return out + "\"";
}

std::string describe_text(const SnapshotFile& f, const DescribeOptions& options) {
    std::string out;
    auto line = [&](std::string_view key, const std::string& value) {
        out += fmt::format("{:<15} {}\n", std::string(key) + ":", value);
    };
    line("format", fmt::format("presnap snapshot {}.{}", f.major_version(), f.minor_version()));
    line("kind", std::string(kind_name(static_cast<std::uint32_t>(f.kind()))));
    line("flags", flag_names(f.flags()));
    line("guest memory", fmt::format("{} bytes ({} pages of {} bytes)", f.guest_memory_size(),
                                     f.guest_pages(), kPageSize));
    line("file size", fmt::format("{} bytes", f.file_size()));
    line("content hash", f.content_hash().hex());
    line("parent", f.parent() ? f.parent()->hex() : "none");
    if (const auto& e = f.executable())
        line("executable", fmt::format("{} ({} bytes, hash {})", e->path.empty() ? "?" : e->path,
                                       e->size, e->content_hash.hex()));
    else
        line("executable", "none");
    const CpuFeatures& cpu = f.cpu_features();
    line("cpu", fmt::format("{}, xcr0 {:#x}", cpu.vendor.empty() ? "?" : cpu.vendor, cpu.xcr0));
    line("cpu features", fmt::format("{}", fmt::join(cpu_feature_names(cpu), " ")));
    line("vcpu", fmt::format("regs {} bytes, sregs {} bytes, xsave {} bytes, xcrs {} bytes, {} "
                             "msrs",
                             f.regs().size(), f.sregs().size(), f.xsave().size(), f.xcrs().size(),
                             f.msrs().size()));
    if (options.list_runs)
        for (const Msr& m : f.msrs())
            out += fmt::format("  msr {:#010x} = {:#x}\n", m.index, m.value);
    line("monitor state", fmt::format("{} bytes", f.monitor_state().size()));
    const MemoryStats m = f.memory_stats();
    line("memory",
         fmt::format("{} runs ({} raw, {} zstd, {} zero): {} pages stored, {} zero "
                     "pages",
                     m.runs, m.raw_runs, m.zstd_runs, m.zero_runs, m.pages_stored, m.zero_pages));
    line("page bytes",
         fmt::format("{} raw, {} in file{}", m.raw_bytes, m.stored_bytes,
                     m.stored_bytes ? fmt::format(" (ratio {:.2f})",
                                                  double(m.raw_bytes) / double(m.stored_bytes))
                                    : std::string()));
    std::uint64_t ws_pages = 0;
    for (const PageRange& r : f.working_set())
        ws_pages += r.page_count;
    line("working set", fmt::format("{} pages in {} ranges", ws_pages, f.working_set().size()));
    out += "sections:\n";
    out += fmt::format("  {:>5}  {:<13}  {:<5}  {:>10}  {:>10}  {}\n", "index", "type", "flags",
                       "offset", "size", "checksum");
    for (const SectionInfo& s : f.sections())
        out += fmt::format("  {:>5}  {:<13}  {:<5}  {:>10}  {:>10}  {:016x}\n", s.index,
                           s.type >= 1 && s.type <= kLastKnownSection
                               ? std::string(section_name(s.type))
                               : fmt::format("type {}", s.type),
                           section_flag_names(s.flags), s.offset, s.size, s.checksum);
    if (options.list_runs) {
        out += "page runs:\n";
        out += fmt::format("  {:>10}  {:>8}  {:<8}  {:>10}  {:>10}  {}\n", "first_page", "pages",
                           "encoding", "offset", "stored", "checksum");
        for (const PageRun& r : f.page_runs())
            out += fmt::format("  {:>10}  {:>8}  {:<8}  {:>10}  {:>10}  {:016x}\n", r.first_page,
                               r.page_count, encoding_name(static_cast<std::uint32_t>(r.encoding)),
                               r.file_offset, r.stored_size, r.checksum);
    }
    const std::string_view meta = f.metadata_json();
    line("metadata", meta.empty() ? std::string("none") : std::string(meta));
    return out;
}

std::string describe_json(const SnapshotFile& f, const DescribeOptions& options) {
    std::string o = "{";
    auto key = [&](std::string_view k) {
        if (o.size() > 1)
            o += ",";
        o += json_quote(k) + ":";
    };
    key("format_version");
    o += json_quote(fmt::format("{}.{}", f.major_version(), f.minor_version()));
    key("kind");
    o += json_quote(kind_name(static_cast<std::uint32_t>(f.kind())));
    key("flags");
    o += fmt::format("{}", f.flags());
    key("deterministic");
    o += (f.flags() & kFlagDeterministic) ? "true" : "false";
    key("guest_memory_size");
    o += fmt::format("{}", f.guest_memory_size());
    key("page_size");
    o += fmt::format("{}", kPageSize);
    key("file_size");
    o += fmt::format("{}", f.file_size());
    key("content_hash");
    o += json_quote(f.content_hash().hex());
    key("parent");
    o += f.parent() ? json_quote(f.parent()->hex()) : "null";
    key("executable");
    if (const auto& e = f.executable())
        o += fmt::format("{{\"path\":{},\"size\":{},\"content_hash\":{}}}", json_quote(e->path),
                         e->size, json_quote(e->content_hash.hex()));
    else
        o += "null";
    const CpuFeatures& cpu = f.cpu_features();
    key("cpu");
    o += fmt::format("{{\"vendor\":{},\"xcr0\":{},\"features\":[", json_quote(cpu.vendor),
                     json_quote(fmt::format("{:#x}", cpu.xcr0)));
    bool first = true;
    for (const std::string& name : cpu_feature_names(cpu)) {
        o += (first ? "" : ",") + json_quote(name);
        first = false;
    }
    o += "],\"words\":[";
    first = true;
    for (const CpuidWord& w : cpu.words) {
        o +=
            fmt::format("{}{{\"leaf\":{},\"subleaf\":{},\"reg\":{},\"bits\":{}}}", first ? "" : ",",
                        json_quote(fmt::format("{:#x}", w.leaf)), w.subleaf,
                        json_quote(std::array{"eax", "ebx", "ecx", "edx"}[static_cast<int>(w.reg)]),
                        json_quote(fmt::format("{:#010x}", w.bits)));
        first = false;
    }
    o += "]}";
    key("vcpu");
    o += fmt::format("{{\"regs_size\":{},\"sregs_size\":{},\"xsave_size\":{},\"xcrs_size\":{},"
                     "\"msrs\":[",
                     f.regs().size(), f.sregs().size(), f.xsave().size(), f.xcrs().size());
    first = true;
    for (const Msr& m : f.msrs()) {
        o += fmt::format("{}{{\"index\":{},\"value\":{}}}", first ? "" : ",",
                         json_quote(fmt::format("{:#x}", m.index)),
                         json_quote(fmt::format("{:#x}", m.value)));
        first = false;
    }
    o += "]}";
    key("monitor_state_size");
    o += fmt::format("{}", f.monitor_state().size());
    const MemoryStats m = f.memory_stats();
    key("memory");
    o += fmt::format("{{\"runs\":{},\"raw_runs\":{},\"zstd_runs\":{},\"zero_runs\":{},"
                     "\"pages_stored\":{},\"zero_pages\":{},\"raw_bytes\":{},\"stored_bytes\":{}}}",
                     m.runs, m.raw_runs, m.zstd_runs, m.zero_runs, m.pages_stored, m.zero_pages,
                     m.raw_bytes, m.stored_bytes);
    std::uint64_t ws_pages = 0;
    for (const PageRange& r : f.working_set())
        ws_pages += r.page_count;
    key("working_set");
    o += fmt::format("{{\"pages\":{},\"ranges\":{}}}", ws_pages, f.working_set().size());
    key("sections");
    o += "[";
    first = true;
    for (const SectionInfo& s : f.sections()) {
        o += fmt::format("{}{{\"index\":{},\"type\":{},\"type_number\":{},\"flags\":{},"
                         "\"offset\":{},\"size\":{},\"checksum\":{}}}",
                         first ? "" : ",", s.index, json_quote(section_name(s.type)), s.type,
                         s.flags, s.offset, s.size, json_quote(fmt::format("{:016x}", s.checksum)));
        first = false;
    }
    o += "]";
    if (options.list_runs) {
        key("page_runs");
        o += "[";
        first = true;
        for (const PageRun& r : f.page_runs()) {
            o += fmt::format("{}{{\"first_page\":{},\"page_count\":{},\"encoding\":{},"
                             "\"file_offset\":{},\"stored_size\":{},\"checksum\":{}}}",
                             first ? "" : ",", r.first_page, r.page_count,
                             json_quote(encoding_name(static_cast<std::uint32_t>(r.encoding))),
                             r.file_offset, r.stored_size,
                             json_quote(fmt::format("{:016x}", r.checksum)));
            first = false;
        }
        o += "]";
    }
    key("metadata");
    // The reader checked that the section is valid JSON.
    const std::string_view meta = f.metadata_json();
    o += meta.empty() ? std::string("null") : std::string(meta);
    return o + "}";
}

} // namespace presnap::snapshot
