// snaprun --serve: the serving mode's front end (stdin or a Unix socket).
#pragma once

#include "presnap/serve/server.h"

#include "../common/diag.h"

#include <string>

namespace presnap::tools {

struct ServeArgs {
    serve::ServerOptions server;
    std::string socket; // "" : requests on standard input
    size_t max_clients = 64;
    bool stats = false, json = false;
    std::string trace_file; // history (--trace), "" for none
};

// Runs the server until the end of standard input (or, with a socket, until
// SIGTERM or SIGINT). Returns snaprun's exit status.
int serve_main(ServeArgs args, const Diag& diag);

} // namespace presnap::tools
