// Training from histories, and the model file (docs/formats/model.md).
#include "presnap/select/select.h"

#include "../format/json.h"
#include "../format/jsonl.h"
#include "internal.h"
#include "presnap/analysis/hash.h"
#include "presnap/analysis/pmap.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <map>
#include <set>
#include <unistd.h>

namespace presnap::select {

namespace json = analysis::json;
using analysis::hex64;

namespace {

// The library's warmable segments (the union of its snapshots' segments).
std::set<uint64_t> library_segments(const library::Library& lib) {
    std::set<uint64_t> out;
    for (const auto& e : lib.snapshots)
        out.insert(e.segments.begin(), e.segments.end());
    return out;
}

} // namespace

Result<std::string> read_bounded_file(const std::string& path, uint64_t limit) {
    return jsonl::read_file(path, limit);
}

Result<uint64_t> manifest_hash(const library::Library& lib) {
    auto text = jsonl::read_file(lib.dir + "/manifest.jsonl", library::kMaxManifestBytes);
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
        auto text = jsonl::read_file(lib.map_path, kMaxModelBytes);
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
    jsonl::Lines lines(text, std::string(name), {.skip_blank = true});
    json::Value v;
    for (;;) {
        auto more = lines.next(v);
        if (!more)
            return std::unexpected(more.error());
        if (!*more)
            break;
        jsonl::Fields f(v);
        if (!header) {
            if (f.string("format", jsonl::Need::kOptional) != "presnap-model")
                return lines.fail("not a presnap model (expected a header with "
                                  "\"format\":\"presnap-model\")");
            const json::Value* ver = v.find("version");
            if (!ver || jsonl::as_count(*ver) != uint64_t{kModelVersion})
                return lines.fail(fmt::format("unsupported model version (expected {}, found {})",
                                              kModelVersion, ver ? jsonl::shown(*ver) : "none"));
            uint64_t h = f.hex64("manifest");
            m.requests = f.count("requests", jsonl::Need::kOptional);
            m.runs = f.count("runs", jsonl::Need::kOptional);
            if (!f.ok())
                return lines.fail(f.error());
            auto want = manifest_hash(lib);
            if (!want)
                return std::unexpected(want.error());
            if (h != *want)
                return lines.fail(
                    fmt::format("the model was trained for another library (expected "
                                "manifest {}, found {}); retrain with snapselect --train",
                                hex64(*want), hex64(h)));
            m.manifest_hash = h;
            header = true;
            continue;
        }
        const std::string type = f.string("type");
        if (!f.ok())
            return lines.fail(f.error());
        if (type == "segment") {
            ModelSegment s{f.hex64("id"), 0, false};
            if (f.ok() && !segs.contains(s.id))
                f.fail(fmt::format("segment {} is not in the library", hex64(s.id)));
            if (f.ok() && !seen_segments.insert(s.id).second)
                f.fail(fmt::format("segment {} declared twice", hex64(s.id)));
            s.order = f.number("order", jsonl::Need::kOptional);
            if (f.ok() && !(s.order >= 0 && s.order <= 1e9))
                f.fail(fmt::format("\"order\" is out of range (expected a number from 0 to 1e9, "
                                   "found {})",
                                   jsonl::shown(*v.find("order"))));
            s.rebuilt = f.boolean("rebuilt", jsonl::Need::kOptional);
            if (!f.ok())
                return lines.fail(f.error());
            m.segments.push_back(s);
        } else if (type == "example") {
            if (m.examples.size() >= kMaxModelExamples)
                return lines.fail(
                    fmt::format("too many examples (expected at most {})", kMaxModelExamples));
            ModelExample e;
            e.user = f.string("user", jsonl::Need::kOptional);
            if (e.user.size() > analysis::kHistoryMaxUserBytes)
                f.fail(fmt::format("\"user\" is too long (expected at most {} bytes, found {})",
                                   analysis::kHistoryMaxUserBytes, e.user.size()));
            e.count = f.count("count", jsonl::Need::kRequired, kMaxExampleCount, 1);
            const json::Value* fs = f.array("features");
            if (fs && fs->array.size() > kMaxExampleFeatures)
                f.fail(fmt::format("\"features\" holds too many (expected at most {}, found {})",
                                   kMaxExampleFeatures, fs->array.size()));
            for (size_t i = 0; fs && f.ok() && i < fs->array.size(); i++) {
                const json::Value& x = fs->array[i];
                if (x.type == json::Value::Type::kString && !x.string.empty() &&
                    x.string.size() <= kMaxFeatureBytes)
                    e.features.push_back(x.string);
                else
                    f.fail(fmt::format("bad feature (expected a string of 1 to {} bytes, found {})",
                                       kMaxFeatureBytes, jsonl::shown(x)));
            }
            std::sort(e.features.begin(), e.features.end());
            e.features.erase(std::unique(e.features.begin(), e.features.end()), e.features.end());
            const json::Value* ss = f.array("segments");
            if (ss && ss->array.size() > segs.size())
                f.fail(fmt::format("\"segments\" holds more than the library's {} segments",
                                   segs.size()));
            for (size_t i = 0; ss && f.ok() && i < ss->array.size(); i++) {
                auto id = jsonl::as_hex64(ss->array[i]);
                if (!id)
                    f.fail(fmt::format("bad segment id (expected 16 hex digits, found {})",
                                       jsonl::shown(ss->array[i])));
                else if (!segs.contains(*id))
                    f.fail(fmt::format("segment {} is not in the library", hex64(*id)));
                else
                    e.segments.push_back(*id);
            }
            if (!f.ok())
                return lines.fail(f.error());
            std::sort(e.segments.begin(), e.segments.end());
            e.segments.erase(std::unique(e.segments.begin(), e.segments.end()), e.segments.end());
            m.examples.push_back(std::move(e));
        }
        // Other types: ignored (a later version 1 may add records).
    }
    if (!header)
        return lines.fail_file("empty model (expected a presnap-model header)");
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
