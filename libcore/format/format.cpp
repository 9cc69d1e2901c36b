#include "presnap/snapshot/format.h"

#include <fmt/format.h>

#include "presnap/snapshot/image.h"

namespace presnap::snapshot {

std::string_view section_name(std::uint32_t type) {
    switch (static_cast<SectionType>(type)) {
    case SectionType::kRegs:
        return "REGS";
    case SectionType::kSregs:
        return "SREGS";
    case SectionType::kXsave:
        return "XSAVE";
    case SectionType::kXcrs:
        return "XCRS";
    case SectionType::kMsrs:
        return "MSRS";
    case SectionType::kMonitorState:
        return "MONITOR_STATE";
    case SectionType::kCpuFeatures:
        return "CPU_FEATURES";
    case SectionType::kParent:
        return "PARENT";
    case SectionType::kExecutable:
        return "EXECUTABLE";
    case SectionType::kMetadata:
        return "METADATA";
    case SectionType::kWorkingSet:
        return "WORKING_SET";
    case SectionType::kPageIndex:
        return "PAGE_INDEX";
    case SectionType::kPageData:
        return "PAGE_DATA";
    case SectionType::kPageStore:
        return "PAGE_STORE";
    }
    return "UNKNOWN";
}

std::string_view encoding_name(std::uint32_t encoding) {
    switch (static_cast<PageEncoding>(encoding)) {
    case PageEncoding::kRaw:
        return "raw";
    case PageEncoding::kZstd:
        return "zstd";
    case PageEncoding::kZero:
        return "zero";
    case PageEncoding::kStore:
        return "store";
    }
    return "unknown";
}

std::string_view kind_name(std::uint32_t kind) {
    switch (static_cast<SnapshotKind>(kind)) {
    case SnapshotKind::kFull:
        return "full";
    case SnapshotKind::kDiff:
        return "diff";
    }
    return "unknown";
}

std::string Hash128::hex() const {
    return fmt::format("{:016x}{:016x}", high, low);
}

} // namespace presnap::snapshot
