#!/usr/bin/env python3
"""Writes the ELF loader fuzzer's seeds (tests/fuzz/seeds/elf_loader/): tiny
executables, each under 1 KiB, that reach the loader's main paths. Rerun after
changing it: python3 tests/fuzz/seeds/make_elf_seeds.py"""
import os
import struct

PT_LOAD, PT_INTERP, PT_PHDR = 1, 3, 6
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC, ET_DYN = 2, 3


def elf(etype, entry, phdrs, size):
    """phdrs: (type, flags, offset, vaddr, filesz, memsz); headers at 64."""
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    eh = ident + struct.pack("<HHIQQQIHHHHHH", etype, 62, 1, entry, 64, 0, 0, 64, 56,
                             len(phdrs), 64, 0, 0)
    ph = b"".join(struct.pack("<IIQQQQQQ", t, f, off, va, va, fs, ms, 0x1000)
                  for t, f, off, va, fs, ms in phdrs)
    body = eh + ph
    return body + b"\x90" * (size - len(body))


seeds = {
    # text (headers included) and data with bss, the usual gcc -static shape
    "static-exec.elf": elf(ET_EXEC, 0x400100, [
        (PT_LOAD, PF_R | PF_X, 0, 0x400000, 0x200, 0x200),
        (PT_LOAD, PF_R | PF_W, 0x200, 0x401200, 0x40, 0x2000)], 0x240),
    # static-pie: ET_DYN linked at 0 with PT_PHDR
    "static-pie.elf": elf(ET_DYN, 0x100, [
        (PT_PHDR, PF_R, 64, 64, 3 * 56, 3 * 56),
        (PT_LOAD, PF_R | PF_X, 0, 0, 0x180, 0x180),
        (PT_LOAD, PF_R | PF_W, 0x180, 0x1180, 0x20, 0x1000)], 0x1a0),
    # refused: dynamically linked
    "has-interp.elf": elf(ET_EXEC, 0x400100, [
        (PT_INTERP, PF_R, 0x100, 0x400100, 0x10, 0x10),
        (PT_LOAD, PF_R | PF_X, 0, 0x400000, 0x180, 0x180)], 0x180),
    # refused: segments overlap
    "overlapping.elf": elf(ET_EXEC, 0x400100, [
        (PT_LOAD, PF_R | PF_X, 0, 0x400000, 0x180, 0x2000),
        (PT_LOAD, PF_R | PF_W, 0x100, 0x401100, 0x20, 0x20)], 0x180),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "elf_loader")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
