// Training from histories, and the model file (docs/formats/model.md).
#include "presnap/select/select.h"

#include "../format/json.h"
#include "internal.h"
#include "presnap/analysis/hash.h"
#include "presnap/analysis/pmap.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fcntl.h>
#include <map>
#include <set>
#include <unistd.h>

namespace presnap::select {

namespace json = analysis::json;
using analysis::hex64;
using analysis::parse_hex64;

namespace {

Result<std::string> read_file(const std::string& path, uint64_t limit) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return make_errno_error(Errc::kIo, errno, "cannot open " + path);
    std::string out;
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            return make_errno_error(Errc::kIo, err, "cannot read " + path);
        }
        if (n == 0)
            break;
        out.append(buf, size_t(n));
        if (out.size() > limit) {
            ::close(fd);
            return std::unexpected(
                Error{Errc::kFormat,
                      fmt::format("file too large (expected at most {} bytes)", limit), path});
        }
    }
    ::close(fd);
    return out;
}

// The library's warmable segments (the union of its snapshots' segments).
std::set<uint64_t> library_segments(const library::Library& lib) {
    std::set<uint64_t> out;
    for (const auto& e : lib.snapshots)
        out.insert(e.segments.begin(), e.segments.end());
    return out;
}

} // namespace

Result<std::string> read_bounded_file(const std::string& path, uint64_t limit) {
    return read_file(path, limit);
}

Result<uint64_t> manifest_hash(const library::Library& lib) {
    auto text = read_file(lib.dir + "/manifest.jsonl", library::kMaxManifestBytes);
    if (!text)
        return std::unexpected(text.error());
    return analysis::fnv1a64(*text);
}

Result<Model> train(const library::Library& lib, std::span<const analysis::History> histories) {
    Model m;
    auto h = manifest_hash(lib);
    if (!h)
        return std::unexpected(h.error());
    m.manifest_hash = *h;
    const std::set<uint64_t> segs = library_segments(lib);
    // Which library segments are lazy-initialisation guards (from the map):
    // only those count as rebuilt when they run twice in one run.
    std::set<uint64_t> lazy;
    if (!lib.map_path.empty()) {
        auto text = read_file(lib.map_path, kMaxModelBytes);
        if (!text)
            return std::unexpected(text.error());
        auto map = analysis::parse_pmap_text(*text, lib.map_path);
        if (!map)
            return std::unexpected(map.error());
        for (const auto& s : map->segments)
            if (s.lazy_init && segs.contains(s.id))
                lazy.insert(s.id);
    }
    std::map<uint64_t, std::pair<double, double>> order; // id -> (sum of positions, n)
    std::set<uint64_t> rebuilt;
    std::map<std::tuple<std::string, std::vector<std::string>, std::vector<uint64_t>>, uint64_t>
        examples;
    for (const auto& history : histories) {
        const analysis::HistoryRequest* prev = nullptr;
        std::map<uint64_t, int> in_run; // lazy segment -> records of this run that ran it
        for (const auto& r : history.requests) {
            m.requests++;
            // A run: consecutive records of one process (same snapshot,
            // growing index). Without an index every record is its own run.
            bool same_run = prev && r.index && prev->index && *r.index > *prev->index &&
                            r.snapshot == prev->snapshot;
            prev = &r;
            if (!same_run) {
                m.runs++;
                in_run.clear();
            }
            std::vector<uint64_t> ran;
            for (uint64_t s : r.segments)
                if (segs.contains(s))
                    ran.push_back(s);
            for (uint64_t s : ran)
                if (lazy.contains(s) && ++in_run[s] >= 2)
                    rebuilt.insert(s);
            if (same_run)
                continue; // its path depends on what the run did before it
            for (size_t i = 0; i < ran.size(); i++) {
                order[ran[i]].first += double(i);
                order[ran[i]].second += 1;
            }
            std::sort(ran.begin(), ran.end());
            std::string bytes = r.bytes;
            auto key = std::tuple{r.user, request_features(bytes), ran};
            uint64_t& n = examples[key];
            n = std::min<uint64_t>(n + 1, kMaxExampleCount);
        }
    }
    if (examples.size() > kMaxModelExamples)
        return make_error(
            Errc::kInvalidArgument,
            "too many distinct requests to learn from (expected at most {}, found {})",
            kMaxModelExamples, examples.size());
    for (uint64_t id : segs) {
        ModelSegment s{id, 0, rebuilt.contains(id)};
        if (auto it = order.find(id); it != order.end())
            s.order = it->second.first / it->second.second;
        else
            s.order = 1e9; // never seen: last
        m.segments.push_back(s);
    }
    for (auto& [key, n] : examples)
        m.examples.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), n});
    return m;
}

std::string format_model(const Model& m) {
    std::string out = fmt::format(
        "{{\"format\":\"presnap-model\",\"version\":{},\"manifest\":\"{}\",\"requests\":{},"
        "\"runs\":{},\"examples\":{}}}\n",
        kModelVersion, hex64(m.manifest_hash), m.requests, m.runs, m.examples.size());
    for (const auto& s : m.segments)
        out +=
            fmt::format("{{\"type\":\"segment\",\"id\":\"{}\",\"order\":{:.3f},\"rebuilt\":{}}}\n",
                        hex64(s.id), s.order, s.rebuilt ? "true" : "false");
    for (const auto& e : m.examples) {
        std::string f, s;
        for (size_t i = 0; i < e.features.size(); i++)
            f += (i ? "," : "") + json::quote(e.features[i]);
        for (size_t i = 0; i < e.segments.size(); i++)
            s += fmt::format("{}\"{}\"", i ? "," : "", hex64(e.segments[i]));
        out += fmt::format("{{\"type\":\"example\",\"user\":{},\"count\":{},\"features\":[{}],"
                           "\"segments\":[{}]}}\n",
                           json::quote(e.user), e.count, f, s);
    }
    return out;
}

namespace {

std::unexpected<Error> bad(std::string_view name, size_t line, std::string msg) {
    return std::unexpected(Error{Errc::kFormat, std::move(msg), fmt::format("{}:{}", name, line)});
}

// A non-negative integer that fits, else nullopt.
std::optional<uint64_t> count_of(const json::Value& v, uint64_t max) {
    if (v.type != json::Value::Type::kNumber || !(v.number >= 0) || v.number > double(max) ||
        v.number != std::floor(v.number))
        return std::nullopt;
    return uint64_t(v.number);
}

} // namespace

Result<Model> parse_model(std::string_view text, std::string_view name,
                          const library::Library& lib) {
    if (text.size() > kMaxModelBytes)
        return std::unexpected(Error{Errc::kFormat,
                                     fmt::format("model too large (expected at most {} bytes, "
                                                 "found {})",
                                                 kMaxModelBytes, text.size()),
                                     std::string(name)});
    Model m;
    const std::set<uint64_t> segs = library_segments(lib);
    std::set<uint64_t> seen_segments;
    bool header = false;
    size_t line_no = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        line_no++;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos)
            continue;
        json::Value v;
        std::string err;
        if (!json::parse(line, v, err))
            return bad(name, line_no, "not JSON: " + err);
        if (v.type != json::Value::Type::kObject)
            return bad(name, line_no,
                       fmt::format("expected an object, found {}", json::type_name(v.type)));
        if (!header) {
            const auto* f = v.find("format");
            if (!f || f->type != json::Value::Type::kString || f->string != "presnap-model")
                return bad(name, line_no,
                           "not a presnap model (expected a header with "
                           "\"format\":\"presnap-model\")");
            const auto* ver = v.find("version");
            if (!ver || ver->type != json::Value::Type::kNumber || ver->number != kModelVersion)
                return bad(name, line_no,
                           fmt::format("unsupported model version (expected {}, found {})",
                                       kModelVersion, ver ? ver->string : "none"));
            const auto* mh = v.find("manifest");
            auto h = mh && mh->type == json::Value::Type::kString ? parse_hex64(mh->string)
                                                                  : std::nullopt;
            if (!h)
                return bad(name, line_no, "missing or bad 'manifest' (expected 16 hex digits)");
            auto want = manifest_hash(lib);
            if (!want)
                return std::unexpected(want.error());
            if (*h != *want)
                return bad(name, line_no,
                           fmt::format("the model was trained for another library (expected "
                                       "manifest {}, found {}); retrain with snapselect --train",
                                       hex64(*want), hex64(*h)));
            m.manifest_hash = *h;
            for (auto [key, dst] : {std::pair{"requests", &m.requests}, {"runs", &m.runs}})
                if (const auto* n = v.find(key)) {
                    auto c = count_of(*n, UINT64_MAX >> 12);
                    if (!c)
                        return bad(name, line_no, fmt::format("bad '{}'", key));
                    *dst = *c;
                }
            header = true;
            continue;
        }
        const auto* type = v.find("type");
        if (!type || type->type != json::Value::Type::kString)
            return bad(name, line_no, "missing 'type'");
        if (type->string == "segment") {
            const auto* id = v.find("id");
            auto sid = id && id->type == json::Value::Type::kString ? parse_hex64(id->string)
                                                                    : std::nullopt;
            if (!sid)
                return bad(name, line_no, "bad segment 'id' (expected 16 hex digits)");
            if (!segs.contains(*sid))
                return bad(name, line_no,
                           fmt::format("segment {} is not in the library", hex64(*sid)));
            if (!seen_segments.insert(*sid).second)
                return bad(name, line_no, fmt::format("segment {} declared twice", hex64(*sid)));
            ModelSegment s{*sid, 0, false};
            if (const auto* o = v.find("order")) {
                if (o->type != json::Value::Type::kNumber || !(o->number >= 0) || o->number > 1e9)
                    return bad(name, line_no, "bad 'order' (expected a number from 0 to 1e9)");
                s.order = o->number;
            }
            if (const auto* rb = v.find("rebuilt")) {
                if (rb->type != json::Value::Type::kBool)
                    return bad(name, line_no, "bad 'rebuilt' (expected true or false)");
                s.rebuilt = rb->boolean;
            }
            m.segments.push_back(s);
        } else if (type->string == "example") {
            if (m.examples.size() >= kMaxModelExamples)
                return bad(
                    name, line_no,
                    fmt::format("too many examples (expected at most {})", kMaxModelExamples));
            ModelExample e;
            if (const auto* u = v.find("user")) {
                if (u->type != json::Value::Type::kString ||
                    u->string.size() > analysis::kHistoryMaxUserBytes)
                    return bad(name, line_no,
                               "bad 'user' (expected a string of at most 256 bytes)");
                e.user = u->string;
            }
            const auto* c = v.find("count");
            auto n = c ? count_of(*c, kMaxExampleCount) : std::nullopt;
            if (!n || *n == 0)
                return bad(name, line_no,
                           fmt::format("bad 'count' (expected an integer from 1 to {})",
                                       kMaxExampleCount));
            e.count = *n;
            const auto* f = v.find("features");
            if (!f || f->type != json::Value::Type::kArray || f->array.size() > kMaxExampleFeatures)
                return bad(name, line_no,
                           fmt::format("bad 'features' (expected an array of at most {} strings)",
                                       kMaxExampleFeatures));
            for (const auto& x : f->array) {
                if (x.type != json::Value::Type::kString || x.string.empty() ||
                    x.string.size() > kMaxFeatureBytes)
                    return bad(name, line_no,
                               fmt::format("bad feature (expected a string of 1 to {} bytes)",
                                           kMaxFeatureBytes));
                e.features.push_back(x.string);
            }
            std::sort(e.features.begin(), e.features.end());
            e.features.erase(std::unique(e.features.begin(), e.features.end()), e.features.end());
            const auto* s = v.find("segments");
            if (!s || s->type != json::Value::Type::kArray || s->array.size() > segs.size())
                return bad(name, line_no, "bad 'segments' (expected an array of library segments)");
            for (const auto& x : s->array) {
                auto id =
                    x.type == json::Value::Type::kString ? parse_hex64(x.string) : std::nullopt;
                if (!id)
                    return bad(name, line_no, "bad segment id (expected 16 hex digits)");
                if (!segs.contains(*id))
                    return bad(name, line_no,
                               fmt::format("segment {} is not in the library", hex64(*id)));
                e.segments.push_back(*id);
            }
            std::sort(e.segments.begin(), e.segments.end());
            e.segments.erase(std::unique(e.segments.begin(), e.segments.end()), e.segments.end());
            m.examples.push_back(std::move(e));
        }
        // Other types: ignored (a later version 1 may add records).
    }
    if (!header)
        return std::unexpected(Error{Errc::kFormat, "empty model (expected a presnap-model header)",
                                     std::string(name)});
    return m;
}

Status store_model(const library::Library& lib, const Model& model) {
    const std::string path = lib.dir + "/" + kModelFile;
    const std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
    const std::string text = format_model(model);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return make_errno_error(Errc::kIo, errno, "cannot create " + tmp);
    size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            ::close(fd);
            ::unlink(tmp.c_str());
            return make_errno_error(Errc::kIo, err, "cannot write " + tmp);
        }
        done += size_t(n);
    }
    if (::fsync(fd) != 0) {
        int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        return make_errno_error(Errc::kIo, err, "cannot flush " + tmp);
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        return make_errno_error(Errc::kIo, err, "cannot rename " + tmp + " to " + path);
    }
    return {};
}

} // namespace presnap::select
