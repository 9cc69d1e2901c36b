#include "presnap/vmm/syscall_names.h"

#include <string_view>

namespace presnap::vmm {
namespace {
struct Entry {
    uint64_t nr;
    std::string_view name;
};
// Generated at configure time from <asm/unistd_64.h>.
constexpr Entry kSyscalls[] = {
#include "syscall_names.inc"
};
} // namespace

std::string syscall_name(uint64_t nr) {
    for (const auto& e : kSyscalls)
        if (e.nr == nr)
            return std::string(e.name);
    return "syscall_" + std::to_string(nr);
}

} // namespace presnap::vmm
