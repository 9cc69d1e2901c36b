// The options every tool that runs a guest shares (snaprun, snapgen): one
// definition, so their names, defaults and meaning cannot drift apart.
#pragma once

#include "diag.h"
#include "presnap/size.h"
#include "presnap/vmm/monitor.h"

#include <CLI/CLI.hpp>
#include <string>

namespace presnap::tools {

struct GuestOptions {
    std::string mem = "256M";
    std::string rootfs;

    void add_to(CLI::App& app, vmm::MonitorConfig& cfg) {
        app.add_option("--mem", mem, "guest memory size, a multiple of 2M (default 256M)")
            ->option_text("SIZE");
        app.add_option("--timeout", cfg.timeout_s,
                       "wall-time limit per request, and for start-up, in seconds (default 10)")
            ->option_text("SECONDS")
            ->check(CLI::PositiveNumber);
        app.add_option("--rootfs", rootfs, "read-only file tree the program sees as /")
            ->option_text("DIR");
        app.add_flag("--deterministic", cfg.deterministic,
                     "virtual clock and random bytes from --seed: runs and snapshots repeat "
                     "exactly");
        app.add_option("--seed", cfg.seed, "random seed with --deterministic (default 0)")
            ->option_text("N");
    }

    // Puts --mem and --rootfs into `cfg`; false (after saying why) for a bad size.
    bool apply(vmm::MonitorConfig& cfg, const Diag& diag) const {
        auto size = parse_size(mem);
        if (!size) {
            diag.error(fmt::format(
                "bad size '{}' (expected a number with an optional K, M or G suffix)", mem));
            return false;
        }
        cfg.mem_size = *size;
        if (!rootfs.empty())
            cfg.rootfs = rootfs;
        return true;
    }
};

} // namespace presnap::tools
