// Helpers for the snapshot tests: a scratch directory, file I/O, and guest
// memory rebuilt from a snapshot the way a restore would.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "presnap/snapshot/reader.h"

namespace presnap::snapshot::test {

class ScratchDir {
  public:
    ScratchDir() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "presnap-snap-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    ~ScratchDir() { std::filesystem::remove_all(path_); }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::vector<std::string> entries() const {
        std::vector<std::string> names;
        for (const auto& e : std::filesystem::directory_iterator(path_))
            names.push_back(e.path().filename().string());
        return names;
    }

  private:
    std::filesystem::path path_;
};

inline std::vector<std::uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

// Applies a snapshot's runs on top of `memory` (zeros for a full snapshot,
// the parent's memory for a diff), as a restore would.
inline void apply(const SnapshotFile& file, std::vector<std::uint8_t>& memory) {
    memory.resize(file.guest_memory_size());
    for (const PageRun& run : file.page_runs()) {
        auto out = std::span<std::uint8_t>(memory).subspan(run.first_page * kPageSize, run.bytes());
        auto s = file.read_run(run, out);
        REQUIRE_MESSAGE(s.has_value(), s.error().describe());
    }
}

inline std::string fixtures_dir() {
    return PRESNAP_SNAPSHOT_FIXTURES;
}

} // namespace presnap::snapshot::test
