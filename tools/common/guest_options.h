// The options every tool that runs a guest shares (snaprun, snapgen): one
// definition, so their names, defaults and meaning cannot drift apart.
#pragma once

#include "diag.h"
#include "presnap/runtime/session.h"
#include "presnap/size.h"

#include <CLI/CLI.hpp>
#include <string>

namespace presnap::tools {

struct GuestOptions {
    std::string mem = "256M";
    std::string rootfs;
    double timeout_s = 10.0;
    bool deterministic = false;
    uint64_t seed = 0;

    void add_to(CLI::App& app) {
        app.add_option("--mem", mem, "guest memory size, a multiple of 2M (default 256M)")
            ->option_text("SIZE");
        app.add_option("--timeout", timeout_s,
                       "wall-time limit per request, for start-up and after the end of input, in "
                       "seconds (default 10)")
            ->option_text("SECONDS")
            ->check(CLI::PositiveNumber);
        app.add_option("--rootfs", rootfs, "read-only file tree the program sees as /")
            ->option_text("DIR");
        app.add_flag("--deterministic", deterministic,
                     "virtual clock and random bytes from --seed: runs and snapshots repeat "
                     "exactly");
        app.add_option("--seed", seed, "random seed with --deterministic (default 0)")
            ->option_text("N");
    }

    // Fills what a cold boot needs; false (after saying why) for a bad size.
    bool apply(runtime::ProgramSpec& spec, const Diag& diag) const {
        auto size = parse_size(mem);
        if (!size) {
            diag.error(fmt::format(
                "bad size '{}' (expected a number with an optional K, M or G suffix)", mem));
            return false;
        }
        spec.mem_size = *size;
        if (!rootfs.empty())
            spec.rootfs = rootfs;
        spec.deterministic = deterministic;
        spec.seed = seed;
        return true;
    }
    // Fills the session options both a boot and a restore use.
    void apply(runtime::SessionOptions& opt) const {
        opt.limits.timeout_s = timeout_s;
        if (deterministic)
            opt.restore_seed = seed;
    }
};

} // namespace presnap::tools
