// Loading the inputs into one module and normalising it for analysis.
#include <llvm/Bitcode/BitcodeReader.h>
#include <llvm/IR/DiagnosticInfo.h>
#include <llvm/IR/DiagnosticPrinter.h>
#include <llvm/IR/Verifier.h>
#include <llvm/IRReader/IRReader.h>
#include <llvm/Linker/Linker.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Transforms/IPO/FunctionAttrs.h>
#include <llvm/Transforms/IPO/InferFunctionAttrs.h>
#include <llvm/Transforms/Scalar/LowerExpectIntrinsic.h>
#include <llvm/Transforms/Utils/Mem2Reg.h>

#include "internal.h"

namespace presnap::analysis::detail {

namespace {

std::string lower_first(std::string s) {
    if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z')
        s[0] = static_cast<char>(s[0] - 'A' + 'a');
    while (!s.empty() && (s.back() == '.' || s.back() == '\n'))
        s.pop_back();
    return s;
}

// What the bytes look like, for "expected X, found Y".
std::string sniff(llvm::StringRef b) {
    if (b.startswith("BC\xC0\xDE") || b.startswith("\xDE\xC0\x17\x0B"))
        return "bitcode";
    if (b.startswith("\x7f"
                     "ELF"))
        return "an ELF file";
    if (b.empty())
        return "an empty file";
    return "text";
}

} // namespace

Result<std::unique_ptr<llvm::Module>> load_and_link(const std::vector<std::string>& inputs,
                                                    llvm::LLVMContext& ctx) {
    std::string link_diag;
    ctx.setDiagnosticHandlerCallBack(
        [](const llvm::DiagnosticInfo& di, void* user) {
            if (di.getSeverity() != llvm::DS_Error)
                return;
            llvm::raw_string_ostream os(*static_cast<std::string*>(user));
            llvm::DiagnosticPrinterRawOStream dp(os);
            di.print(dp);
        },
        &link_diag);

    std::unique_ptr<llvm::Module> merged;
    for (const std::string& path : inputs) {
        auto buf = llvm::MemoryBuffer::getFileOrSTDIN(path);
        if (!buf)
            return std::unexpected(
                Error{Errc::kIo, "cannot read: " + lower_first(buf.getError().message()), path});
        std::string kind = sniff((*buf)->getBuffer());
        llvm::SMDiagnostic diag;
        auto m = llvm::parseIR((*buf)->getMemBufferRef(), diag, ctx);
        if (!m) {
            std::string msg = lower_first(diag.getMessage().str());
            if (kind == "text" && diag.getLineNo() > 0)
                msg = fmt::format("line {}: {}", diag.getLineNo(), msg);
            return std::unexpected(Error{
                Errc::kFormat,
                fmt::format("not valid LLVM IR (expected LLVM 14 bitcode or textual IR, found "
                            "{}: {})",
                            kind, msg),
                path});
        }
        std::string verr;
        llvm::raw_string_ostream vos(verr);
        if (llvm::verifyModule(*m, &vos)) {
            vos.flush();
            std::string first = verr.substr(0, verr.find('\n'));
            return std::unexpected(
                Error{Errc::kFormat, "module does not verify: " + lower_first(first), path});
        }
        if (!merged) {
            merged = std::move(m);
            continue;
        }
        link_diag.clear();
        if (llvm::Linker::linkModules(*merged, std::move(m)))
            return std::unexpected(
                Error{Errc::kFormat, "cannot link into the other inputs: " + lower_first(link_diag),
                      path});
    }
    ctx.setDiagnosticHandlerCallBack(nullptr, nullptr);
    if (!merged)
        return make_error(Errc::kInvalidArgument, "no input files (expected at least one)");
    return merged;
}

void normalise(llvm::Module& m) {
    // mem2reg gives SSA values to compare against (tokens, guards) without
    // changing the CFG, so segment positions are the same as in the input;
    // lower-expect turns __builtin_expect into branch weights that
    // BranchProbabilityInfo honours; infer-attrs marks library functions'
    // read-only pointer parameters so effects need not assume the worst.
    AnalysisManagers am;
    llvm::ModulePassManager mpm;
    mpm.addPass(llvm::InferFunctionAttrsPass());
    // Attributes only (noreturn, readonly, ...): a call to a function that
    // always exits is then as cold to BranchProbabilityInfo as exit() is.
    mpm.addPass(llvm::createModuleToPostOrderCGSCCPassAdaptor(llvm::PostOrderFunctionAttrsPass()));
    llvm::FunctionPassManager fpm;
    fpm.addPass(llvm::PromotePass());
    fpm.addPass(llvm::LowerExpectIntrinsicPass());
    mpm.addPass(llvm::createModuleToFunctionPassAdaptor(std::move(fpm)));
    mpm.run(m, am.mam);
    // A call that never returns (exit, abort, a fatal() that calls them)
    // ends the request or the process: mark it cold so that
    // BranchProbabilityInfo treats the path to it as an error path. This
    // changes attributes only, never the CFG, so segment positions hold.
    for (llvm::Function& f : m)
        for (llvm::BasicBlock& bb : f)
            for (llvm::Instruction& i : bb)
                if (auto* cb = llvm::dyn_cast<llvm::CallBase>(&i))
                    if (cb->doesNotReturn() &&
                        !llvm::isa<llvm::UnreachableInst>(bb.getTerminator()))
                        cb->addFnAttr(llvm::Attribute::Cold);
}

} // namespace presnap::analysis::detail
