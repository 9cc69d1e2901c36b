// libFuzzer target for the snapshot reader. Any input must either be rejected
// with an error or yield a file whose every accessor works, whose runs all
// decode, and whose JSON description is valid JSON. Built with
// FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, under which the reader accepts
// wrong checksums so that the fuzzer reaches the structure behind them.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "presnap/snapshot/describe.h"
#include "presnap/snapshot/reader.h"

using namespace presnap::snapshot;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto file = SnapshotFile::parse_view({data, size}, {DataCheck::kFull});
    if (!file) {
        if (file.error().message.empty())
            std::abort(); // every rejection says why
        return 0;
    }
    std::vector<std::uint8_t> buffer;
    for (const PageRun& run : file->page_runs()) {
        buffer.resize(run.bytes());
        (void)file->read_run(run, buffer);
    }
    (void)file->vcpu_state();
    (void)file->memory_stats();
    (void)file->verify_parent(*file);
    static const CpuFeatures host = host_cpu_features();
    (void)file->check_host(host);
    (void)describe_text(*file, {true});
    if (!is_valid_json(describe_json(*file, {true})))
        std::abort();
    return 0;
}
