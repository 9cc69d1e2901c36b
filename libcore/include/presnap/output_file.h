// Where a tool's output file goes. Every file presnap writes under a user's
// name goes to a temporary beside it and is renamed over it when complete,
// so a crash never leaves a half-written file. That is right for regular
// files and wrong for special ones: renaming over /dev/null or a FIFO would
// replace the device node with a regular file. Writers ask here first.
#pragma once

#include <string>

namespace presnap {

enum class OutputKind {
    kStdout,  // "-"
    kSpecial, // an existing non-regular file (/dev/null, a FIFO, a terminal): write in place
    kRegular, // anything else: temporary file, then rename
};

OutputKind output_kind(const std::string& path);

} // namespace presnap
