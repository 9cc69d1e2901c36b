// libFuzzer target for the selection readers, both forms: snapselect's
// (select::parse_selection), against a fixed library of three snapshots, and
// snapmerge's (merge::parse_selections), which checks ids later. Any input
// must be refused with a message, or give selections of known ids, each
// once, in manifest order, that the writer turns into text read back the
// same; snapmerge's reader must refuse with a message or give at most
// kMaxSelectionIds ids a selection.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include "presnap/library/library.h"
#include "presnap/merge/selection_input.h"
#include "presnap/select/select.h"

using namespace presnap;

namespace {
library::Library lib;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* tmp = std::getenv("TMPDIR");
    std::string t = std::string(tmp && *tmp ? tmp : "/tmp") + "/presnap-selfuzz-XXXXXX";
    if (!::mkdtemp(t.data()))
        std::abort();
    std::ofstream m(t + "/manifest.jsonl");
    m << R"({"format":"presnap-library","version":1,"generator":"presnap 0.1.0",)"
         R"("program":"/bin/x","base":"base.snap","base_bytes":4096,"requests":3,"failed":0})"
      << "\n";
    for (const char* f : {"s001.snap", "s002.snap", "s003.snap"})
        m << R"({"type":"snapshot","file":")" << f
          << R"(","segments":["00000000000000a0"],"names":["a"],"weight":0.5,"base_us":9,)"
             R"("snapshot_us":1,"benefit_us":8,"pages":1,"bytes":8192,"route_requests":1,)"
             R"("warmup":"w","held_out":"h","warmup_response":"r\n"})"
          << "\n";
    m.close();
    auto l = library::open_library(t);
    if (!l)
        std::abort();
    lib = *l;
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto m = merge::parse_selections(text); m) {
        for (const auto& ids : *m)
            if (ids.size() > merge::kMaxSelectionIds)
                std::abort();
    } else if (m.error().message.empty()) {
        std::abort();
    }
    auto sel = select::parse_selection(text, "fuzz", &lib);
    if (!sel) {
        if (sel.error().message.empty())
            std::abort();
        return 0;
    }
    std::string again = select::format_selection_header();
    for (const auto& ids : *sel) {
        size_t last = 0;
        select::Selection s;
        for (const auto& id : ids) {
            const library::Entry* e = lib.find(id);
            if (!e)
                std::abort(); // an id the library does not have
            size_t at = size_t(e - lib.snapshots.data()) + 1;
            if (at <= last)
                std::abort(); // not in manifest order, or twice
            last = at;
            s.snapshots.push_back(id);
        }
        again += select::format_selection_line(s);
    }
    auto back = select::parse_selection(again, "again", &lib);
    if (!back || *back != *sel)
        std::abort(); // the writer wrote what the reader refuses or reads differently
    return 0;
}
