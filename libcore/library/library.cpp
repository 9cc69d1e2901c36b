#include "presnap/library/library.h"

#include "../format/json.h"
#include "presnap/analysis/hash.h"

#include <cmath>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace presnap::library {

namespace fs = std::filesystem;
namespace json = analysis::json;

namespace {

Result<std::string> read_bounded(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return make_errno_error(Errc::kIo, errno, "cannot open " + path);
    struct Close {
        int fd;
        ~Close() { ::close(fd); }
    } close_fd{fd};
    struct stat st {};
    if (fstat(fd, &st) != 0)
        return make_errno_error(Errc::kIo, errno, "cannot stat " + path);
    if (!S_ISREG(st.st_mode))
        return make_error(Errc::kFormat, "{}: not a regular file", path);
    if (static_cast<uint64_t>(st.st_size) > kMaxManifestBytes)
        return make_error(Errc::kFormat, "{}: {} bytes, more than the limit of {} MiB", path,
                          st.st_size, kMaxManifestBytes >> 20);
    std::string text(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < text.size()) {
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

struct Fields {
    const json::Value& obj;
    std::string& err;

    const json::Value* get(const char* key, json::Value::Type type, bool required = true) {
        const json::Value* v = obj.find(key);
        if (!v) {
            if (required && err.empty())
                err = fmt::format("missing key \"{}\"", key);
            return nullptr;
        }
        if (v->type != type) {
            if (err.empty())
                err = fmt::format("\"{}\" is a {}, expected a {}", key, json::type_name(v->type),
                                  json::type_name(type));
            return nullptr;
        }
        return v;
    }
    std::string string(const char* key, bool required = true) {
        const json::Value* v = get(key, json::Value::Type::kString, required);
        return v ? v->string : std::string();
    }
    double number(const char* key, bool required = true) {
        const json::Value* v = get(key, json::Value::Type::kNumber, required);
        if (v && !std::isfinite(v->number) && err.empty())
            err = fmt::format("\"{}\" is not a finite number", key);
        return v ? v->number : 0;
    }
    uint64_t count(const char* key, bool required = true) {
        double d = number(key, required);
        if ((d < 0 || d > 9.0e15 || d != std::floor(d)) && err.empty())
            err = fmt::format("\"{}\" is not a count: {}", key, d);
        return err.empty() ? static_cast<uint64_t>(d) : 0;
    }
};

// DIR/timings.jsonl of a deterministic library: a header, then one
// {"type":"timings","file":"s001.snap",...} per snapshot of the manifest.
Status read_timings(const fs::path& path, Library& lib) {
    auto text = read_bounded(path.string());
    if (!text)
        return std::unexpected(text.error());
    size_t line_no = 0, pos = 0;
    std::vector<bool> seen(lib.snapshots.size());
    while (pos < text->size()) {
        size_t end = text->find('\n', pos);
        if (end == std::string::npos)
            return make_error(Errc::kFormat, "{}:{}: the last line has no newline (a cut file?)",
                              path.string(), line_no + 1);
        std::string_view line(text->data() + pos, end - pos);
        pos = end + 1;
        ++line_no;
        auto fail = [&](const std::string& what) {
            return make_error(Errc::kFormat, "{}:{}: {}", path.string(), line_no, what);
        };
        json::Value v;
        std::string err;
        if (!json::parse(line, v, err))
            return fail(err);
        if (v.type != json::Value::Type::kObject)
            return fail("not a JSON object");
        Fields f{v, err};
        if (line_no == 1) {
            if (f.string("format") != "presnap-library-timings" || f.number("version") != 1)
                return fail("not a version 1 presnap-library-timings header");
            continue;
        }
        if (f.string("type") != "timings") {
            if (!err.empty())
                return fail(err);
            continue;
        }
        std::string file = f.string("file");
        size_t i = 0;
        while (i < lib.snapshots.size() && lib.snapshots[i].file != file)
            i++;
        if (err.empty() && i == lib.snapshots.size())
            err = fmt::format("{} is not in the manifest", json::quote(file));
        if (err.empty() && seen[i])
            err = fmt::format("{} is listed twice", file);
        if (!err.empty())
            return fail(err);
        seen[i] = true;
        Entry& e = lib.snapshots[i];
        e.base_us = f.number("base_us");
        e.snapshot_us = f.number("snapshot_us");
        e.benefit_us = f.number("benefit_us");
        e.warmup_us = f.number("warmup_us", false);
        e.warmup_exits = f.count("warmup_exits", false);
        if (!err.empty())
            return fail(err);
    }
    if (line_no == 0)
        return make_error(Errc::kFormat, "{}: empty", path.string());
    for (size_t i = 0; i < seen.size(); i++)
        if (!seen[i])
            return make_error(Errc::kFormat, "{}: no timings for {}", path.string(),
                              lib.snapshots[i].file);
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
    auto text = read_bounded(manifest);
    if (!text)
        return std::unexpected(text.error());

    size_t line_no = 0, pos = 0;
    bool header = false;
    bool timings_apart = false;
    while (pos < text->size()) {
        size_t end = text->find('\n', pos);
        if (end == std::string::npos)
            return make_error(Errc::kFormat, "{}:{}: the last line has no newline (a cut file?)",
                              manifest, line_no + 1);
        std::string_view line(text->data() + pos, end - pos);
        pos = end + 1;
        ++line_no;
        auto fail = [&](const std::string& what) {
            return make_error(Errc::kFormat, "{}:{}: {}", manifest, line_no, what);
        };
        json::Value v;
        std::string err;
        if (!json::parse(line, v, err))
            return fail(err);
        if (v.type != json::Value::Type::kObject)
            return fail("not a JSON object");
        Fields f{v, err};
        if (!header) {
            if (f.string("format") != "presnap-library" && err.empty())
                err = "not a presnap library manifest (format is not \"presnap-library\")";
            double version = f.number("version");
            if (err.empty() && version != 1)
                err = fmt::format("library format version {} is not supported (this is presnap "
                                  "reading version 1)",
                                  version);
            lib.program = f.string("program");
            if (f.string("base") != "base.snap" && err.empty())
                err = "\"base\" must be \"base.snap\"";
            lib.base_bytes = f.count("base_bytes");
            lib.requests = f.count("requests");
            lib.failed = f.count("failed");
            if (!err.empty())
                return fail(err);
            lib.base_path = (dir / "base.snap").string();
            if (const json::Value* m = v.find("map")) {
                if (m->type != json::Value::Type::kString || m->string != "map.pmap")
                    return fail("\"map\" must be \"map.pmap\"");
                lib.map_path = (dir / "map.pmap").string();
            }
            if (const json::Value* t = v.find("timings")) {
                if (t->type != json::Value::Type::kString || t->string != "timings.jsonl")
                    return fail("\"timings\" must be \"timings.jsonl\"");
                timings_apart = true;
            }
            if (const json::Value* d = v.find("deterministic"))
                lib.deterministic = d->type == json::Value::Type::kBool && d->boolean;
            header = true;
            continue;
        }
        if (f.string("type") != "snapshot") {
            if (!err.empty())
                return fail(err);
            continue; // a record type of a later version: ignored
        }
        if (lib.snapshots.size() >= kMaxLibrarySnapshots)
            return fail(fmt::format("more than {} snapshots", kMaxLibrarySnapshots));
        Entry e;
        e.file = f.string("file");
        if (err.empty() && !plain_snapshot_name(e.file))
            err = fmt::format("\"file\" must be a name like s001.snap in the library, not {}",
                              json::quote(e.file));
        if (err.empty() && lib.find(e.file))
            err = fmt::format("{} is listed twice", e.file);
        e.id = e.file.substr(0, e.file.size() - 5);
        e.path = (dir / e.file).string();
        if (const json::Value* segs = f.get("segments", json::Value::Type::kArray)) {
            for (const json::Value& s : segs->array) {
                auto id = s.type == json::Value::Type::kString ? analysis::parse_hex64(s.string)
                                                               : std::nullopt;
                if (!id) {
                    if (err.empty())
                        err = "\"segments\" holds something other than 16-hex-digit ids";
                    break;
                }
                e.segments.push_back(*id);
            }
        }
        if (const json::Value* names = f.get("names", json::Value::Type::kArray)) {
            for (const json::Value& s : names->array)
                e.names.push_back(s.type == json::Value::Type::kString ? s.string : "?");
            if (err.empty() && e.names.size() != e.segments.size())
                err = "\"names\" and \"segments\" differ in length";
        }
        e.weight = f.number("weight");
        e.base_us = f.number("base_us", !timings_apart);
        e.snapshot_us = f.number("snapshot_us", !timings_apart);
        e.benefit_us = f.number("benefit_us", !timings_apart);
        e.pages = f.count("pages");
        e.bytes = f.count("bytes");
        e.route_requests = f.count("route_requests");
        e.warmup = f.string("warmup");
        e.held_out = f.string("held_out");
        e.pages_dirtied = f.count("pages_dirtied", false);
        e.pages_touched = f.count("pages_touched", false);
        e.warmup_us = f.number("warmup_us", false);
        e.warmup_exits = f.count("warmup_exits", false);
        e.segments_saved = f.count("segments_saved", false);
        if (const json::Value* sys = v.find("syscalls")) {
            e.counted = true;
            for (const char* key : {"brk_growth", "mmap_growth"}) {
                double d = f.number(key);
                if (!(std::fabs(d) <= 9.0e15) || d != std::floor(d)) {
                    if (err.empty())
                        err = fmt::format("\"{}\" is not an integer", key);
                    continue; // not cast: out of int64_t's range is undefined
                }
                (key[0] == 'b' ? e.brk_growth : e.mmap_growth) = static_cast<int64_t>(d);
            }
            if (err.empty() &&
                (sys->type != json::Value::Type::kObject || sys->object.size() > 4096))
                err = "\"syscalls\" is not an object of counts";
            for (const auto& [name, n] : sys->object) {
                if (!err.empty())
                    break;
                if (n.type != json::Value::Type::kNumber || n.number < 0 || n.number > 9.0e15 ||
                    n.number != std::floor(n.number))
                    err = fmt::format("\"syscalls\" count of {} is not a count", json::quote(name));
                else
                    e.syscalls.emplace_back(name, static_cast<uint64_t>(n.number));
            }
        }
        e.warmup_response = f.string("warmup_response");
        if (err.empty() && e.weight < 0)
            err = fmt::format("\"weight\" {} is negative", e.weight);
        if (!err.empty())
            return fail(err);
        lib.snapshots.push_back(std::move(e));
    }
    if (!header)
        return make_error(Errc::kFormat, "{}: empty manifest", manifest);
    if (timings_apart)
        if (auto s = read_timings(dir / "timings.jsonl", lib); !s)
            return std::unexpected(s.error());
    return lib;
}

} // namespace presnap::library
