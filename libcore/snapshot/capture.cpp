// Capture: a Session at its wait point into a snapshot image. The vCPU and
// the monitor save themselves; memory is what the guest wrote (KVM's dirty
// log) united with what the host wrote (GuestMemory's own bitmap), and the
// working set comes from the page tables' accessed bits.
#include "presnap/snapshot/cpu_features.h"
#include "presnap/snapshot/monitor_state.h"
#include "presnap/snapshot/session_snapshots.h"
#include "presnap/vmm/vcpu_state.h"
#include "presnap/vmm/x86_64.h"

#include "presnap/version.h"

#include <cerrno>
#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <unistd.h>

namespace presnap::snapshot {
namespace {

std::vector<uint64_t> bitmap_pages(const std::vector<uint64_t>& bits, uint64_t pages) {
    std::vector<uint64_t> out;
    for (uint64_t w = 0; w < bits.size(); w++)
        for (uint64_t b = bits[w]; b; b &= b - 1) {
            uint64_t p = w * 64 + uint64_t(__builtin_ctzll(b));
            if (p < pages)
                out.push_back(p);
        }
    return out;
}

} // namespace

Result<std::unique_ptr<runtime::Session>> boot_for_capture(const runtime::ProgramSpec& spec,
                                                           runtime::SessionOptions options) {
    auto exe = hash_executable(spec.program);
    if (!exe)
        return std::unexpected(exe.error().with_context(spec.program));
    options.track_dirty = true;
    auto s = runtime::Session::boot(spec, options);
    if (!s)
        return s;
    (*s)->executable = *exe;
    return s;
}

Result<Capture> capture(runtime::Session& session) {
    if (!session.options().track_dirty)
        return make_error(Errc::kInvalidArgument,
                          "the session does not track dirty pages (SessionOptions::track_dirty)");
    auto ms = session.monitor_state();
    if (!ms)
        return std::unexpected(ms.error());
    vmm::Vcpu& vc = session.vcpu();
    // KVM finishes the `out` on the next KVM_RUN: do that now, so the saved
    // registers are those after the instruction.
    if (auto s = vc.complete_pending_exit(); !s)
        return std::unexpected(s.error());
    auto vcpu = vmm::save_vcpu(vc);
    if (!vcpu)
        return std::unexpected(vcpu.error());

    Capture c;
    SnapshotImage& img = c.image;
    const auto& layout = session.layout();
    img.kind = session.parent ? SnapshotKind::kDiff : SnapshotKind::kFull;
    img.flags = session.deterministic() ? kFlagDeterministic : 0;
    img.guest_memory_size = layout.mem_size;
    img.parent = session.parent;
    img.executable = session.executable;
    img.cpu_features = host_cpu_features();
    img.vcpu = std::move(*vcpu);
    img.monitor_state = encode_monitor_state(*ms);

    // Pages: what the guest wrote (KVM's dirty log, which the call clears)
    // and what the host wrote.
    auto log = session.vm().dirty_log(layout.mem_size);
    if (!log)
        return std::unexpected(log.error());
    std::vector<uint64_t> bits = *log;
    vmm::GuestMemory& mem = session.memory();
    const auto& host_bits = mem.host_dirty_bitmap();
    for (size_t i = 0; i < bits.size() && i < host_bits.size(); i++)
        bits[i] |= host_bits[i];
    mem.clear_host_dirty();
    std::vector<uint64_t> dirty = bitmap_pages(bits, layout.mem_size / vmm::kPageSize);
    std::span<const uint8_t> all(mem.host_base(), layout.mem_size);
    if (auto s = add_pages(img, dirty, all, session.parent ? ZeroPages::kRecord : ZeroPages::kSkip);
        !s)
        return std::unexpected(s.error());
    auto touched = vmm::accessed_pages(mem, layout, false);
    if (!touched)
        return std::unexpected(touched.error());
    img.working_set = to_ranges(*touched);
    img.metadata_json = nlohmann::ordered_json{{"generator", fmt::format("presnap {}", kVersion)},
                                               {"requests_total", ms->requests_served},
                                               {"pages_dirtied", dirty.size()},
                                               {"pages_touched", touched->size()},
                                               {"restore_generation", ms->restore_generation}}
                            .dump();
    c.pages_dirtied = dirty.size();
    c.touched = std::move(*touched);
    return c;
}

void set_working_set(Capture& c, std::vector<uint64_t> pages) {
    c.image.working_set = to_ranges(pages);
    auto meta = nlohmann::ordered_json::parse(c.image.metadata_json, nullptr, false);
    if (meta.is_object()) {
        meta["pages_touched"] = pages.size();
        c.image.metadata_json = meta.dump();
    }
    c.touched = std::move(pages);
}

void adopt(runtime::Session& session, const Hash128& content_hash) {
    session.parent = content_hash;
}

Result<WriteSummary> capture_to_file(runtime::Session& session, const std::string& path,
                                     const WriteOptions& options) {
    auto c = capture(session);
    if (!c)
        return std::unexpected(c.error());
    auto sum = write_snapshot(path, c->image, options);
    if (!sum)
        return std::unexpected(sum.error());
    adopt(session, sum->content_hash);
    return sum;
}

// In memory, but in a sealed memfd rather than a heap buffer: raw runs can
// then be mapped copy-on-write by any number of restores, like a file's,
// and the seals keep it from ever shrinking under them.
Result<SnapshotFile> memory_file(std::span<const uint8_t> bytes, const OpenOptions& options) {
    int fd = memfd_create("presnap-snapshot", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return make_errno_error(Errc::kIo, errno, "memfd_create");
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            ::close(fd);
            return make_errno_error(Errc::kIo, e, "write to a memfd");
        }
        done += size_t(n);
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        int e = errno;
        ::close(fd);
        return make_errno_error(Errc::kIo, e, "sealing a memfd");
    }
    auto f = SnapshotFile::open(fmt::format("/proc/self/fd/{}", fd), options);
    ::close(fd); // the SnapshotFile holds its own descriptor
    return f;
}

Result<SnapshotFile> to_memory(const SnapshotImage& image, const WriteOptions& options,
                               WriteSummary* summary) {
    auto bytes = serialize_snapshot(image, options, summary);
    if (!bytes)
        return std::unexpected(bytes.error());
    return memory_file(*bytes, OpenOptions{DataCheck::kNone}); // written here, just now
}

Result<SnapshotFile> capture_to_memory(runtime::Session& session, const WriteOptions& options) {
    auto c = capture(session);
    if (!c)
        return std::unexpected(c.error());
    auto f = to_memory(c->image, options);
    if (!f)
        return f;
    adopt(session, f->content_hash());
    return f;
}

} // namespace presnap::snapshot
