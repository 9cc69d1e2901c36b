#include "presnap/output_file.h"

#include <sys/stat.h>

namespace presnap {

OutputKind output_kind(const std::string& path) {
    if (path == "-")
        return OutputKind::kStdout;
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return OutputKind::kSpecial;
    return OutputKind::kRegular;
}

} // namespace presnap
