// The tools' one voice for diagnostics (STYLE.md: "tool: error: FILE: what
// (expected X, found Y)", an optional "note:" line, lowercase, no trailing
// period), their one exit-code scheme and their one --version line.
// Header-only and tool-side: libcore returns errors, tools print.
#pragma once

#include <CLI/CLI.hpp>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <string>
#include <string_view>

#include "presnap/version.h"

namespace presnap::tools {

// Exit statuses of snapgen, snapinfo and pea-analyze (each man page's EXIT
// STATUS): 0 done, 1 the work failed (an input is invalid, the program did
// not get there), 2 the command line is wrong; a tool documents any status
// above 2 it adds. snaprun differs on purpose: its status is the program's
// own, so its own failures use 123-125 as env(1) and timeout(1) do.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

class Diag {
  public:
    explicit Diag(const char* tool) : tool_(tool) {}
    const char* tool() const { return tool_; }
    void set_quiet(bool q) { quiet_ = q; }
    void set_verbose(bool v) { verbose_ = v; }
    bool verbose() const { return verbose_; }
    void error(const std::string& msg) const { say("error", msg); }
    void note(const std::string& msg) const { say("note", msg); }
    void warning(const std::string& msg) const {
        if (!quiet_)
            say("warning", msg);
    }
    // A note printed only with -v.
    void info(const std::string& msg) const {
        if (verbose_)
            say("note", msg);
    }
    // A command-line parse error in the house style, with a hint. Unknown
    // options are named as such, whatever else is missing.
    void usage_error(const CLI::ParseError& e) const {
        std::string msg = e.what();
        if (!msg.empty())
            msg[0] = char(std::tolower(static_cast<unsigned char>(msg[0])));
        while (!msg.empty() && (msg.back() == '.' || msg.back() == '\n'))
            msg.pop_back();
        error(msg);
        note(fmt::format("see '{} --help'", tool_));
    }
    void usage_error(const std::string& msg) const {
        error(msg);
        note(fmt::format("see '{} --help'", tool_));
    }
    // `TOOL (presnap) VERSION`, then what the tool reads and writes, if any.
    // False (after saying why) if standard output cannot be written.
    bool print_version(std::string_view formats = {}) const {
        std::string line = fmt::format("{} (presnap) {}\n", tool_, kVersion);
        if (!formats.empty())
            line += fmt::format("{}\n", formats);
        return write_stdout(line);
    }

    // Writes all of `data` to standard output. A reader that has gone (EPIPE:
    // `tool ... | head -1` with SIGPIPE ignored) ends the tool quietly, as
    // cat does; other errors (ENOSPC on /dev/full ...) are reported and
    // return false.
    bool write_stdout(std::string_view data) const {
        if (std::fwrite(data.data(), 1, data.size(), stdout) == data.size() &&
            std::fflush(stdout) == 0)
            return true;
        return stdout_failed();
    }

    // True if `e` (from a write) is a closed pipe: exit quietly.
    static bool is_broken_pipe(const std::string& message) {
        std::string_view m = message, epipe = std::strerror(EPIPE);
        return m.size() >= epipe.size() && m.substr(m.size() - epipe.size()) == epipe;
    }

  private:
    bool stdout_failed() const {
        int err = errno;
        if (err == EPIPE)
            std::_Exit(kExitOk);
        std::string why = std::strerror(err ? err : EIO);
        why[0] = char(std::tolower(static_cast<unsigned char>(why[0])));
        error(fmt::format("-: cannot write: {}", why));
        return false;
    }

    // A diagnostic that cannot be written (stderr on /dev/full, a closed
    // pipe) is lost, never a crash: fmt::print would throw and abort.
    void say(const char* level, const std::string& msg) const {
        std::string line = fmt::format("{}: {}: {}\n", tool_, level, msg);
        (void)std::fwrite(line.data(), 1, line.size(), stderr);
        (void)std::fflush(stderr);
    }

    const char* tool_;
    bool quiet_ = false;
    bool verbose_ = false;
};

// The file's bytes; "-" is standard input. A pipe or FIFO path
// (`<(cmd)`) is read like any file.
inline bool read_input(const std::string& path, std::string& out, std::string& why) {
    FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
    if (!f) {
        why = std::strerror(errno);
        why[0] = char(std::tolower(static_cast<unsigned char>(why[0])));
        why = "cannot open: " + why;
        return false;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        out.append(buf, n);
    bool ok = !std::ferror(f);
    int err = errno;
    if (f != stdin)
        std::fclose(f);
    if (!ok) {
        why = std::strerror(err);
        why[0] = char(std::tolower(static_cast<unsigned char>(why[0])));
        why = "cannot read: " + why;
    }
    return ok;
}

} // namespace presnap::tools
