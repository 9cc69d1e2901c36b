// The Selector: prediction (history nearest neighbours, or the map's priors
// and route tokens) and the choice of snapshots by expected saving.
#include "presnap/select/select.h"

#include "internal.h"
#include "presnap/analysis/hash.h"
#include "presnap/analysis/pmap.h"
#include "presnap/library/composites.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <unordered_map>

namespace presnap::select {

namespace {

// Neighbours that vote on a request's path.
constexpr size_t kNeighbours = 8;
constexpr double kNeighbourCutoff = 0.5;
// Below this similarity to the nearest example, the map answers instead.
constexpr double kMinSimilarity = 0.25;
// A route token matched in the request / not matched (static prediction).
constexpr double kTokenMatched = 0.95;
constexpr double kTokenUnmatched = 0.0;
// How much a feature's rarity adds to its weight, next to what it tells
// (bits) about the route.
constexpr double kRarityWeight = 0.02;
// Pseudo-examples of the overall route distribution added to a feature's.
constexpr double kShrink = 1.0;

struct Example {
    std::vector<uint32_t> features; // feature ids, sorted
    std::vector<uint32_t> segs;     // segment indices, sorted
    double count = 1;
    double weight = 0; // sum of its features' idf
};

// One user's nearest-neighbour index (user "" = every example).
struct Index {
    std::unordered_map<std::string, uint32_t> feature_ids;
    std::vector<double> idf;
    std::vector<std::vector<uint32_t>> postings; // feature -> examples
    std::vector<Example> examples;
    // The weight of a feature no example has: the mean weight of the known
    // features of its kind (the text before its first ':'), so that an
    // unknown first word weighs like a first word.
    std::unordered_map<std::string, double> unseen_weight;
};

} // namespace

struct State {
    library::Library lib;
    struct Seg {
        uint64_t id = 0;
        std::string name;
        double weight = 0; // the map's
        std::vector<std::string> tokens;
        double order = 0;
        bool rebuilt = false;
    };
    std::vector<Seg> segs;
    std::unordered_map<uint64_t, uint32_t> seg_index;
    struct Snap {
        std::vector<uint32_t> segs;     // all its segments
        std::vector<uint32_t> distinct; // those not in every snapshot (its route)
        std::vector<uint32_t> tokened;  // distinct ones with route tokens
        double page_pages = 0;
        bool rebuilt = false; // holds a rebuilt segment
    };
    std::vector<Snap> snaps;
    uint64_t total_bytes = 0;
    bool any_rebuilt = false;
    bool trained = false;
    std::map<std::string, Index> users; // "" = everyone
};

namespace {

bool contains_sorted(const std::vector<uint32_t>& hay, const std::vector<uint32_t>& needles) {
    return std::includes(hay.begin(), hay.end(), needles.begin(), needles.end());
}

Result<std::shared_ptr<State>> base_state(const library::Library& lib) {
    auto st = std::make_shared<State>();
    st->lib = lib;
    analysis::ProbabilityMap map;
    if (!lib.map_path.empty()) {
        auto text = read_bounded_file(lib.map_path, kMaxModelBytes);
        if (!text)
            return std::unexpected(text.error());
        auto parsed = analysis::parse_pmap_text(*text, lib.map_path);
        if (!parsed)
            return std::unexpected(parsed.error());
        map = std::move(*parsed);
    }
    std::unordered_map<uint64_t, size_t> in_map;
    for (size_t i = 0; i < map.segments.size(); i++)
        in_map.emplace(map.segments[i].id, i);
    for (const auto& e : lib.snapshots) {
        for (size_t k = 0; k < e.segments.size(); k++) {
            uint64_t id = e.segments[k];
            if (st->seg_index.contains(id))
                continue;
            State::Seg s;
            s.id = id;
            s.name = k < e.names.size() ? e.names[k] : analysis::hex64(id);
            if (auto it = in_map.find(id); it != in_map.end()) {
                const auto& ms = map.segments[it->second];
                s.weight = ms.weight;
                s.tokens = ms.tokens;
                s.order = double(it->second); // map order until history says better
            } else {
                s.weight = e.weight;
                s.order = 1e6;
            }
            st->seg_index.emplace(id, uint32_t(st->segs.size()));
            st->segs.push_back(std::move(s));
        }
    }
    std::vector<size_t> in_snaps(st->segs.size(), 0);
    for (const auto& e : lib.snapshots) {
        State::Snap sn;
        for (uint64_t id : e.segments)
            sn.segs.push_back(st->seg_index.at(id));
        std::sort(sn.segs.begin(), sn.segs.end());
        sn.segs.erase(std::unique(sn.segs.begin(), sn.segs.end()), sn.segs.end());
        for (uint32_t s : sn.segs)
            in_snaps[s]++;
        sn.page_pages = double(e.pages);
        st->total_bytes += e.bytes;
        st->snaps.push_back(std::move(sn));
    }
    for (auto& sn : st->snaps) {
        for (uint32_t s : sn.segs)
            if (st->snaps.size() < 2 || in_snaps[s] < st->snaps.size())
                sn.distinct.push_back(s);
        if (sn.distinct.empty())
            sn.distinct = sn.segs;
        for (uint32_t s : sn.distinct)
            if (!st->segs[s].tokens.empty())
                sn.tokened.push_back(s);
    }
    return st;
}

std::string feature_kind(const std::string& name) {
    return name.substr(0, name.find(':'));
}

void build_index(Index& ix, const State& st, const std::vector<const ModelExample*>& examples) {
    std::map<std::pair<std::vector<uint32_t>, std::vector<uint32_t>>, double> merged;
    for (const ModelExample* e : examples) {
        std::vector<uint32_t> f, s;
        for (const auto& name : e->features) {
            auto [it, added] = ix.feature_ids.emplace(name, uint32_t(ix.feature_ids.size()));
            f.push_back(it->second);
        }
        std::sort(f.begin(), f.end());
        for (uint64_t id : e->segments)
            if (auto it = st.seg_index.find(id); it != st.seg_index.end())
                s.push_back(it->second);
        std::sort(s.begin(), s.end());
        merged[{std::move(f), std::move(s)}] += double(e->count);
    }
    for (auto& [key, count] : merged)
        ix.examples.push_back(Example{key.first, key.second, count, 0});
    // Feature weights: how much knowing that a request has the feature
    // tells about its route (which snapshots' routes the example ran): the
    // entropy of the routes over all examples minus their entropy over the
    // examples with the feature, those counts shrunk towards the overall
    // distribution by one pseudo-example so that a feature seen once is
    // trusted less than one seen often; plus a little of its rarity so that
    // ties still prefer closer requests. A feature every route shares (a
    // JSON key, a length) weighs almost nothing; one that names the route
    // (the first word, a tenant) weighs the most.
    const size_t nf = ix.feature_ids.size();
    std::map<std::vector<uint32_t>, uint32_t> class_ids;
    std::vector<uint32_t> cls(ix.examples.size());
    for (size_t e = 0; e < ix.examples.size(); e++) {
        std::vector<uint32_t> routes;
        for (uint32_t j = 0; j < st.snaps.size(); j++)
            if (contains_sorted(ix.examples[e].segs, st.snaps[j].distinct))
                routes.push_back(j);
        cls[e] = class_ids.emplace(std::move(routes), uint32_t(class_ids.size())).first->second;
    }
    const size_t nc = class_ids.size();
    std::vector<double> total_by_class(nc, 0);
    double total = 0;
    for (size_t e = 0; e < ix.examples.size(); e++) {
        total_by_class[cls[e]] += ix.examples[e].count;
        total += ix.examples[e].count;
    }
    auto entropy = [](const std::vector<double>& counts, double n) {
        double h = 0;
        for (double c : counts)
            if (c > 0 && n > 0)
                h -= (c / n) * std::log2(c / n);
        return h;
    };
    const double h_all = entropy(total_by_class, total);
    ix.postings.assign(nf, {});
    for (uint32_t e = 0; e < ix.examples.size(); e++)
        for (uint32_t f : ix.examples[e].features)
            ix.postings[f].push_back(e);
    ix.idf.assign(nf, 0);
    const double max_idf = std::log(double(ix.examples.size()) + 1);
    std::vector<double> with(nc);
    for (size_t f = 0; f < nf; f++) {
        std::fill(with.begin(), with.end(), 0);
        double n_with = 0;
        for (uint32_t e : ix.postings[f]) {
            with[cls[e]] += ix.examples[e].count;
            n_with += ix.examples[e].count;
        }
        for (size_t c = 0; c < nc; c++)
            with[c] += kShrink * total_by_class[c] / total;
        const double gain = h_all - entropy(with, n_with + kShrink);
        const double rarity =
            std::log((double(ix.examples.size()) + 1) / double(ix.postings[f].size())) / max_idf;
        ix.idf[f] = std::max(0.0, gain) + kRarityWeight * rarity;
    }
    std::unordered_map<std::string, std::pair<double, double>> kinds;
    for (const auto& [name, id] : ix.feature_ids) {
        auto& k = kinds[feature_kind(name)];
        k.first += ix.idf[id];
        k.second += 1;
    }
    for (const auto& [kind, sum] : kinds)
        ix.unseen_weight[kind] = sum.first / sum.second;
    for (auto& ex : ix.examples)
        for (uint32_t f : ex.features)
            ex.weight += ix.idf[f];
}

Result<std::shared_ptr<State>> trained_state(const library::Library& lib, const Model& model) {
    auto st = base_state(lib);
    if (!st)
        return st;
    State& s = **st;
    s.trained = true;
    for (const auto& ms : model.segments)
        if (auto it = s.seg_index.find(ms.id); it != s.seg_index.end()) {
            s.segs[it->second].order = ms.order;
            s.segs[it->second].rebuilt = ms.rebuilt;
        }
    for (auto& sn : s.snaps) {
        for (uint32_t k : sn.segs)
            sn.rebuilt = sn.rebuilt || s.segs[k].rebuilt;
        s.any_rebuilt = s.any_rebuilt || sn.rebuilt;
    }
    std::map<std::string, std::vector<const ModelExample*>> by_user;
    for (const auto& e : model.examples) {
        by_user[""].push_back(&e);
        if (!e.user.empty())
            by_user[e.user].push_back(&e);
    }
    for (const auto& [user, list] : by_user)
        build_index(s.users[user], s, list);
    return st;
}

// Per-segment and per-snapshot probabilities for one request.
struct Prediction {
    std::vector<double> seg;  // by segment index
    std::vector<double> snap; // by snapshot index
    bool from_history = false;
    double similarity = 0;
};

bool predict_history(const Index& ix, const State& st, const std::vector<std::string>& features,
                     Prediction& p) {
    if (ix.examples.empty())
        return false;
    double query_weight = 0;
    uint32_t top = UINT32_MAX; // the query's most informative known feature
    std::vector<uint32_t> known;
    known.reserve(features.size());
    for (const auto& name : features) {
        auto it = ix.feature_ids.find(name);
        if (it == ix.feature_ids.end()) {
            if (auto u = ix.unseen_weight.find(feature_kind(name)); u != ix.unseen_weight.end())
                query_weight += u->second;
            continue;
        }
        const double w = ix.idf[it->second];
        query_weight += w;
        known.push_back(it->second);
        if (top == UINT32_MAX || w > ix.idf[top] ||
            (w == ix.idf[top] && ix.postings[it->second].size() > ix.postings[top].size()))
            top = it->second;
    }
    if (top == UINT32_MAX)
        return false;
    std::sort(known.begin(), known.end());
    struct Scored {
        double sim;
        uint32_t e;
    };
    // Neighbours share the most informative feature (the route's word, the
    // tenant's name): a request that matches another route's examples on
    // weaker features (an op, a length) is not evidence for that route. So
    // only the examples with that feature are scored, each by a merge of
    // two sorted feature lists.
    std::vector<Scored> scored;
    scored.reserve(ix.postings[top].size());
    for (uint32_t e : ix.postings[top]) {
        const auto& ef = ix.examples[e].features;
        double shared = 0;
        for (size_t a = 0, b = 0; a < known.size() && b < ef.size();) {
            if (known[a] < ef[b])
                a++;
            else if (ef[b] < known[a])
                b++;
            else {
                shared += ix.idf[known[a]];
                a++;
                b++;
            }
        }
        const double uni = query_weight + ix.examples[e].weight - shared;
        if (shared > 0 && uni > 0)
            scored.push_back({shared / uni, e});
    }
    if (scored.empty())
        return false;
    // No example close enough: the history knows nothing about this request.
    const auto best =
        std::max_element(scored.begin(), scored.end(),
                         [](const Scored& a, const Scored& b) { return a.sim < b.sim; });
    if (best->sim < kMinSimilarity)
        return false;
    const size_t k = std::min(kNeighbours, scored.size());
    std::partial_sort(scored.begin(), scored.begin() + ptrdiff_t(k), scored.end(),
                      [](const Scored& a, const Scored& b) {
                          return a.sim != b.sim ? a.sim > b.sim : a.e < b.e;
                      });
    p.seg.assign(st.segs.size(), 0);
    p.snap.assign(st.snaps.size(), 0);
    double total = 0;
    for (size_t i = 0; i < k; i++) {
        // Only near neighbours vote: those at least half as similar as the
        // nearest (a request far from every route's examples is not
        // evidence for any route).
        if (scored[i].sim < kNeighbourCutoff * scored[0].sim)
            break;
        const Example& ex = ix.examples[scored[i].e];
        const double w = ex.count * scored[i].sim * scored[i].sim;
        total += w;
        for (uint32_t s : ex.segs)
            p.seg[s] += w;
        for (size_t j = 0; j < st.snaps.size(); j++)
            if (contains_sorted(ex.segs, st.snaps[j].distinct))
                p.snap[j] += w;
    }
    for (double& v : p.seg)
        v /= total;
    for (double& v : p.snap)
        v /= total;
    p.from_history = true;
    p.similarity = scored[0].sim;
    return true;
}

// True when `token` occurs in the request as one of its words, JSON keys or
// values, or (3 bytes or longer) anywhere in its bytes.
bool token_matches(std::string_view request, const std::vector<std::string>& features,
                   const std::string& token) {
    if (token.size() >= 3)
        return request.find(token) != std::string_view::npos;
    return std::binary_search(features.begin(), features.end(), "w:" + token);
}

void predict_static(const State& st, std::string_view request,
                    const std::vector<std::string>& features, Prediction& p) {
    p.seg.assign(st.segs.size(), 0);
    p.snap.assign(st.snaps.size(), 0);
    for (size_t i = 0; i < st.segs.size(); i++) {
        const auto& s = st.segs[i];
        if (s.tokens.empty()) {
            p.seg[i] = s.weight;
            continue;
        }
        bool hit = std::any_of(s.tokens.begin(), s.tokens.end(), [&](const std::string& t) {
            return token_matches(request, features, t);
        });
        p.seg[i] = hit ? std::max(kTokenMatched, s.weight) : std::min(kTokenUnmatched, s.weight);
    }
    for (size_t j = 0; j < st.snaps.size(); j++) {
        const auto& sn = st.snaps[j];
        const auto& use = sn.tokened.empty() ? sn.distinct : sn.tokened;
        double v = 1;
        for (uint32_t s : use)
            v = std::min(v, p.seg[s]);
        p.snap[j] = use.empty() ? 0 : v;
    }
    // A segment of a snapshot's route runs when the route does.
    for (size_t j = 0; j < st.snaps.size(); j++)
        for (uint32_t s : st.snaps[j].distinct)
            if (st.segs[s].tokens.empty())
                p.seg[s] = std::max(p.seg[s], p.snap[j]);
}

} // namespace

Result<Selector> Selector::static_only(const library::Library& lib) {
    auto st = base_state(lib);
    if (!st)
        return std::unexpected(st.error());
    Selector s;
    s.state_ = std::move(*st);
    return s;
}

Result<Selector> Selector::with_model(const library::Library& lib, const Model& model) {
    auto st = trained_state(lib, model);
    if (!st)
        return std::unexpected(st.error());
    Selector s;
    s.state_ = std::move(*st);
    return s;
}

Result<Selector> Selector::open(const library::Library& lib) {
    const std::string path = lib.dir + "/" + kModelFile;
    std::error_code ec;
    Result<Selector> s;
    if (!std::filesystem::exists(path, ec)) {
        s = static_only(lib);
    } else {
        auto text = read_bounded_file(path, kMaxModelBytes);
        if (!text)
            return std::unexpected(text.error());
        auto model = parse_model(*text, path, lib);
        if (!model)
            return std::unexpected(model.error());
        s = with_model(lib, *model);
    }
    if (s)
        s->load_cached_sets();
    return s;
}

void Selector::load_cached_sets() {
    cached_.clear();
    if (!state_)
        return;
    const auto& entries = state_->lib.snapshots;
    std::error_code ec;
    std::filesystem::directory_iterator it(library::composites_dir(state_->lib), ec), end;
    size_t seen = 0;
    for (; !ec && it != end && seen < 4096; it.increment(ec), seen++) {
        // docs/formats/composites.md; long sets are named by a hash of their
        // ids and are not listed here.
        auto name = library::parse_composite_file_name(it->path().filename().string());
        if (!name)
            continue;
        std::vector<size_t> set;
        bool ok = true;
        for (const auto& id : name->ids) {
            auto e = std::find_if(entries.begin(), entries.end(),
                                  [&](const library::Entry& x) { return x.id == id; });
            ok = ok && e != entries.end();
            if (ok)
                set.push_back(size_t(e - entries.begin()));
        }
        std::sort(set.begin(), set.end());
        if (ok && set.size() >= 2 && std::adjacent_find(set.begin(), set.end()) == set.end())
            cached_.push_back(std::move(set));
    }
}

bool Selector::trained() const {
    return state_ && state_->trained;
}

const library::Library& Selector::library() const {
    return state_->lib;
}

Selection Selector::select(std::string_view request, const SelectOptions& options) const {
    Selection out;
    if (!state_)
        return out;
    const State& st = *state_;
    const auto features = request_features(request);
    Prediction p;
    if (st.trained) {
        auto it = st.users.end();
        if (!options.user.empty()) {
            it = st.users.find(options.user);
            if (it != st.users.end())
                out.user_model = options.user;
        }
        if (it == st.users.end())
            it = st.users.find("");
        if (it != st.users.end() && predict_history(it->second, st, features, p)) {
            out.source = "history";
            out.similarity = p.similarity;
        }
    }
    if (!p.from_history) {
        out.user_model.clear();
        predict_static(st, request, features, p);
        out.source = "static";
    }

    // The path: segments more likely than not, first-hit order.
    std::vector<uint32_t> path;
    for (uint32_t s = 0; s < st.segs.size(); s++)
        if (p.seg[s] >= 0.5)
            path.push_back(s);
    std::sort(path.begin(), path.end(), [&](uint32_t a, uint32_t b) {
        return st.segs[a].order != st.segs[b].order ? st.segs[a].order < st.segs[b].order
                                                    : st.segs[a].id < st.segs[b].id;
    });
    for (uint32_t s : path)
        out.path.push_back({st.segs[s].id, st.segs[s].name, p.seg[s]});

    // Candidates and their expected saving.
    const auto& entries = st.lib.snapshots;
    out.candidates.resize(entries.size());
    for (size_t j = 0; j < entries.size(); j++) {
        Candidate& c = out.candidates[j];
        c.id = entries[j].id;
        c.probability = p.snap[j];
        c.benefit_us = entries[j].benefit_us;
        c.page_cost_us = options.page_cost_us * st.snaps[j].page_pages;
        c.value_us = c.probability * c.benefit_us - c.page_cost_us;
        c.bytes = entries[j].bytes;
    }

    // Warm-all: every snapshot, when they fit in the budget and no route's
    // state is known to be dropped by another's (a rebuilt lazy segment).
    const bool fits = options.max_bytes == 0 || st.total_bytes <= options.max_bytes;
    if (entries.empty())
        out.warm_all_reason = "the library has no snapshot";
    else if (!options.allow_warm_all)
        out.warm_all_reason = "not considered (turned off)";
    else if (st.any_rebuilt) {
        std::string which;
        for (size_t j = 0; j < entries.size(); j++)
            if (st.snaps[j].rebuilt)
                which += (which.empty() ? "" : ",") + entries[j].id;
        out.warm_all_reason = fmt::format(
            "impossible: history shows lazy state rebuilt within one run (the program drops "
            "it), so the routes of {} cannot all stay warm at once",
            which);
    } else if (!fits)
        out.warm_all_reason = fmt::format("over the budget: all snapshots take {} bytes, "
                                          "max-bytes is {}",
                                          st.total_bytes, options.max_bytes);
    if (out.warm_all_reason.empty()) {
        out.warm_all = true;
        out.warm_all_reason =
            fmt::format("chosen: all {} snapshots fit ({} bytes{}) and no route's "
                        "state is known to be dropped by another's",
                        entries.size(), st.total_bytes,
                        options.max_bytes ? fmt::format(" of {}", options.max_bytes)
                                          : std::string(", no budget"));
        for (auto& c : out.candidates) {
            c.chosen = true;
            c.why = "warm-all";
        }
    } else {
        // Greedy by value per byte within the budget, then the best single
        // candidate if it alone is worth more (the knapsack's classic fix).
        std::vector<size_t> order;
        for (size_t j = 0; j < entries.size(); j++) {
            if (out.candidates[j].value_us > 0)
                order.push_back(j);
            else
                out.candidates[j].why = "no expected saving";
        }
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
            const double da =
                out.candidates[a].value_us / double(std::max<uint64_t>(1, entries[a].bytes));
            const double db =
                out.candidates[b].value_us / double(std::max<uint64_t>(1, entries[b].bytes));
            return da != db ? da > db : a < b;
        });
        uint64_t used = 0;
        double greedy_value = 0;
        std::vector<size_t> greedy;
        for (size_t j : order) {
            if (options.max_bytes && used + entries[j].bytes > options.max_bytes) {
                out.candidates[j].why = "over the byte budget";
                continue;
            }
            used += entries[j].bytes;
            greedy_value += out.candidates[j].value_us;
            greedy.push_back(j);
        }
        size_t best_single = SIZE_MAX;
        for (size_t j : order)
            if ((!options.max_bytes || entries[j].bytes <= options.max_bytes) &&
                (best_single == SIZE_MAX ||
                 out.candidates[j].value_us > out.candidates[best_single].value_us))
                best_single = j;
        if (best_single != SIZE_MAX && out.candidates[best_single].value_us > greedy_value) {
            for (size_t j : greedy)
                out.candidates[j].why = "over the byte budget";
            greedy = {best_single};
        }
        for (size_t j : greedy) {
            out.candidates[j].chosen = true;
            out.candidates[j].why = "chosen";
        }
    }
    // Prefer a set whose composite is already made: the smallest cached
    // superset of the choice within the budget (its extra snapshots add
    // pages, never a wrong answer, and no composite has to be built).
    std::vector<size_t> chosen;
    for (size_t j = 0; j < entries.size(); j++)
        if (out.candidates[j].chosen)
            chosen.push_back(j);
    auto is_cached = [&](const std::vector<size_t>& set) {
        return std::find(cached_.begin(), cached_.end(), set) != cached_.end();
    };
    if (chosen.size() >= 2 && !is_cached(chosen)) {
        const std::vector<size_t>* best = nullptr;
        uint64_t best_bytes = 0;
        for (const auto& c : cached_) {
            if (!std::includes(c.begin(), c.end(), chosen.begin(), chosen.end()))
                continue;
            uint64_t bytes = 0;
            for (size_t j : c)
                bytes += entries[j].bytes;
            if ((options.max_bytes && bytes > options.max_bytes) || (best && bytes >= best_bytes))
                continue;
            best = &c;
            best_bytes = bytes;
        }
        if (best) {
            for (size_t j : *best)
                if (!out.candidates[j].chosen) {
                    out.candidates[j].chosen = true;
                    out.candidates[j].why = "in a cached composite with the chosen ones";
                }
            out.cached_superset = true;
        }
    }
    for (size_t j = 0; j < entries.size(); j++)
        if (out.candidates[j].chosen) {
            out.snapshots.push_back(entries[j].id);
            out.bytes += entries[j].bytes;
            out.expected_saving_us += out.candidates[j].value_us;
        }
    return out;
}

} // namespace presnap::select
