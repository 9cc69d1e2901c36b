// Opens a snapshot library with library::open_library, as every tool that
// uses one does, and prints one line per snapshot:
//   ID<TAB>FILE<TAB>BENEFIT_US<TAB>SEGMENTS_SAVED<TAB>WARMUP<TAB>HELD_OUT
// then "ok N". Exits 1 with the reader's error when the library is not
// valid, or when a snapshot file it lists is missing.
//   library_check DIR
#include "presnap/library/library.h"

#include <cstdio>
#include <filesystem>
#include <fmt/format.h>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fputs("usage: library_check DIR\n", stderr);
        return 2;
    }
    auto lib = presnap::library::open_library(argv[1]);
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
    fmt::print("ok {}\n", lib->snapshots.size());
    return 0;
}
