// Opens a snapshot library with library::open_library, as every tool that
// uses one does, and prints one line per snapshot:
//   ID<TAB>FILE<TAB>BENEFIT_US<TAB>SEGMENTS_SAVED<TAB>WARMUP<TAB>HELD_OUT
// then "ok N". Exits 1 with the reader's error when the library is not
// valid, or when a snapshot file it lists is missing.
//   library_check DIR
//   library_check --pages DIR   also: pages stored in base + snapshots, and
//                               how many distinct page contents they hold
//                               (what a content-addressed store would keep)
#include "presnap/library/library.h"
#include "presnap/snapshot/reader.h"

#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <string_view>
#include <unordered_set>
#include <vector>

int main(int argc, char** argv) {
    bool pages = argc == 3 && std::string_view(argv[1]) == "--pages";
    if (argc != 2 && !pages) {
        std::fputs("usage: library_check [--pages] DIR\n", stderr);
        return 2;
    }
    auto lib = presnap::library::open_library(argv[argc - 1]);
    if (!lib) {
        fmt::print(stderr, "library_check: {}\n", lib.error().describe());
        return 1;
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(lib->base_path, ec)) {
        fmt::print(stderr, "library_check: {} is missing\n", lib->base_path);
        return 1;
    }
    for (const auto& e : lib->snapshots) {
        if (!std::filesystem::is_regular_file(e.path, ec)) {
            fmt::print(stderr, "library_check: {} is missing\n", e.path);
            return 1;
        }
        fmt::print("{}\t{}\t{:.1f}\t{}\t{}\t{}\n", e.id, e.file, e.benefit_us, e.segments_saved,
                   e.warmup, e.held_out);
    }
    if (pages) {
        // Every stored page of every file, by content.
        std::vector<std::string> files{lib->base_path};
        for (const auto& e : lib->snapshots)
            files.push_back(e.path);
        std::unordered_set<std::string> distinct;
        uint64_t stored = 0, file_bytes = 0;
        for (const auto& f : files) {
            auto snap = presnap::snapshot::SnapshotFile::open(f);
            if (!snap) {
                fmt::print(stderr, "library_check: {}\n", snap.error().describe());
                return 1;
            }
            file_bytes += snap->file_size();
            for (const auto& run : snap->page_runs()) {
                if (run.page_count == 0 || run.encoding == presnap::snapshot::PageEncoding::kZero)
                    continue;
                std::vector<std::uint8_t> data(run.bytes());
                if (auto r = snap->read_run(run, data); !r) {
                    fmt::print(stderr, "library_check: {}\n", r.error().describe());
                    return 1;
                }
                for (uint64_t p = 0; p < run.page_count; p++) {
                    stored++;
                    distinct.emplace(reinterpret_cast<const char*>(data.data()) +
                                         p * presnap::snapshot::kPageSize,
                                     presnap::snapshot::kPageSize);
                }
            }
        }
        fmt::print("pages\t{}\t{}\t{}\n", file_bytes, stored, distinct.size());
    }
    fmt::print("ok {}\n", lib->snapshots.size());
    return 0;
}
