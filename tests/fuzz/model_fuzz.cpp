// libFuzzer target for the selection model reader (select::parse_model,
// docs/formats/model.md) against a fixed library: the numtheory example's,
// checked in as model_library/ (manifest.jsonl and map.pmap), which the
// seeds' real model was trained for. Any input must be refused with a
// message, or give a model within the documented limits, of the library's
// segments only, that the writer turns into text read back the same and that
// a Selector answers requests from.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <unistd.h>

#include "presnap/select/select.h"

#ifndef PRESNAP_FUZZ_MODEL_LIBRARY
#error "PRESNAP_FUZZ_MODEL_LIBRARY: the directory of the library the seeds were trained for"
#endif

using namespace presnap;

namespace {
library::Library lib;
std::vector<uint64_t> segments; // the library's, sorted

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "model_fuzz: %s\n", what);
    std::abort();
}
} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // A copy: open_library needs a directory it may resolve, and the checked-in
    // one must not be written by a Selector.
    const char* tmp = std::getenv("TMPDIR");
    std::string t = std::string(tmp && *tmp ? tmp : "/tmp") + "/presnap-modelfuzz-XXXXXX";
    if (!::mkdtemp(t.data()))
        std::abort();
    namespace fs = std::filesystem;
    for (const char* f : {"manifest.jsonl", "map.pmap"})
        fs::copy_file(fs::path(PRESNAP_FUZZ_MODEL_LIBRARY) / f, fs::path(t) / f);
    auto l = library::open_library(t);
    if (!l) {
        std::fprintf(stderr, "model_fuzz: %s\n", l.error().describe().c_str());
        std::abort();
    }
    lib = *l;
    for (const auto& e : lib.snapshots)
        segments.insert(segments.end(), e.segments.begin(), e.segments.end());
    std::sort(segments.begin(), segments.end());
    segments.erase(std::unique(segments.begin(), segments.end()), segments.end());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto m = select::parse_model(text, "fuzz", lib);
    if (!m) {
        if (m.error().message.empty())
            bug("a refusal without a message");
        return 0;
    }
    auto known = [](uint64_t id) {
        return std::binary_search(segments.begin(), segments.end(), id);
    };
    if (m->segments.size() > segments.size() || m->examples.size() > select::kMaxModelExamples)
        bug("more segments or examples than allowed");
    for (const auto& s : m->segments)
        if (!known(s.id) || !(s.order >= 0 && s.order <= 1e9))
            bug("a segment outside the library, or its order out of range");
    for (const auto& e : m->examples) {
        if (e.count < 1 || e.count > select::kMaxExampleCount ||
            e.features.size() > select::kMaxExampleFeatures ||
            e.user.size() > analysis::kHistoryMaxUserBytes ||
            !std::is_sorted(e.segments.begin(), e.segments.end()) ||
            std::adjacent_find(e.features.begin(), e.features.end()) != e.features.end() ||
            !std::is_sorted(e.features.begin(), e.features.end()))
            bug("an example out of its limits, or not sorted and unique");
        for (const auto& f : e.features)
            if (f.empty() || f.size() > select::kMaxFeatureBytes)
                bug("a feature out of its limits");
        for (uint64_t s : e.segments)
            if (!known(s))
                bug("an example segment outside the library");
    }
    // The writer's text is read back to the same model.
    const std::string once = select::format_model(*m);
    auto back = select::parse_model(once, "again", lib);
    if (!back)
        bug("the writer wrote what the reader refuses");
    if (select::format_model(*back) != once)
        bug("the writer's text reads back differently");
    // A Selector takes it and answers.
    auto sel = select::Selector::with_model(lib, *m);
    if (!sel) {
        if (sel.error().message.empty())
            bug("a Selector refused a model without a message");
        return 0;
    }
    select::SelectOptions o;
    std::string request = "isprime 97";
    if (!m->examples.empty()) {
        o.user = m->examples[0].user;
        if (!m->examples[0].features.empty())
            request = m->examples[0].features[0];
    }
    for (const std::string& r : {request, std::string("factor 360"), std::string()}) {
        auto s = sel->select(r, o);
        for (const auto& id : s.snapshots)
            if (!lib.find(id))
                bug("a selection of a snapshot the library does not have");
    }
    return 0;
}
