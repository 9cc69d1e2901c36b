#include "presnap/library/library.h"

#include "../format/jsonl.h"

#include <filesystem>

namespace presnap::library {

namespace fs = std::filesystem;
namespace json = analysis::json;

namespace {

// A snapshot file name as snapgen writes it: "s" + at least three digits + ".snap".
bool plain_snapshot_name(std::string_view name) {
    if (name.size() < 9 || name.size() > 32 || name[0] != 's' || !name.ends_with(".snap"))
        return false;
    std::string_view digits = name.substr(1, name.size() - 6);
    for (char c : digits)
        if (c < '0' || c > '9')
            return false;
    return digits.size() >= 3;
}

// DIR/timings.jsonl of a deterministic library: a header, then one
// {"type":"timings","file":"s001.snap",...} per snapshot of the manifest.
Status read_timings(const fs::path& path, Library& lib) {
    auto text = jsonl::read_file(path.string(), kMaxManifestBytes);
    if (!text)
        return std::unexpected(text.error());
    jsonl::Lines lines(*text, path.string());
    std::vector<bool> seen(lib.snapshots.size());
    json::Value v;
    for (;;) {
        auto more = lines.next(v);
        if (!more)
            return std::unexpected(more.error());
        if (!*more)
            break;
        jsonl::Fields f(v);
        if (lines.line() == 1) {
            if (f.string("format") != "presnap-library-timings" || f.number("version") != 1)
                return lines.fail("not a version 1 presnap-library-timings header");
            continue;
        }
        if (f.string("type") != "timings") {
            if (!f.ok())
                return lines.fail(f.error());
            continue;
        }
        std::string file = f.string("file");
        size_t i = 0;
        while (i < lib.snapshots.size() && lib.snapshots[i].file != file)
            i++;
        if (f.ok() && i == lib.snapshots.size())
            f.fail(fmt::format("{} is not in the manifest", jsonl::shown(file)));
        if (f.ok() && seen[i])
            f.fail(fmt::format("{} is listed twice", file));
        if (!f.ok())
            return lines.fail(f.error());
        seen[i] = true;
        Entry& e = lib.snapshots[i];
        e.base_us = f.number("base_us");
        e.snapshot_us = f.number("snapshot_us");
        e.benefit_us = f.number("benefit_us");
        e.warmup_us = f.number("warmup_us", jsonl::Need::kOptional);
        e.warmup_exits = f.count("warmup_exits", jsonl::Need::kOptional);
        if (!f.ok())
            return lines.fail(f.error());
    }
    if (lines.line() == 0)
        return lines.fail_file("empty");
    for (size_t i = 0; i < seen.size(); i++)
        if (!seen[i])
            return lines.fail_file(fmt::format("no timings for {}", lib.snapshots[i].file));
    return {};
}

} // namespace

const Entry* Library::find(std::string_view id) const {
    for (const Entry& e : snapshots)
        if (e.id == id || e.file == id)
            return &e;
    return nullptr;
}

Result<Library> open_library(const std::string& dir_arg) {
    Library lib;
    std::error_code ec;
    fs::path dir = fs::absolute(dir_arg, ec).lexically_normal();
    if (dir.filename().empty())
        dir = dir.parent_path();
    lib.dir = dir.string();
    if (!fs::is_directory(dir, ec))
        return make_error(
            Errc::kIo, "{}: not a library directory (snapgen --map ... -o DIR makes one)", dir_arg);
    std::string manifest = (dir / "manifest.jsonl").string();
    auto text = jsonl::read_file(manifest, kMaxManifestBytes);
    if (!text)
        return std::unexpected(text.error());

    jsonl::Lines lines(*text, manifest);
    bool header = false;
    bool timings_apart = false;
    json::Value v;
    for (;;) {
        auto more = lines.next(v);
        if (!more)
            return std::unexpected(more.error());
        if (!*more)
            break;
        jsonl::Fields f(v);
        if (!header) {
            if (f.string("format") != "presnap-library")
                f.fail("not a presnap library manifest (format is not \"presnap-library\")");
            double version = f.number("version");
            if (f.ok() && version != 1)
                f.fail(fmt::format("library format version {} is not supported (this is presnap "
                                   "reading version 1)",
                                   version));
            lib.program = f.string("program");
            if (f.string("base") != "base.snap")
                f.fail("\"base\" must be \"base.snap\"");
            lib.base_bytes = f.count("base_bytes");
            lib.requests = f.count("requests");
            lib.failed = f.count("failed");
            if (f.has("map") && f.string("map") != "map.pmap")
                f.fail("\"map\" must be \"map.pmap\"");
            if (f.has("timings") && f.string("timings") != "timings.jsonl")
                f.fail("\"timings\" must be \"timings.jsonl\"");
            if (!f.ok())
                return lines.fail(f.error());
            lib.base_path = (dir / "base.snap").string();
            if (f.has("map"))
                lib.map_path = (dir / "map.pmap").string();
            timings_apart = f.has("timings");
            if (const json::Value* d = v.find("deterministic"))
                lib.deterministic = d->type == json::Value::Type::kBool && d->boolean;
            header = true;
            continue;
        }
        if (f.string("type") != "snapshot") {
            if (!f.ok())
                return lines.fail(f.error());
            continue; // a record type of a later version: ignored
        }
        if (lib.snapshots.size() >= kMaxLibrarySnapshots)
            return lines.fail(fmt::format("more than {} snapshots", kMaxLibrarySnapshots));
        Entry e;
        e.file = f.string("file");
        if (f.ok() && !plain_snapshot_name(e.file))
            f.fail(fmt::format("\"file\" must be a name like s001.snap in the library, not {}",
                               jsonl::shown(*v.find("file"))));
        if (f.ok() && lib.find(e.file))
            f.fail(fmt::format("{} is listed twice", e.file));
        e.id = e.file.substr(0, e.file.size() - 5);
        e.path = (dir / e.file).string();
        if (const json::Value* segs = f.array("segments")) {
            for (const json::Value& s : segs->array) {
                auto id = jsonl::as_hex64(s);
                if (!id) {
                    f.fail("\"segments\" holds something other than 16-hex-digit ids");
                    break;
                }
                e.segments.push_back(*id);
            }
        }
        if (const json::Value* names = f.array("names")) {
            for (const json::Value& s : names->array)
                e.names.push_back(s.type == json::Value::Type::kString ? s.string : "?");
            if (e.names.size() != e.segments.size())
                f.fail("\"names\" and \"segments\" differ in length");
        }
        const auto timing = timings_apart ? jsonl::Need::kOptional : jsonl::Need::kRequired;
        const auto optional = jsonl::Need::kOptional;
        e.weight = f.number("weight");
        e.base_us = f.number("base_us", timing);
        e.snapshot_us = f.number("snapshot_us", timing);
        e.benefit_us = f.number("benefit_us", timing);
        e.pages = f.count("pages");
        e.bytes = f.count("bytes");
        e.route_requests = f.count("route_requests");
        e.warmup = f.string("warmup");
        e.held_out = f.string("held_out");
        e.pages_dirtied = f.count("pages_dirtied", optional);
        e.pages_touched = f.count("pages_touched", optional);
        e.warmup_us = f.number("warmup_us", optional);
        e.warmup_exits = f.count("warmup_exits", optional);
        e.segments_saved = f.count("segments_saved", optional);
        if (f.has("syscalls")) {
            e.counted = true;
            e.brk_growth = f.integer("brk_growth");
            e.mmap_growth = f.integer("mmap_growth");
            const json::Value* sys = f.object("syscalls");
            if (sys && sys->object.size() > 4096)
                f.fail("\"syscalls\" is not an object of at most 4096 counts");
            if (sys && f.ok()) {
                for (const auto& [name, n] : sys->object) {
                    auto c = jsonl::as_count(n);
                    if (!c) {
                        f.fail(fmt::format("\"syscalls\" count of {} is not a count (found {})",
                                           jsonl::shown(name), jsonl::shown(n)));
                        break;
                    }
                    e.syscalls.emplace_back(name, *c);
                }
            }
        }
        e.warmup_response = f.string("warmup_response");
        if (f.ok() && e.weight < 0)
            f.fail(fmt::format("\"weight\" {} is negative", e.weight));
        if (!f.ok())
            return lines.fail(f.error());
        lib.snapshots.push_back(std::move(e));
    }
    if (!header)
        return lines.fail_file("empty manifest");
    if (timings_apart)
        if (auto s = read_timings(dir / "timings.jsonl", lib); !s)
            return std::unexpected(s.error());
    return lib;
}

} // namespace presnap::library
