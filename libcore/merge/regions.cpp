#include "regions.h"

#include "presnap/guest_abi.h"
#include "presnap/vmm/elf_loader.h"

#include <algorithm>
#include <cstring>
#include <elf.h>
#include <fstream>
#include <iterator>

namespace presnap::merge {
namespace {

bool in(uint64_t a, uint64_t lo, uint64_t size) {
    return a >= lo && a - lo < size;
}

} // namespace

Result<ElfSymbols> read_elf_symbols(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f)
        return make_error(Errc::kIo, "cannot open {}", path);
    std::vector<uint8_t> file((std::istreambuf_iterator<char>(f)),
                              std::istreambuf_iterator<char>());
    auto img = vmm::parse_elf(file, PSN_PIE_BASE);
    if (!img)
        return std::unexpected(img.error().with_context(path));
    ElfSymbols out;
    out.low = img->low;
    out.high = img->high;
    Elf64_Ehdr eh;
    std::memcpy(&eh, file.data(), sizeof eh); // parse_elf checked the size
    auto fits = [&](uint64_t off, uint64_t size) {
        return off <= file.size() && size <= file.size() - off;
    };
    if (eh.e_shentsize != sizeof(Elf64_Shdr) ||
        !fits(eh.e_shoff, uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr)))
        return out; // no usable section table: addresses only
    std::vector<Elf64_Shdr> sh(eh.e_shnum);
    std::memcpy(sh.data(), file.data() + eh.e_shoff, sh.size() * sizeof(Elf64_Shdr));
    auto str = [&](const Elf64_Shdr& tab, uint64_t off) -> std::string {
        if (tab.sh_type != SHT_STRTAB || !fits(tab.sh_offset, tab.sh_size) || off >= tab.sh_size)
            return {};
        const char* s = reinterpret_cast<const char*>(file.data() + tab.sh_offset + off);
        return std::string(s, strnlen(s, tab.sh_size - off));
    };
    const Elf64_Shdr* shstr = eh.e_shstrndx < sh.size() ? &sh[eh.e_shstrndx] : nullptr;
    for (const auto& s : sh) {
        if (!(s.sh_flags & SHF_ALLOC) || s.sh_size == 0)
            continue;
        out.sections.push_back(
            {s.sh_addr + img->bias, s.sh_size, shstr ? str(*shstr, s.sh_name) : ""});
        if (s.sh_type != SHT_SYMTAB)
            continue;
    }
    for (const auto& s : sh) {
        if (s.sh_type != SHT_SYMTAB || s.sh_entsize != sizeof(Elf64_Sym) ||
            !fits(s.sh_offset, s.sh_size) || s.sh_link >= sh.size())
            continue;
        const Elf64_Shdr& strtab = sh[s.sh_link];
        for (uint64_t off = 0; off + sizeof(Elf64_Sym) <= s.sh_size; off += sizeof(Elf64_Sym)) {
            Elf64_Sym sym;
            std::memcpy(&sym, file.data() + s.sh_offset + off, sizeof sym);
            int type = ELF64_ST_TYPE(sym.st_info);
            if (sym.st_size == 0 || (type != STT_OBJECT && type != STT_FUNC && type != STT_TLS))
                continue;
            if (type == STT_TLS)
                continue; // offsets into the TLS block, not addresses
            out.symbols.push_back(
                {sym.st_value + img->bias, sym.st_size, str(strtab, sym.st_name)});
        }
    }
    auto by_addr = [](const ElfSymbols::Item& a, const ElfSymbols::Item& b) {
        return a.address < b.address;
    };
    std::sort(out.symbols.begin(), out.symbols.end(), by_addr);
    std::sort(out.sections.begin(), out.sections.end(), by_addr);
    return out;
}

Region classify(uint64_t a, const snapshot::MonitorState& st, const ElfSymbols* elf,
                uint64_t brk_end) {
    if (in(a, PSN_BOOT_INFO_ADDR, PSN_PAGE_SIZE))
        return {"boot info", ""};
    if (in(a, PSN_KERNEL_BASE, PSN_KERNEL_LIMIT - PSN_KERNEL_BASE))
        return {"guest kernel", ""};
    if (a < PSN_KERNEL_BASE)
        return {"monitor tables", ""};
    if (in(a, st.page_tables, st.page_table_pages * PSN_PAGE_SIZE))
        return {"page tables", ""};
    if (in(a, st.in_buf, PSN_IO_BUFFER_SIZE))
        return {"input buffer", ""};
    if (in(a, st.out_buf, PSN_IO_BUFFER_SIZE))
        return {"output buffer", ""};
    if (st.rootfs_size && in(a, st.rootfs, st.rootfs_size))
        return {"file tree", ""};
    if (elf && a >= elf->low && a < elf->high) {
        Region r{"elf", ""};
        for (const auto& s : elf->sections)
            if (in(a, s.address, s.size))
                r.region = "elf " + s.name;
        auto it =
            std::upper_bound(elf->symbols.begin(), elf->symbols.end(), a,
                             [](uint64_t v, const ElfSymbols::Item& s) { return v < s.address; });
        while (it != elf->symbols.begin()) {
            --it;
            if (in(a, it->address, it->size)) {
                r.symbol = a == it->address ? it->name
                                            : fmt::format("{}+{:#x}", it->name, a - it->address);
                break;
            }
            if (a - it->address > (1ull << 24))
                break;
        }
        return r;
    }
    if (a >= st.stack_low && a < st.stack_top)
        return {"stack", ""};
    if (a >= st.brk_start && a < st.mmap_top) {
        if (brk_end == 0)
            return {"heap or mmap", ""};
        return {a < brk_end ? "heap" : "mmap", ""};
    }
    return {"other", ""};
}

} // namespace presnap::merge
