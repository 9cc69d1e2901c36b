#include "presnap/vmm/elf_loader.h"

#include <algorithm>
#include <cstring>
#include <elf.h>

namespace presnap::vmm {
namespace {

uint64_t page_down(uint64_t v) {
    return v & ~(kPageSize - 1);
}

} // namespace

Result<ElfImage> parse_elf(std::span<const uint8_t> file, uint64_t pie_base) {
    if (file.size() < sizeof(Elf64_Ehdr))
        return make_error(Errc::kFormat,
                          "truncated ELF header (expected at least {} bytes, found {})",
                          sizeof(Elf64_Ehdr), file.size());
    Elf64_Ehdr eh;
    std::memcpy(&eh, file.data(), sizeof eh);
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        return make_error(Errc::kFormat, "not an ELF file (bad magic)");
    if (eh.e_ident[EI_CLASS] != ELFCLASS64)
        return make_error(Errc::kUnsupported, "not a 64-bit ELF file (class {})",
                          eh.e_ident[EI_CLASS]);
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return make_error(Errc::kUnsupported, "not a little-endian ELF file");
    if (eh.e_machine != EM_X86_64)
        return make_error(Errc::kUnsupported, "not an x86-64 executable (machine {})",
                          eh.e_machine);
    if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
        return make_error(Errc::kUnsupported, "not an executable (ELF type {})", eh.e_type);
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        return make_error(Errc::kFormat, "bad program header size (expected {}, found {})",
                          sizeof(Elf64_Phdr), eh.e_phentsize);
    if (eh.e_phnum == 0 || eh.e_phnum > kMaxProgramHeaders)
        return make_error(Errc::kFormat, "bad program header count {} (expected 1 to {})",
                          eh.e_phnum, kMaxProgramHeaders);
    uint64_t ph_bytes = uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr);
    if (eh.e_phoff > file.size() || ph_bytes > file.size() - eh.e_phoff)
        return make_error(Errc::kFormat,
                          "program headers at 0x{:x}+0x{:x} extend past the end of the file "
                          "(size 0x{:x})",
                          eh.e_phoff, ph_bytes, file.size());

    ElfImage img;
    img.phnum = eh.e_phnum;
    img.phentsize = eh.e_phentsize;
    std::vector<Elf64_Phdr> loads;
    uint64_t phdr_vaddr = 0;
    bool have_phdr = false;
    for (uint16_t i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_INTERP)
            return make_error(Errc::kUnsupported,
                              "dynamically linked executable (has PT_INTERP); presnap runs static "
                              "executables (gcc -static, musl-gcc -static, gcc -static-pie)");
        if (ph.p_type == PT_PHDR) {
            phdr_vaddr = ph.p_vaddr;
            have_phdr = true;
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_filesz > ph.p_memsz)
            return make_error(Errc::kFormat,
                              "segment {} has file size 0x{:x} larger than memory size 0x{:x}", i,
                              ph.p_filesz, ph.p_memsz);
        if (ph.p_memsz > kMaxSegmentSize)
            return make_error(Errc::kFormat, "segment {} has an absurd size 0x{:x}", i, ph.p_memsz);
        if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset)
            return make_error(Errc::kFormat,
                              "segment {} data at 0x{:x}+0x{:x} extends past the end of the file "
                              "(size 0x{:x})",
                              i, ph.p_offset, ph.p_filesz, file.size());
        if (ph.p_vaddr + ph.p_memsz < ph.p_vaddr || ph.p_vaddr + ph.p_memsz > (1ull << 47))
            return make_error(Errc::kFormat, "segment {} at 0x{:x}+0x{:x} is outside user space", i,
                              ph.p_vaddr, ph.p_memsz);
        if ((ph.p_vaddr % kPageSize) != (ph.p_offset % kPageSize))
            return make_error(Errc::kFormat,
                              "segment {} is misaligned (address 0x{:x} and offset 0x{:x} differ "
                              "modulo the page size)",
                              i, ph.p_vaddr, ph.p_offset);
        loads.push_back(ph);
    }
    if (loads.empty())
        return make_error(Errc::kFormat, "no loadable segments");
    std::sort(loads.begin(), loads.end(),
              [](const Elf64_Phdr& a, const Elf64_Phdr& b) { return a.p_vaddr < b.p_vaddr; });
    for (size_t i = 1; i < loads.size(); i++)
        if (loads[i].p_vaddr < loads[i - 1].p_vaddr + loads[i - 1].p_memsz)
            return make_error(Errc::kFormat, "segments at 0x{:x} and 0x{:x} overlap",
                              loads[i - 1].p_vaddr, loads[i].p_vaddr);

    img.pie = eh.e_type == ET_DYN;
    uint64_t low = page_down(loads.front().p_vaddr);
    if (img.pie)
        img.bias = pie_base - low;
    img.low = low + img.bias;
    const Elf64_Phdr& last = loads.back();
    img.high = (last.p_vaddr + last.p_memsz + kPageSize - 1) / kPageSize * kPageSize + img.bias;

    bool entry_ok = false;
    for (const auto& ph : loads) {
        img.segments.push_back(
            {ph.p_vaddr + img.bias, ph.p_offset, ph.p_filesz, ph.p_memsz, ph.p_flags});
        if ((ph.p_flags & PF_X) && eh.e_entry >= ph.p_vaddr && eh.e_entry < ph.p_vaddr + ph.p_memsz)
            entry_ok = true;
        if (!have_phdr && eh.e_phoff >= ph.p_offset &&
            eh.e_phoff + ph_bytes <= ph.p_offset + ph.p_filesz) {
            phdr_vaddr = ph.p_vaddr + (eh.e_phoff - ph.p_offset);
            have_phdr = true;
        }
    }
    if (!entry_ok)
        return make_error(Errc::kFormat, "entry point 0x{:x} is not inside an executable segment",
                          eh.e_entry);
    if (!have_phdr)
        return make_error(Errc::kFormat, "program headers are not inside a loaded segment");
    img.entry = eh.e_entry + img.bias;
    img.phdr = phdr_vaddr + img.bias;
    return img;
}

Status load_elf(const ElfImage& image, std::span<const uint8_t> file, GuestMemory& mem) {
    for (const auto& seg : image.segments) {
        auto dst = mem.span_for_write(seg.vaddr, seg.mem_size);
        if (!dst)
            return make_error(
                Errc::kInvalidArgument,
                "segment at 0x{:x}+0x{:x} does not fit in guest memory (size 0x{:x}); "
                "raise --mem",
                seg.vaddr, seg.mem_size, mem.size());
        std::memcpy(dst->data(), file.data() + seg.file_offset, seg.file_size);
    }
    return {};
}

} // namespace presnap::vmm
