// The ELF loader against well-formed and malformed executables, built in
// memory byte by byte so each test states exactly what is wrong.
#include "presnap/vmm/elf_loader.h"

#include <cstring>
#include <elf.h>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>

using namespace presnap;
using namespace presnap::vmm;

namespace {

struct Seg {
    uint32_t type = PT_LOAD;
    uint32_t flags = PF_R | PF_X;
    uint64_t offset = 0, vaddr = 0x400000, filesz = 0x1000, memsz = 0x1000;
};

// A minimal static executable: header, program headers, code.
std::vector<uint8_t> make_elf(std::vector<Seg> segs, uint64_t entry = 0x400100,
                              uint16_t type = ET_EXEC, size_t file_size = 0x3000) {
    std::vector<uint8_t> f(file_size, 0x90);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = type;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof eh;
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = uint16_t(segs.size());
    std::memcpy(f.data(), &eh, sizeof eh);
    for (size_t i = 0; i < segs.size(); i++) {
        Elf64_Phdr ph{};
        ph.p_type = segs[i].type;
        ph.p_flags = segs[i].flags;
        ph.p_offset = segs[i].offset;
        ph.p_vaddr = ph.p_paddr = segs[i].vaddr;
        ph.p_filesz = segs[i].filesz;
        ph.p_memsz = segs[i].memsz;
        ph.p_align = 0x1000;
        std::memcpy(f.data() + sizeof eh + i * sizeof ph, &ph, sizeof ph);
    }
    return f;
}

std::string error_of(const std::vector<uint8_t>& f) {
    auto r = parse_elf(f, 0x400000);
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
}

} // namespace

TEST_CASE("a well-formed static executable gives its entry, headers and extent") {
    auto f = make_elf({Seg{}, Seg{PT_LOAD, PF_R | PF_W, 0x1000, 0x401000, 0x800, 0x5000}});
    auto r = parse_elf(f, 0x400000);
    REQUIRE(r.has_value());
    CHECK(r->entry == 0x400100);
    CHECK(r->phdr == 0x400040); // inside the first segment, found from e_phoff
    CHECK(r->phnum == 2);
    CHECK(r->low == 0x400000);
    CHECK(r->high == 0x406000);
    CHECK_FALSE(r->pie);
}

TEST_CASE("a static-pie is placed at the chosen base") {
    Seg s;
    s.vaddr = 0;
    auto r = parse_elf(make_elf({s}, 0x100, ET_DYN), 0x800000);
    REQUIRE(r.has_value());
    CHECK(r->pie);
    CHECK(r->entry == 0x800100);
    CHECK(r->low == 0x800000);
}

TEST_CASE("truncated files are rejected") {
    auto f = make_elf({Seg{}});
    CHECK(error_of({f.begin(), f.begin() + 20}) ==
          "truncated ELF header (expected at least 64 bytes, found 20)");
    CHECK(error_of({f.begin(), f.begin() + 80}) ==
          "program headers at 0x40+0x38 extend past the end of the file (size 0x50)");
    Seg s;
    s.filesz = 0x10000;
    s.memsz = 0x10000;
    CHECK(error_of(make_elf({s})) ==
          "segment 0 data at 0x0+0x10000 extends past the end of the file (size 0x3000)");
}

TEST_CASE("bad magic, class and machine are rejected") {
    auto f = make_elf({Seg{}});
    f[0] = 'X';
    CHECK(error_of(f) == "not an ELF file (bad magic)");
    f = make_elf({Seg{}});
    f[EI_CLASS] = ELFCLASS32;
    CHECK(error_of(f) == "not a 64-bit ELF file (class 1)");
    f = make_elf({Seg{}});
    f[18] = EM_386;
    CHECK(error_of(f) == "not an x86-64 executable (machine 3)");
}

TEST_CASE("overlapping segments are rejected") {
    Seg a, b;
    b.vaddr = 0x400800;
    b.offset = 0x800;
    b.filesz = b.memsz = 0x800;
    CHECK(error_of(make_elf({a, b})) == "segments at 0x400000 and 0x400800 overlap");
}

TEST_CASE("an entry point outside every executable segment is rejected") {
    CHECK(error_of(make_elf({Seg{}}, 0x900000)) ==
          "entry point 0x900000 is not inside an executable segment");
    Seg data;
    data.flags = PF_R | PF_W;
    CHECK(error_of(make_elf({data})) == "entry point 0x400100 is not inside an executable segment");
}

TEST_CASE("absurd and inconsistent sizes are rejected") {
    Seg s;
    s.memsz = 1ull << 40;
    CHECK(error_of(make_elf({s})) == "segment 0 has an absurd size 0x10000000000");
    s = Seg{};
    s.filesz = 0x2000;
    s.memsz = 0x1000;
    CHECK(error_of(make_elf({s})) ==
          "segment 0 has file size 0x2000 larger than memory size 0x1000");
    s = Seg{};
    s.vaddr = 0xfffffffffffff000ull;
    CHECK(error_of(make_elf({s})) ==
          "segment 0 at 0xfffffffffffff000+0x1000 is outside user space");
    s = Seg{};
    s.vaddr = 0x400010;
    CHECK(error_of(make_elf({s})).find("misaligned") != std::string::npos);
}

TEST_CASE("a dynamically linked executable is refused") {
    Seg interp;
    interp.type = PT_INTERP;
    interp.offset = 0x200;
    interp.filesz = interp.memsz = 0x20;
    CHECK(error_of(make_elf({interp, Seg{}})).starts_with("dynamically linked executable"));
}

TEST_CASE("no loadable segment is an error") {
    Seg note;
    note.type = PT_NOTE;
    CHECK(error_of(make_elf({note})) == "no loadable segments");
}

TEST_CASE("loading copies file bytes and leaves bss zero, within guest memory only") {
    std::vector<uint8_t> guest(0x800000, 0);
    GuestMemory mem(guest.data(), guest.size());
    auto f = make_elf({Seg{}, Seg{PT_LOAD, PF_R | PF_W, 0x1000, 0x401000, 0x10, 0x3000}});
    f[0x1000] = 0xab;
    f[0x1010] = 0xcd; // beyond p_filesz: must not be copied
    auto img = parse_elf(f, 0x400000);
    REQUIRE(img.has_value());
    REQUIRE(load_elf(*img, f, mem).has_value());
    CHECK(guest[0x401000] == 0xab);
    CHECK(guest[0x401010] == 0);
    CHECK(guest[0x400100] == 0x90);

    std::vector<uint8_t> small(0x401000, 0);
    GuestMemory tiny(small.data(), small.size());
    auto r = load_elf(*img, f, tiny);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("does not fit in guest memory") != std::string::npos);
}
