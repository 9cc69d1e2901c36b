// Evidence: execution history and LLVM profiles on top of the static
// estimate (docs/analysis.md, "Evidence").
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <llvm/ProfileData/InstrProf.h>
#include <llvm/ProfileData/InstrProfReader.h>
#include <llvm/Support/FileSystem.h>

#include "internal.h"
#include "presnap/analysis/hash.h"
#include "presnap/analysis/history.h"

namespace presnap::analysis::detail {

namespace {

// "-" is standard input (pea-analyze --history -).
Result<std::string> slurp(const std::string& path) {
    if (path == "-") {
        std::ostringstream ss;
        ss << std::cin.rdbuf();
        if (std::cin.bad())
            return std::unexpected(Error{Errc::kIo, "cannot read", path});
        return ss.str();
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::string why = std::strerror(errno);
        if (!why.empty())
            why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
        return std::unexpected(Error{Errc::kIo, "cannot read: " + why, path});
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Posterior mean of a Beta(S*w0, S*(1-w0)) prior after k of n requests.
double posterior(double w0, double k, double n, double strength) {
    return (k + strength * w0) / (n + strength);
}

} // namespace

Status apply_history(Context& cx, const AnalyzeOptions& o, AnalyzeReport& rep) {
    auto text = slurp(*o.history);
    if (!text)
        return std::unexpected(text.error());
    auto h = parse_history(*text, *o.history, o.strict);
    if (!h)
        return std::unexpected(h.error());
    rep.history_skipped = h->skipped;
    rep.history_problems = h->problems;
    rep.history_requests = h->requests.size();

    std::map<uint64_t, std::vector<SegInfo*>> by_id, by_sid;
    for (auto& si : cx.segs) {
        by_id[si.seg.id].push_back(&si);
        by_sid[si.seg.sid].push_back(&si);
    }
    std::map<uint64_t, uint64_t> declared; // history id -> sid
    for (auto& d : h->segments)
        declared[d.id] = d.sid;

    // A declared segment is matched by its structural id: the same code at
    // the same position, here or in another program. An undeclared id can
    // only mean this program's segment of that id.
    auto resolve = [&](uint64_t id, bool& via_sid) -> const std::vector<SegInfo*>* {
        via_sid = false;
        if (auto d = declared.find(id); d != declared.end()) {
            auto s = by_sid.find(d->second);
            if (s == by_sid.end())
                return nullptr;
            via_sid = true;
            return &s->second;
        }
        auto it = by_id.find(id);
        return it == by_id.end() ? nullptr : &it->second;
    };
    // Which of our segments the history could have seen at all: a segment
    // of a function the traced program did not have is not evidence of
    // absence.
    std::set<SegInfo*> observable;
    if (declared.empty()) {
        for (auto& si : cx.segs)
            observable.insert(&si);
    } else {
        for (auto& [id, sid] : declared)
            if (auto s = by_sid.find(sid); s != by_sid.end())
                observable.insert(s->second.begin(), s->second.end());
    }
    std::map<SegInfo*, double> k;
    std::set<SegInfo*> by_sid_matched;
    for (auto& r : h->requests) {
        std::set<SegInfo*> ran;
        for (uint64_t id : r.segments) {
            bool via_sid;
            const auto* segs = resolve(id, via_sid);
            if (!segs) {
                rep.history_unknown++;
                continue;
            }
            ran.insert(segs->begin(), segs->end());
            for (auto* si : *segs)
                if (via_sid && si->seg.id != id)
                    by_sid_matched.insert(si);
        }
        for (auto* si : ran) {
            k[si] += 1;
            observable.insert(si);
        }
    }
    rep.history_matched_by_sid = by_sid_matched.size();
    const double n = static_cast<double>(h->requests.size());
    if (n == 0)
        return {};
    for (auto* si : observable) {
        Segment& s = si->seg;
        double w0 = s.weight;
        double w = posterior(w0, k[si], n, o.prior_strength);
        s.count = w0 > 1e-12 ? s.count * w / w0 : w;
        s.weight = w;
        s.evidence =
            fmt::format("history:{}/{}", static_cast<uint64_t>(k[si]), static_cast<uint64_t>(n));
    }
    return {};
}

Status apply_profile(Context& cx, const AnalyzeOptions& o, AnalyzeReport& rep) {
    const std::string& path = *o.profile;
    if (!llvm::sys::fs::exists(path))
        return std::unexpected(Error{Errc::kIo, "cannot read: no such file or directory", path});
    auto rd = llvm::IndexedInstrProfReader::create(path);
    if (!rd) {
        std::string msg = llvm::toString(rd.takeError());
        return std::unexpected(Error{Errc::kFormat,
                                     "not an indexed profile (expected .profdata from "
                                     "llvm-profdata merge, found " +
                                         msg + ")",
                                     path});
    }
    // Entry counts by profile name; local functions are "file:name", so
    // also index by the bare name where that is unambiguous.
    std::map<std::string, double> entry, bare;
    for (const auto& rec : **rd) {
        if (rec.Counts.empty())
            continue;
        std::string name = rec.Name.str();
        entry[name] += static_cast<double>(rec.Counts[0]);
        std::string b = name.substr(name.rfind(':') == std::string::npos ? 0 : name.rfind(':') + 1);
        bare[b] += static_cast<double>(rec.Counts[0]);
    }
    if ((*rd)->hasError())
        return std::unexpected(
            Error{Errc::kFormat, "corrupt profile: " + llvm::toString((*rd)->getError()), path});
    const double n = o.profile_requests;
    for (auto& fi : cx.fns) {
        // main's entry count is per process, not per request: its request
        // loop, not the profile, says what a request is.
        if (fi->request_loop)
            continue;
        double c;
        if (auto it = entry.find(llvm::getPGOFuncName(*fi->f)); it != entry.end())
            c = it->second;
        else if (auto b = bare.find(fi->f->getName().str()); b != bare.end())
            c = b->second;
        else
            continue;
        rep.profile_functions++;
        // Entries bound the number of requests that ran the function: the
        // profile cannot say whether 10 entries were 10 requests or one.
        double w0 = fi->prob;
        double w = posterior(w0, std::min(n, c), n, o.prior_strength);
        fi->calls_per_request = c / n;
        fi->prob = w;
        compute_blocks(*fi);
        fill_segment_values(cx, fi.get());
        for (auto& si : cx.segs)
            if (si.fn == fi.get())
                si.seg.evidence = fmt::format("profile:{}", static_cast<uint64_t>(c));
    }
    if (rep.profile_functions == 0)
        return std::unexpected(Error{Errc::kInvalidArgument,
                                     "profile does not match the bitcode (expected counts for "
                                     "its functions, found none)",
                                     path});
    return {};
}

} // namespace presnap::analysis::detail
