// Static x86-64 ELF executables: validation and the plan for loading one into
// guest memory. The file is untrusted: every offset, size and address is
// checked before use, and a bad file gives an Error naming the first problem.
// Accepts ET_EXEC (ordinary static) and ET_DYN without PT_INTERP (static-pie,
// which relocates itself); refuses anything with PT_INTERP.
#pragma once

#include "presnap/error.h"
#include "presnap/vmm/guest_memory.h"

#include <cstdint>
#include <span>
#include <vector>

namespace presnap::vmm {

struct ElfSegment {
    uint64_t vaddr;       // guest address (load bias applied)
    uint64_t file_offset; // into the file
    uint64_t file_size;
    uint64_t mem_size;
    uint32_t flags; // PF_R / PF_W / PF_X
};

struct ElfImage {
    bool pie = false;
    uint64_t bias = 0;  // added to every p_vaddr
    uint64_t entry = 0; // with bias
    uint64_t phdr = 0;  // guest address of the program headers (AT_PHDR)
    uint16_t phnum = 0;
    uint16_t phentsize = 0;
    uint64_t low = 0;  // lowest mapped byte, page aligned down
    uint64_t high = 0; // end of the highest segment, page aligned up
    std::vector<ElfSegment> segments;
};

inline constexpr uint64_t kMaxSegmentSize = 1ull << 36; // 64 GiB: anything larger is absurd
inline constexpr uint16_t kMaxProgramHeaders = 128;

// Parses and validates `file`; a static-pie is placed at `pie_base`.
Result<ElfImage> parse_elf(std::span<const uint8_t> file, uint64_t pie_base);

// Copies the segments into guest memory (bss stays zero: memory starts zero).
Status load_elf(const ElfImage& image, std::span<const uint8_t> file, GuestMemory& mem);

} // namespace presnap::vmm
