// The tools' one voice for diagnostics (STYLE.md: "tool: error: FILE: what
// (expected X, found Y)", an optional "note:" line, lowercase, no trailing
// period). Header-only and tool-side: libcore returns errors, tools print.
#pragma once

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdio>
#include <fmt/format.h>
#include <string>

namespace presnap::tools {

class Diag {
  public:
    explicit Diag(const char* tool) : tool_(tool) {}
    void set_quiet(bool q) { quiet_ = q; }
    void error(const std::string& msg) const { say("error", msg); }
    void note(const std::string& msg) const { say("note", msg); }
    void warning(const std::string& msg) const {
        if (!quiet_)
            say("warning", msg);
    }
    // A command-line parse error in the house style, with a hint.
    void usage_error(const CLI::ParseError& e) const {
        std::string msg = e.what();
        if (!msg.empty())
            msg[0] = char(std::tolower(static_cast<unsigned char>(msg[0])));
        while (!msg.empty() && (msg.back() == '.' || msg.back() == '\n'))
            msg.pop_back();
        error(msg);
        note(fmt::format("see '{} --help'", tool_));
    }

  private:
    // A diagnostic that cannot be written (stderr on /dev/full, a closed
    // pipe) is lost, never a crash: fmt::print would throw and abort.
    void say(const char* level, const std::string& msg) const {
        std::string line = fmt::format("{}: {}: {}\n", tool_, level, msg);
        (void)std::fwrite(line.data(), 1, line.size(), stderr);
        (void)std::fflush(stderr);
    }

    const char* tool_;
    bool quiet_ = false;
};

} // namespace presnap::tools
