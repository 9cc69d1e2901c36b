#include "presnap/snapshot/describe.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace presnap::snapshot {
namespace {

using Json = nlohmann::ordered_json;

// nlohmann-json's parser, with the nesting limit the format sets: a SAX
// handler that keeps nothing but the depth.
class DepthLimit final : public nlohmann::json_sax<Json> {
  public:
    static constexpr std::size_t kMaxDepth = 64;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return false; }
    bool start_object(std::size_t) override { return ++depth_ <= kMaxDepth; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return --depth_, true; }
    bool start_array(std::size_t) override { return ++depth_ <= kMaxDepth; }
    bool end_array() override { return --depth_, true; }
    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception&) override {
        // The parser counts bytes read, the offending one included.
        error_offset = position == 0 ? 0 : position - 1;
        return false;
    }
    std::size_t error_offset = 0;

  private:
    std::size_t depth_ = 0;
};

// A hash, a checksum, an address: hexadecimal strings in the JSON form.
std::string hex(std::uint64_t v, const char* spec = "{:#x}") {
    return fmt::format(fmt::runtime(spec), v);
}

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
    DepthLimit sax;
    const bool ok = Json::sax_parse(text.begin(), text.end(), &sax);
    if (!ok && error_offset)
        *error_offset = sax.error_offset;
    return ok;
}

std::string json_quote(std::string_view text) {
    // Paths and names are bytes; invalid UTF-8 becomes U+FFFD rather than
    // an exception.
    return Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
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
         fmt::format("{} runs ({} raw, {} zstd, {} zero{}): {} pages stored, {} zero "
                     "pages",
                     m.runs, m.raw_runs, m.zstd_runs, m.zero_runs,
                     m.store_runs ? fmt::format(", {} store", m.store_runs) : std::string(),
                     m.pages_stored, m.zero_pages));
    if (const auto& ps = f.page_store())
        line("page store", fmt::format("{} ({} bytes, store id {}): {} pages of this snapshot",
                                       ps->name, ps->size, ps->id.hex(), m.store_pages));
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
    Json o;
    o["format_version"] = fmt::format("{}.{}", f.major_version(), f.minor_version());
    o["kind"] = kind_name(static_cast<std::uint32_t>(f.kind()));
    o["flags"] = f.flags();
    o["deterministic"] = (f.flags() & kFlagDeterministic) != 0;
    o["guest_memory_size"] = f.guest_memory_size();
    o["page_size"] = kPageSize;
    o["file_size"] = f.file_size();
    o["content_hash"] = f.content_hash().hex();
    o["parent"] = f.parent() ? Json(f.parent()->hex()) : Json(nullptr);
    if (const auto& e = f.executable())
        o["executable"] = {
            {"path", e->path}, {"size", e->size}, {"content_hash", e->content_hash.hex()}};
    else
        o["executable"] = nullptr;
    const CpuFeatures& cpu = f.cpu_features();
    Json words = Json::array();
    for (const CpuidWord& w : cpu.words)
        words.push_back({{"leaf", hex(w.leaf)},
                         {"subleaf", w.subleaf},
                         {"reg", std::array{"eax", "ebx", "ecx", "edx"}[static_cast<int>(w.reg)]},
                         {"bits", hex(w.bits, "{:#010x}")}});
    o["cpu"] = {{"vendor", cpu.vendor},
                {"xcr0", hex(cpu.xcr0)},
                {"features", cpu_feature_names(cpu)},
                {"words", std::move(words)}};
    Json msrs = Json::array();
    for (const Msr& m : f.msrs())
        msrs.push_back({{"index", hex(m.index)}, {"value", hex(m.value)}});
    o["vcpu"] = {{"regs_size", f.regs().size()},
                 {"sregs_size", f.sregs().size()},
                 {"xsave_size", f.xsave().size()},
                 {"xcrs_size", f.xcrs().size()},
                 {"msrs", std::move(msrs)}};
    o["monitor_state_size"] = f.monitor_state().size();
    const MemoryStats m = f.memory_stats();
    o["memory"] = {
        {"runs", m.runs},           {"raw_runs", m.raw_runs},         {"zstd_runs", m.zstd_runs},
        {"zero_runs", m.zero_runs}, {"pages_stored", m.pages_stored}, {"zero_pages", m.zero_pages},
        {"raw_bytes", m.raw_bytes}, {"stored_bytes", m.stored_bytes}};
    if (const auto& ps = f.page_store()) {
        o["memory"]["store_runs"] = m.store_runs;
        o["memory"]["store_pages"] = m.store_pages;
        o["page_store"] = {{"name", ps->name}, {"size", ps->size}, {"store_id", ps->id.hex()}};
    }
    std::uint64_t ws_pages = 0;
    for (const PageRange& r : f.working_set())
        ws_pages += r.page_count;
    o["working_set"] = {{"pages", ws_pages}, {"ranges", f.working_set().size()}};
    Json sections = Json::array();
    for (const SectionInfo& s : f.sections())
        sections.push_back({{"index", s.index},
                            {"type", section_name(s.type)},
                            {"type_number", s.type},
                            {"flags", s.flags},
                            {"offset", s.offset},
                            {"size", s.size},
                            {"checksum", hex(s.checksum, "{:016x}")}});
    o["sections"] = std::move(sections);
    if (options.list_runs) {
        Json runs = Json::array();
        for (const PageRun& r : f.page_runs())
            runs.push_back({{"first_page", r.first_page},
                            {"page_count", r.page_count},
                            {"encoding", encoding_name(static_cast<std::uint32_t>(r.encoding))},
                            {"file_offset", r.file_offset},
                            {"stored_size", r.stored_size},
                            {"checksum", hex(r.checksum, "{:016x}")}});
        o["page_runs"] = std::move(runs);
    }
    // The reader checked that the section is valid JSON; it is embedded as
    // parsed, keys in their order.
    const std::string_view meta = f.metadata_json();
    o["metadata"] = meta.empty() ? Json(nullptr) : Json::parse(meta.begin(), meta.end());
    return o.dump(-1, ' ', false, Json::error_handler_t::replace);
}

} // namespace presnap::snapshot
