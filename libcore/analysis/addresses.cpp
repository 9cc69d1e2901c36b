// Segments to guest code addresses, from the executable's symbol table and
// DWARF (subprograms, inlined subroutines, line table), so the runtime tools
// never need LLVM.
#include <algorithm>

#include <llvm/DebugInfo/DWARF/DWARFContext.h>
#include <llvm/IR/DebugInfoMetadata.h>
#include <llvm/Object/ELFObjectFile.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/Path.h>

#include "internal.h"

namespace presnap::analysis::detail {

namespace {

struct FnAddrs {
    std::vector<AddressRange> out_of_line; // symbol or concrete DWARF subprogram
    std::vector<AddressRange> inlined;     // DW_TAG_inlined_subroutine instances
};

void normalise_ranges(std::vector<AddressRange>& r) {
    std::sort(r.begin(), r.end(),
              [](auto& a, auto& b) { return a.lo != b.lo ? a.lo < b.lo : a.hi < b.hi; });
    std::vector<AddressRange> out;
    for (auto& x : r) {
        if (x.hi <= x.lo)
            continue;
        if (!out.empty() && x.lo <= out.back().hi)
            out.back().hi = std::max(out.back().hi, x.hi);
        else
            out.push_back(x);
    }
    r = std::move(out);
}

std::string base_name(llvm::StringRef n) {
    // gcc's clones (foo.constprop.0, foo.part.0, foo.cold) and llvm-link's
    // renamed statics (foo.1) are the same source function.
    return n.substr(0, n.find('.')).str();
}

std::string basename(llvm::StringRef path) {
    return llvm::sys::path::filename(path).str();
}

std::string fmt_error(llvm::Error e) {
    std::string s = llvm::toString(std::move(e));
    if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z')
        s[0] = static_cast<char>(s[0] - 'A' + 'a');
    return s;
}

} // namespace

Result<AddressSummary> resolve_addresses(Context& cx, const std::string& path) {
    if (!llvm::sys::fs::exists(path))
        return std::unexpected(Error{Errc::kIo, "cannot read: no such file or directory", path});
    auto bin = llvm::object::ObjectFile::createObjectFile(path);
    if (!bin)
        return std::unexpected(Error{Errc::kFormat,
                                     "not an ELF executable (expected x86-64 ELF, found " +
                                         fmt_error(bin.takeError()) + ")",
                                     path});
    llvm::object::ObjectFile* obj = bin->getBinary();
    auto* elf = llvm::dyn_cast<llvm::object::ELFObjectFileBase>(obj);
    if (!elf)
        return std::unexpected(Error{Errc::kFormat,
                                     fmt::format("not an ELF file (expected x86-64 ELF, found {})",
                                                 obj->getFileFormatName().str()),
                                     path});
    if (obj->getArch() != llvm::Triple::x86_64)
        return std::unexpected(
            Error{Errc::kUnsupported,
                  fmt::format("wrong architecture (expected x86-64, found {})",
                              llvm::Triple::getArchTypeName(obj->getArch()).str()),
                  path});

    std::map<std::string, FnAddrs> fns;
    for (const llvm::object::SymbolRef& sym : obj->symbols()) {
        auto type = sym.getType();
        auto name = sym.getName();
        auto addr = sym.getAddress();
        if (!type || !name || !addr) {
            llvm::consumeError(type.takeError());
            llvm::consumeError(name.takeError());
            llvm::consumeError(addr.takeError());
            continue;
        }
        if (*type != llvm::object::SymbolRef::ST_Function)
            continue;
        uint64_t size = llvm::object::ELFSymbolRef(sym).getSize();
        if (size == 0)
            continue;
        AddressRange r{*addr, *addr + size};
        fns[name->str()].out_of_line.push_back(r);
        if (name->contains('.'))
            fns[base_name(*name)].out_of_line.push_back(r);
    }

    auto dctx = llvm::DWARFContext::create(*obj);
    if (dctx->getNumCompileUnits() == 0)
        return std::unexpected(
            Error{Errc::kFormat, "no DWARF debug info (expected a program built with -g)", path});
    // Source files the module was compiled from: only their line rows matter.
    std::set<std::string> module_files;
    for (auto* cu : cx.module->debug_compile_units())
        module_files.insert(basename(cu->getFilename()));
    for (auto& fi : cx.fns)
        if (!fi->file.empty())
            module_files.insert(fi->file);

    std::set<std::string> elf_cus, short_names;
    std::map<std::pair<std::string, unsigned>, std::vector<AddressRange>> lines;
    // Inlined call sites by their call line: the code of `if (!x) init();`
    // after init() was inlined carries init's lines, not the call's.
    std::map<std::pair<std::string, unsigned>, std::vector<AddressRange>> inline_sites;
    for (const auto& cu : dctx->compile_units()) {
        llvm::DWARFDie top = cu->getUnitDIE(false);
        const llvm::DWARFDebugLine::LineTable* lt = dctx->getLineTableForUnit(cu.get());
        if (const char* n = top.getName(llvm::DINameKind::ShortName))
            elf_cus.insert(basename(n));
        std::vector<llvm::DWARFDie> work{top};
        while (!work.empty()) {
            llvm::DWARFDie d = work.back();
            work.pop_back();
            auto tag = d.getTag();
            if (tag == llvm::dwarf::DW_TAG_subprogram ||
                tag == llvm::dwarf::DW_TAG_inlined_subroutine) {
                const char* n = d.getName(llvm::DINameKind::LinkageName);
                const char* sn = d.getName(llvm::DINameKind::ShortName);
                auto rs = d.getAddressRanges();
                // gcc gives functions in anonymous namespaces no linkage
                // name: keep them under their short name as well.
                if (n && sn && rs && std::string_view(n) == sn)
                    short_names.insert(sn);
                if (n && rs) {
                    auto& fa = fns[n];
                    for (auto& r : *rs) {
                        if (r.LowPC == 0 || r.HighPC <= r.LowPC)
                            continue; // discarded by the linker (gc-sections)
                        AddressRange ar{r.LowPC, r.HighPC};
                        (tag == llvm::dwarf::DW_TAG_subprogram ? fa.out_of_line : fa.inlined)
                            .push_back(ar);
                    }
                    if (tag == llvm::dwarf::DW_TAG_inlined_subroutine && lt) {
                        uint32_t cfile = 0, cline = 0, ccol = 0, cdisc = 0;
                        d.getCallerFrame(cfile, cline, ccol, cdisc);
                        std::string fname;
                        if (cline &&
                            lt->getFileNameByIndex(
                                cfile, cu->getCompilationDir(),
                                llvm::DILineInfoSpecifier::FileLineInfoKind::RawValue, fname))
                            for (auto& r : *rs)
                                if (r.LowPC != 0 && r.HighPC > r.LowPC)
                                    inline_sites[{basename(fname), cline}].push_back(
                                        {r.LowPC, r.HighPC});
                    }
                } else if (!rs) {
                    llvm::consumeError(rs.takeError());
                }
            }
            for (llvm::DWARFDie c : d.children())
                work.push_back(c);
        }
        if (!lt)
            continue;
        std::map<uint64_t, std::string> file_of;
        for (const auto& seq : lt->Sequences) {
            for (unsigned i = seq.FirstRowIndex;
                 i + 1 < seq.LastRowIndex && i + 1 < lt->Rows.size(); i++) {
                const auto& row = lt->Rows[i];
                if (row.EndSequence || row.Line == 0)
                    continue;
                auto fit = file_of.find(row.File);
                if (fit == file_of.end()) {
                    std::string fname;
                    lt->getFileNameByIndex(row.File, cu->getCompilationDir(),
                                           llvm::DILineInfoSpecifier::FileLineInfoKind::RawValue,
                                           fname);
                    fit = file_of.emplace(row.File, basename(fname)).first;
                }
                if (!module_files.count(fit->second))
                    continue;
                uint64_t lo = row.Address.Address, hi = lt->Rows[i + 1].Address.Address;
                if (hi > lo)
                    lines[{fit->second, row.Line}].push_back({lo, hi});
            }
        }
    }

    // A different program: none of the module's source files has DWARF here,
    // or it lacks the module's main.
    bool shared_file = false;
    for (auto& f : module_files)
        shared_file |= elf_cus.count(f) > 0;
    if (!shared_file) {
        std::string want, have;
        for (auto& f : module_files)
            want += (want.empty() ? "" : ", ") + f;
        for (auto& f : elf_cus)
            have += (have.empty() ? "" : ", ") + f;
        return std::unexpected(Error{
            Errc::kInvalidArgument,
            fmt::format("executable does not match the bitcode (expected DWARF for {}, "
                        "found {})",
                        want.empty() ? "the module's sources" : want, have.empty() ? "none" : have),
            path});
    }
    for (auto& fi : cx.fns)
        if (fi->f->getName() == "main" && fns["main"].out_of_line.empty())
            return std::unexpected(Error{Errc::kInvalidArgument,
                                         "executable does not match the bitcode (expected a "
                                         "symbol 'main', found none)",
                                         path});

    // Short names (the last component of a C++ name) only where one module
    // function has that short name.
    std::map<std::string, int> short_uses;
    auto short_of = [](const FnInfo& fi) {
        std::string d = fi.display;
        size_t at = d.rfind("::");
        return at == std::string::npos ? d : d.substr(at + 2);
    };
    for (auto& fi : cx.fns)
        short_uses[short_of(*fi)]++;
    for (auto& fi : cx.fns) {
        auto it = fns.find(fi->f->getName().str());
        if (it == fns.end() || (it->second.out_of_line.empty() && it->second.inlined.empty()))
            it = fns.find(base_name(fi->f->getName()));
        if (it == fns.end() && fi->f->getName().startswith("_Z")) {
            std::string sn = short_of(*fi);
            if (short_uses[sn] == 1 && short_names.count(sn))
                it = fns.find(sn);
        }
        if (it == fns.end()) {
            fi->addr_status = AddressStatus::kMissing;
            continue;
        }
        fi->ranges = it->second.out_of_line;
        fi->ranges.insert(fi->ranges.end(), it->second.inlined.begin(), it->second.inlined.end());
        normalise_ranges(fi->ranges);
        fi->addr_status = !it->second.out_of_line.empty() ? AddressStatus::kFound
                          : !it->second.inlined.empty()   ? AddressStatus::kInlined
                                                          : AddressStatus::kMissing;
    }

    AddressSummary sum;
    sum.elf = path;
    for (auto& si : cx.segs) {
        FnInfo& fi = *si.fn;
        Segment& s = si.seg;
        if (s.kind == SegmentKind::kFunction) {
            s.address_status = fi.addr_status;
            s.ranges = fi.ranges;
        } else if (fi.addr_status == AddressStatus::kMissing) {
            s.address_status = AddressStatus::kMissing;
        } else {
            // The source lines only this segment's code has; if it shares
            // them all, every line it has.
            std::set<std::pair<std::string, unsigned>> mine, others;
            llvm::DenseSet<const llvm::BasicBlock*> in(si.region.begin(), si.region.end());
            auto collect = [](const llvm::BasicBlock& bb, auto& into) {
                for (auto& i : bb)
                    if (auto& dl = i.getDebugLoc(); dl && dl.getLine())
                        into.insert({basename(dl->getFilename()), dl.getLine()});
            };
            for (auto& bb : *fi.f)
                collect(bb, in.count(&bb) ? mine : others);
            if (si.region.empty() && si.block)
                if (auto& dl = si.block->getTerminator()->getDebugLoc(); dl && dl.getLine())
                    mine.insert({basename(dl->getFilename()), dl.getLine()});
            std::set<std::pair<std::string, unsigned>> excl;
            for (auto& l : mine)
                if (!others.count(l))
                    excl.insert(l);
            const auto& use = excl.empty() ? mine : excl;
            for (auto& l : use) {
                for (auto* table : {&lines, &inline_sites}) {
                    auto lit = table->find(l);
                    if (lit == table->end())
                        continue;
                    for (auto& r : lit->second)
                        for (auto& fr : fi.ranges)
                            if (r.lo < fr.hi && fr.lo < r.hi)
                                s.ranges.push_back({std::max(r.lo, fr.lo), std::min(r.hi, fr.hi)});
                }
            }
            normalise_ranges(s.ranges);
            s.address_status = s.ranges.empty() ? AddressStatus::kMissing : fi.addr_status;
        }
        switch (s.address_status) {
        case AddressStatus::kFound:
            sum.found++;
            break;
        case AddressStatus::kInlined:
            sum.inlined++;
            break;
        default:
            sum.missing++;
            break;
        }
    }
    return sum;
}

} // namespace presnap::analysis::detail
