#include "kernel_symbols.h"

#include <algorithm>

extern "C" const uint8_t presnap_guest_image[];
extern "C" const uint8_t presnap_guest_image_end[];

namespace presnap::merge {
namespace {
// Generated from `nm -S -n --defined-only presnap-guest.elf`.
constexpr KernelSymbol kSymbols[] = {
#include "guest_symbols.inc"
};
} // namespace

std::span<const KernelSymbol> kernel_symbols() {
    return kSymbols;
}

std::optional<KernelSymbol> kernel_symbol(std::string_view name) {
    for (const auto& s : kSymbols)
        if (s.name == name)
            return s;
    return std::nullopt;
}

std::optional<KernelSymbol> kernel_symbol_at(uint64_t a) {
    // Assembly symbols have no size: they reach to the next symbol (the
    // kernel stack, psn_kernel_stack, to psn_kernel_stack_top).
    const size_t n = std::size(kSymbols);
    for (size_t i = 0; i < n; i++) {
        const auto& s = kSymbols[i];
        uint64_t size = s.size;
        if (size == 0 && i + 1 < n)
            size = kSymbols[i + 1].address - s.address;
        if (a >= s.address && a - s.address < size)
            return s;
    }
    return std::nullopt;
}

std::span<const uint8_t> embedded_kernel_image() {
    return {presnap_guest_image, size_t(presnap_guest_image_end - presnap_guest_image)};
}

} // namespace presnap::merge
