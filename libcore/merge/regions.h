// Where a guest address lives, for conflict reports: presnap's own areas,
// the program's ELF sections and symbols, the stack, the heap and mmap area.
#pragma once

#include "presnap/error.h"
#include "presnap/snapshot/monitor_state.h"

#include <cstdint>
#include <string>
#include <vector>

namespace presnap::merge {

// The symbol table and sections of a static executable, at their load
// addresses (a static-pie's moved by its bias). The file is untrusted: every
// offset and size is checked; a file without a symbol table has none.
struct ElfSymbols {
    struct Item {
        uint64_t address = 0, size = 0;
        std::string name;
    };
    std::vector<Item> symbols;  // objects and functions with a size, by address
    std::vector<Item> sections; // allocated sections, by address
    uint64_t low = 0, high = 0; // the loaded image
};
Result<ElfSymbols> read_elf_symbols(const std::string& path);

struct Region {
    std::string region; // "boot info", "guest kernel", "elf .data", "stack", ...
    std::string symbol; // "name+0x10", "" when none
};
// `brk_end`: the program break (0 if unknown: the heap and mmap area are
// then reported together).
Region classify(uint64_t address, const snapshot::MonitorState& state, const ElfSymbols* elf,
                uint64_t brk_end);

} // namespace presnap::merge
