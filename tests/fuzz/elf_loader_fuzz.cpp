// libFuzzer target for the ELF loader: parse_elf() on any bytes must either
// refuse them with a message or give an image whose every segment lies
// inside the file, does not overlap the next, and whose entry point and
// program headers are inside it; load_elf() must then copy it into guest
// memory or refuse, never touch memory outside.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "presnap/guest_abi.h"
#include "presnap/vmm/elf_loader.h"

using namespace presnap::vmm;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> file(data, size);
    auto img = parse_elf(file, PSN_PIE_BASE);
    if (!img) {
        if (img.error().message.empty())
            std::abort(); // every refusal says why
        return 0;
    }
    if (img->segments.empty() || img->low > img->high || img->low % kPageSize ||
        img->high % kPageSize)
        std::abort();
    bool entry_inside = false;
    for (size_t i = 0; i < img->segments.size(); i++) {
        const ElfSegment& s = img->segments[i];
        if (s.file_offset > size || s.file_size > size - s.file_offset || s.file_size > s.mem_size)
            std::abort();
        if (s.vaddr < img->low || s.vaddr + s.mem_size > img->high ||
            s.vaddr + s.mem_size < s.vaddr)
            std::abort();
        if (i > 0) {
            const ElfSegment& p = img->segments[i - 1];
            if (s.vaddr < p.vaddr + p.mem_size)
                std::abort();
        }
        if ((s.flags & 1 /* PF_X */) && img->entry >= s.vaddr && img->entry < s.vaddr + s.mem_size)
            entry_inside = true;
    }
    if (!entry_inside)
        std::abort();
    // A small guest memory: most images do not fit and must be refused; the
    // ones that fit are copied (ASan sees any write outside the buffer).
    static std::vector<std::uint8_t> buf(8u << 20);
    GuestMemory mem(buf.data(), buf.size());
    (void)load_elf(*img, file, mem);
    return 0;
}
