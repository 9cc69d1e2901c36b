// The guest kernel's own symbols (nm of presnap-guest.elf at build time), and
// whether a snapshot's guest kernel is the one they describe: its text and
// read-only data must equal the embedded image's byte for byte. Only then
// are the merge's guest kernel rules used (the user stack pointer saved at
// the syscall, the kernel stack, the program break, per-variable rules).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace presnap::merge {

struct KernelSymbol {
    uint64_t address, size;
    char kind; // nm's letter: 'b'/'B' bss, 'd'/'D' data, 't'/'T' text, 'r'/'R' rodata
    std::string_view name;
};

// Sorted by address.
std::span<const KernelSymbol> kernel_symbols();
std::optional<KernelSymbol> kernel_symbol(std::string_view name);
// The symbol containing `address`, if any.
std::optional<KernelSymbol> kernel_symbol_at(uint64_t address);
// The embedded guest kernel image (what a cold boot loads at PSN_KERNEL_BASE).
std::span<const uint8_t> embedded_kernel_image();

} // namespace presnap::merge
