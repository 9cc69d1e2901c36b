#include "presnap/library/scoped.h"

#include "presnap/guest_abi.h"
#include "presnap/runtime/io.h"
#include "presnap/snapshot/session_snapshots.h"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <unistd.h>

namespace presnap::library {
namespace {

constexpr uint64_t kPage = snapshot::kPageSize;

// The chain's content of page `n` (last link that has it), or nullptr for
// a zero page. Decompressed runs are kept in `scratch`.
const uint8_t* chain_page(std::span<const snapshot::SnapshotFile* const> chain, uint64_t n,
                          std::vector<std::vector<uint8_t>>& scratch) {
    for (size_t i = chain.size(); i-- > 0;) {
        const auto& runs = chain[i]->page_runs();
        auto it = std::upper_bound(
            runs.begin(), runs.end(), n,
            [](uint64_t v, const snapshot::PageRun& r) { return v < r.first_page; });
        if (it == runs.begin())
            continue;
        --it;
        if (n - it->first_page >= it->page_count)
            continue;
        if (it->encoding == snapshot::PageEncoding::kZero)
            return nullptr;
        uint64_t off = (n - it->first_page) * kPage;
        if (it->raw())
            return chain[i]->stored_bytes(*it).data() + off;
        scratch.emplace_back(it->bytes());
        if (!chain[i]->read_run(*it, scratch.back()))
            return nullptr;
        return scratch.back().data() + off;
    }
    return nullptr;
}

} // namespace

Result<Scoped> learn_scoped(std::span<const snapshot::SnapshotFile* const> chain,
                            const std::vector<std::string>& requests,
                            const runtime::SessionOptions& session) {
    Scoped result;
    ByteRanges out;
    for (const auto& req : requests) {
        snapshot::RestoreOptions ro;
        ro.session = session;
        ro.session.track_dirty = true;
        ro.session.trace = {};
        auto s = snapshot::restore(chain, ro);
        if (!s)
            return std::unexpected(s.error());
        auto in = runtime::MemoryRequestSource::of_lines({req});
        runtime::NullResponseSink sink;
        auto o = (*s)->run(in, sink, runtime::AtEof::kStop);
        if (!o)
            return std::unexpected(o.error());
        if (o->kind != runtime::RunOutcome::Kind::kWaiting)
            continue; // learns nothing about the steady state
        auto cap = snapshot::capture(**s);
        if (!cap)
            return std::unexpected(cap.error());
        const auto& was_regs = chain.back()->regs();
        const auto& now_regs = cap->image.vcpu.regs;
        for (size_t r = 0;
             r < 18 && (r + 1) * 8 <= was_regs.size() && (r + 1) * 8 <= now_regs.size(); r++)
            if (std::memcmp(was_regs.data() + r * 8, now_regs.data() + r * 8, 8) != 0)
                result.registers |= 1u << r;
        std::vector<std::vector<uint8_t>> scratch;
        static const uint8_t kZero[kPage] = {};
        for (const auto& run : cap->image.memory) {
            for (uint64_t p = 0; p < run.page_count; p++) {
                uint64_t n = run.first_page + p;
                const uint8_t* was = chain_page(chain, n, scratch);
                if (!was)
                    was = kZero;
                const uint8_t* now = run.zero ? kZero : run.data.data() + p * kPage;
                for (uint64_t i = 0; i < kPage; i++)
                    if (was[i] != now[i]) {
                        uint64_t a = n * kPage + i;
                        if (!out.empty() && out.back().second == a)
                            out.back().second++;
                        else
                            out.emplace_back(a, a + 1);
                    }
            }
            scratch.clear();
        }
    }
    // Union of the requests' ranges, sorted and coalesced.
    std::sort(out.begin(), out.end());
    ByteRanges merged;
    for (const auto& r : out) {
        if (!merged.empty() && r.first <= merged.back().second)
            merged.back().second = std::max(merged.back().second, r.second);
        else
            merged.push_back(r);
    }
    result.bytes = std::move(merged);
    return result;
}

Status write_scoped(const std::string& path, const Scoped& scoped) {
    std::string text = "presnap-scoped 1\n";
    for (int r = 0; r < 18; r++)
        if (scoped.registers & (1u << r))
            text += fmt::format("reg {}\n", kRegisterNames[r]);
    for (const auto& [a, b] : scoped.bytes)
        text += fmt::format("{:x} {}\n", a, b - a);
    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    bool ok = f && std::fwrite(text.data(), 1, text.size(), f) == text.size() &&
              std::fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (f)
        std::fclose(f);
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        err = ok ? errno : err;
        std::remove(tmp.c_str());
        return make_errno_error(Errc::kIo, err, "cannot write " + path);
    }
    return {};
}

Result<Scoped> read_scoped_file(const std::string& path) {
    Scoped out;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        if (errno == ENOENT)
            return out;
        return make_errno_error(Errc::kIo, errno, "cannot open " + path);
    }
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && text.size() < (64u << 20))
        text.append(buf, n);
    std::fclose(f);
    size_t line_no = 0, pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? text.size() : nl + 1;
        line_no++;
        if (line_no == 1) {
            if (line != "presnap-scoped 1")
                return make_error(Errc::kFormat, "{}: not a presnap-scoped 1 file", path);
            continue;
        }
        if (line.empty() || line[0] == '#')
            continue;
        if (line.rfind("reg ", 0) == 0) {
            int r = 0;
            while (r < 18 && line.substr(4) != kRegisterNames[r])
                r++;
            if (r == 18)
                return make_error(Errc::kFormat, "{}:{}: unknown register '{}'", path, line_no,
                                  line.substr(4, 16));
            out.registers |= 1u << r;
            continue;
        }
        unsigned long long a = 0, len = 0;
        char extra;
        if (std::sscanf(line.c_str(), "%llx %llu %c", &a, &len, &extra) != 2 || len == 0 ||
            len > (1ull << 32) || a + len < a)
            return make_error(Errc::kFormat, "{}:{}: expected 'ADDRESS LENGTH', found '{}'", path,
                              line_no, line.substr(0, 80));
        out.bytes.emplace_back(a, a + len);
        if (out.bytes.size() > (1u << 22))
            return make_error(Errc::kFormat, "{}: too many ranges", path);
    }
    std::sort(out.bytes.begin(), out.bytes.end());
    return out;
}

Status set_mmap_window(runtime::Session& session, size_t index, size_t count) {
    const auto& l = session.layout();
    if (l.mmap_top <= l.brk_start || index >= count)
        return make_error(Errc::kInvalidArgument, "no mmap window {} of {}", index, count);
    uint64_t part = (l.mmap_top - l.brk_start) / (count + 2) & ~(kPage - 1);
    uint64_t top = l.mmap_top - (index + 1) * part;
    return session.memory().write_obj(PSN_BOOT_INFO_ADDR + offsetof(psn_boot_info, mmap_window),
                                      top);
}

Status learn_and_write_scoped(std::span<const snapshot::SnapshotFile* const> chain,
                              const std::vector<std::string>& requests,
                              const runtime::SessionOptions& session, const std::string& path) {
    auto r = learn_scoped(chain, requests, session);
    if (!r)
        return std::unexpected(r.error());
    return write_scoped(path, *r);
}

} // namespace presnap::library
