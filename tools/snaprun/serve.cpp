// snaprun --serve: requests as lines on standard input, or on a Unix socket
// with several clients at once (one thread each, each client's responses in
// its own order), answered by a serve::Server. See snaprun(1) and
// docs/serving.md.
#include "serve.h"

#include "presnap/runtime/session.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace presnap::tools {

namespace {

serve::Server* g_server = nullptr;
int g_stop_pipe[2] = {-1, -1};

void on_hup(int) {
    if (g_server)
        g_server->request_reload();
}
void on_stop(int) {
    char c = 1;
    (void)!::write(g_stop_pipe[1], &c, 1);
}

bool write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        s.remove_prefix(size_t(n));
    }
    return true;
}

// Lines from a descriptor; a line longer than `max` bytes is skipped to its
// end and reported as too long, without ever being held whole.
class LineReader {
  public:
    LineReader(int fd, uint64_t max) : fd_(fd), max_(max) {}
    enum class Got { kLine, kTooLong, kEof, kError };
    Got next(std::string& line, uint64_t& length) {
        line.clear();
        length = 0;
        bool too_long = false;
        for (;;) {
            if (pos_ == len_) {
                if (eof_)
                    return length || too_long ? (too_long ? Got::kTooLong : Got::kLine) : Got::kEof;
                ssize_t n = ::read(fd_, buf_, sizeof buf_);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0)
                    return Got::kError;
                if (n == 0) {
                    eof_ = true;
                    continue;
                }
                pos_ = 0;
                len_ = size_t(n);
            }
            const char* start = buf_ + pos_;
            const char* nl = static_cast<const char*>(std::memchr(start, '\n', len_ - pos_));
            size_t take = nl ? size_t(nl - start) : len_ - pos_;
            length += take;
            if (!too_long && length + 1 > max_) {
                too_long = true;
                line.clear();
            }
            if (!too_long)
                line.append(start, take);
            pos_ += take + (nl ? 1 : 0);
            if (nl)
                return too_long ? Got::kTooLong : Got::kLine;
        }
    }

  private:
    int fd_;
    uint64_t max_;
    char buf_[64 * 1024];
    size_t pos_ = 0, len_ = 0;
    bool eof_ = false;
};

struct Reporter {
    const ServeArgs& args;
    std::mutex mu;
    void report(const serve::RequestReport& r, const std::string& client) {
        if (!args.stats)
            return;
        std::string line;
        if (args.json) {
            nlohmann::ordered_json j = {{"request", r.seq},
                                        {"snapshots", r.ids},
                                        {"fallback", r.fallback},
                                        {"cache_hit", r.cache_hit},
                                        {"ready", r.ready},
                                        {"wait_us", r.wait_us},
                                        {"restore_us", r.restore_us},
                                        {"prepared_restore_us", r.prepared_restore_us},
                                        {"request_us", r.request_us},
                                        {"run_us", r.run_us},
                                        {"total_us", r.total_us},
                                        {"choose_us", r.choose_us},
                                        {"composite_us", r.composite_us},
                                        {"prefetched_pages", r.prefetched_pages},
                                        {"faults", r.faults},
                                        {"generation", r.generation},
                                        {"error", r.error}};
            if (!client.empty())
                j["client"] = client;
            // The client name and error text may hold any bytes.
            line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        } else {
            std::string ids;
            for (const auto& id : r.ids)
                ids += (ids.empty() ? "" : "+") + id;
            line = fmt::format(
                "snaprun: stats: request {}{} snapshots={}{} cache={} ready={} restore_us={:.0f} "
                "request_us={:.0f} total_us={:.0f} prefetched_pages={} faults={}{}\n",
                r.seq, client.empty() ? "" : " client=" + client, ids.empty() ? "base" : ids,
                r.fallback ? " (fallback)" : "", r.cache_hit ? "hit" : "miss",
                r.ready ? "yes" : "no", r.restore_us, r.request_us, r.total_us, r.prefetched_pages,
                r.faults, r.error.empty() ? "" : " error=" + r.error);
        }
        std::lock_guard l(mu);
        (void)write_all(2, line);
    }
    void summary(const serve::Server& s) {
        if (!args.stats)
            return;
        auto t = s.totals();
        std::string line =
            args.json ? nlohmann::ordered_json{{"summary", true},
                                               {"requests", t.requests},
                                               {"errors", t.errors},
                                               {"ready_hits", t.ready_hits},
                                               {"cache_hits", t.cache_hits},
                                               {"composites_built", t.composites_built},
                                               {"fallbacks", t.fallbacks},
                                               {"vms_created", t.vms_created},
                                               {"reloads", t.reloads}}
                                .dump() +
                            "\n"
                      : fmt::format("snaprun: stats: requests={} errors={} ready_hits={} "
                                    "cache_hits={} composites_built={} fallbacks={} "
                                    "vms_created={} reloads={}\n",
                                    t.requests, t.errors, t.ready_hits, t.cache_hits,
                                    t.composites_built, t.fallbacks, t.vms_created, t.reloads);
        std::lock_guard l(mu);
        (void)write_all(2, line);
    }
};

// Serves one stream of lines; false when the server itself failed.
bool serve_stream(serve::Server& server, int in, int out, uint64_t max_request, Reporter& rep,
                  const std::string& client, const Diag& diag) {
    LineReader reader(in, max_request);
    std::string line, response;
    serve::RequestReport r;
    for (;;) {
        uint64_t length = 0;
        auto got = reader.next(line, length);
        if (got == LineReader::Got::kEof || got == LineReader::Got::kError)
            return true;
        if (got == LineReader::Got::kTooLong) {
            response = serve::Server::error_line(
                "limit", fmt::format("request of {} bytes is over the limit of {} bytes",
                                     length + 1, max_request));
            r = {};
            r.error = "limit";
        } else if (auto s = server.handle(line, response, r); !s) {
            diag.error(s.error().describe());
            return false;
        }
        rep.report(r, client);
        if (!write_all(out, response))
            return true; // the reader went away
    }
}

} // namespace

int serve_main(ServeArgs args, const Diag& diag) {
    std::mutex history_mu;
    int history_fd = -1;
    if (!args.trace_file.empty()) {
        history_fd =
            ::open(args.trace_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (history_fd < 0) {
            diag.error(fmt::format("{}: cannot write: {}", args.trace_file, std::strerror(errno)));
            return runtime::kExitHostError;
        }
        args.server.history = [&, fd = history_fd](const std::string& l) {
            if (!write_all(fd, l))
                diag.warning(
                    fmt::format("{}: cannot write: {}", args.trace_file, std::strerror(errno)));
        };
    }
    auto server = serve::Server::open(args.server);
    if (!server) {
        diag.error(server.error().describe());
        return runtime::kExitHostError;
    }
    if (history_fd >= 0 && !write_all(history_fd, (*server)->history_preamble())) {
        diag.error(fmt::format("{}: cannot write: {}", args.trace_file, std::strerror(errno)));
        return runtime::kExitHostError;
    }
    g_server = server->get();
    struct sigaction sa {};
    sa.sa_handler = on_hup;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    Reporter rep{args, {}};
    const uint64_t max_request = args.server.session.limits.max_request;
    int status = 0;

    if (args.socket.empty()) {
        if (!serve_stream(**server, 0, 1, max_request, rep, "", diag))
            status = runtime::kExitHostError;
    } else {
        if (::pipe2(g_stop_pipe, O_CLOEXEC) != 0) {
            diag.error(fmt::format("cannot make a pipe: {}", std::strerror(errno)));
            return runtime::kExitHostError;
        }
        sa.sa_handler = on_stop;
        sigaction(SIGTERM, &sa, nullptr);
        sigaction(SIGINT, &sa, nullptr);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (args.socket.size() >= sizeof addr.sun_path) {
            diag.error(fmt::format("{}: socket path too long (at most {} bytes)", args.socket,
                                   sizeof addr.sun_path - 1));
            return runtime::kExitHostError;
        }
        std::memcpy(addr.sun_path, args.socket.c_str(), args.socket.size());
        struct stat st {};
        if (::lstat(args.socket.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                diag.error(fmt::format("{}: exists and is not a socket", args.socket));
                return runtime::kExitHostError;
            }
            ::unlink(args.socket.c_str()); // a socket left by an earlier server
        }
        int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(lfd, 128) != 0) {
            diag.error(fmt::format("{}: cannot listen: {}", args.socket, std::strerror(errno)));
            return runtime::kExitHostError;
        }
        struct Client {
            int fd;
            std::thread thread;
            std::atomic<bool> done{false};
        };
        std::list<Client> clients;
        std::atomic<bool> failed{false};
        uint64_t next_client = 0;
        for (;;) {
            pollfd p[2] = {{lfd, POLLIN, 0}, {g_stop_pipe[0], POLLIN, 0}};
            if (::poll(p, 2, 1000) < 0 && errno != EINTR)
                break;
            for (auto it = clients.begin(); it != clients.end();) // reap finished clients
                if (it->done) {
                    it->thread.join();
                    ::close(it->fd);
                    it = clients.erase(it);
                } else {
                    ++it;
                }
            if ((p[1].revents & POLLIN) || failed)
                break;
            if (!(p[0].revents & POLLIN))
                continue;
            int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (cfd < 0)
                continue;
            if (clients.size() >= args.max_clients) {
                (void)write_all(cfd, serve::Server::error_line(
                                         "limit", fmt::format("too many clients (at most {})",
                                                              args.max_clients)));
                ::close(cfd);
                continue;
            }
            Client& c = clients.emplace_back();
            c.fd = cfd;
            std::string name = std::to_string(++next_client);
            c.thread = std::thread([&, name, cfd, cp = &c] {
                if (!serve_stream(**server, cfd, cfd, max_request, rep, name, diag))
                    failed = true;
                cp->done = true;
            });
        }
        // Stop: no new clients; those connected get their current request
        // answered and then end of input.
        ::close(lfd);
        ::unlink(args.socket.c_str());
        for (auto& c : clients)
            ::shutdown(c.fd, SHUT_RD);
        for (auto& c : clients) {
            c.thread.join();
            ::close(c.fd);
        }
        if (failed)
            status = runtime::kExitHostError;
    }
    rep.summary(**server);
    g_server = nullptr;
    server->reset();
    if (history_fd >= 0 && ::close(history_fd) != 0) {
        diag.error(fmt::format("{}: cannot write: {}", args.trace_file, std::strerror(errno)));
        return runtime::kExitHostError;
    }
    return status;
}

} // namespace presnap::tools
