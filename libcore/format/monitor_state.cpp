#include "presnap/snapshot/monitor_state.h"

#include <cstring>

namespace presnap::snapshot {

std::vector<std::uint8_t> encode_monitor_state(const MonitorState& state) {
    std::vector<std::uint8_t> out(sizeof state);
    std::memcpy(out.data(), &state, sizeof state);
    return out;
}

Result<MonitorState> decode_monitor_state(std::span<const std::uint8_t> bytes) {
    MonitorState st;
    if (bytes.size() != sizeof st)
        return make_error(Errc::kFormat, "monitor state has {} bytes (expected {})", bytes.size(),
                          sizeof st);
    std::memcpy(&st, bytes.data(), sizeof st);
    if (st.version != kMonitorStateVersion)
        return make_error(Errc::kFormat, "monitor state version {} (expected {})", st.version,
                          kMonitorStateVersion);
    if (st.flags & ~kMonitorKnownFlags)
        return make_error(Errc::kFormat, "monitor state flags 0x{:x} (known: 0x{:x})", st.flags,
                          kMonitorKnownFlags);
    return st;
}

} // namespace presnap::snapshot
