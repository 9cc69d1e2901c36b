// libFuzzer target for the library manifest reader (library::open_library).
// The input is a manifest; after a line "--timings--" the rest is the
// library's timings.jsonl. Any input must be refused with a message, or give
// a library whose every snapshot file is a plain name inside the directory.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include "presnap/library/library.h"

namespace {
std::string dir;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* tmp = std::getenv("TMPDIR");
    std::string t = std::string(tmp && *tmp ? tmp : "/tmp") + "/presnap-libfuzz-XXXXXX";
    if (!::mkdtemp(t.data()))
        std::abort();
    dir = t;
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string_view manifest = in, timings;
    bool with_timings = false;
    if (size_t cut = in.find("\n--timings--\n"); cut != std::string_view::npos) {
        manifest = in.substr(0, cut + 1);
        timings = in.substr(cut + 13);
        with_timings = true;
    }
    std::ofstream(dir + "/manifest.jsonl", std::ios::binary | std::ios::trunc)
        .write(manifest.data(), std::streamsize(manifest.size()));
    if (with_timings)
        std::ofstream(dir + "/timings.jsonl", std::ios::binary | std::ios::trunc)
            .write(timings.data(), std::streamsize(timings.size()));
    else
        ::unlink((dir + "/timings.jsonl").c_str());
    auto lib = presnap::library::open_library(dir);
    if (!lib) {
        if (lib.error().message.empty())
            std::abort();
        return 0;
    }
    for (const auto& e : lib->snapshots) {
        if (e.file.find('/') != std::string::npos || e.file.find("..") != std::string::npos ||
            e.path != lib->dir + "/" + e.file || lib->find(e.id) != &e ||
            e.names.size() != e.segments.size())
            std::abort(); // a file outside the directory, or an entry that does not add up
    }
    return 0;
}
