// Byte surgery on serialized snapshots, for corrupt fixtures: read and write
// header fields, section entries and page index entries, and recompute the
// checksums a patch should not be caught by.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include <xxhash.h>

#include "presnap/snapshot/format.h"

namespace presnap::snapshot::patch {

using Bytes = std::vector<std::uint8_t>;

template <typename T> T get(const Bytes& b, std::size_t offset) {
    T v;
    std::memcpy(&v, b.data() + offset, sizeof(T));
    return v;
}
template <typename T> void put(Bytes& b, std::size_t offset, const T& v) {
    std::memcpy(b.data() + offset, &v, sizeof(T));
}

inline FileHeader header(const Bytes& b) {
    return get<FileHeader>(b, 0);
}
inline void set_header(Bytes& b, const FileHeader& h) {
    put(b, 0, h);
}

inline std::size_t entry_offset(const Bytes& b, std::uint32_t index) {
    return header(b).section_table_offset + index * sizeof(SectionEntry);
}
inline SectionEntry section(const Bytes& b, std::uint32_t index) {
    return get<SectionEntry>(b, entry_offset(b, index));
}
inline void set_section(Bytes& b, std::uint32_t index, const SectionEntry& e) {
    put(b, entry_offset(b, index), e);
}
inline std::uint32_t find_section(const Bytes& b, SectionType type) {
    for (std::uint32_t i = 0; i < header(b).section_count; ++i)
        if (section(b, i).type == static_cast<std::uint32_t>(type))
            return i;
    return UINT32_MAX;
}

inline std::size_t run_offset(const Bytes& b, std::uint32_t run) {
    return section(b, find_section(b, SectionType::kPageIndex)).offset + run * sizeof(PageRunEntry);
}
inline PageRunEntry run(const Bytes& b, std::uint32_t index) {
    return get<PageRunEntry>(b, run_offset(b, index));
}
inline void set_run(Bytes& b, std::uint32_t index, const PageRunEntry& e) {
    put(b, run_offset(b, index), e);
}

inline void reseal_section(Bytes& b, std::uint32_t index) {
    SectionEntry e = section(b, index);
    e.checksum = XXH3_64bits(b.data() + e.offset, e.size);
    set_section(b, index, e);
}
inline void reseal_sections(Bytes& b, SectionType type) {
    reseal_section(b, find_section(b, type));
}
inline void reseal_table(Bytes& b) {
    FileHeader h = header(b);
    h.section_table_checksum =
        XXH3_64bits(b.data() + h.section_table_offset, h.section_count * sizeof(SectionEntry));
    set_header(b, h);
}
inline void reseal_header(Bytes& b) {
    FileHeader h = header(b);
    h.file_size = b.size();
    set_header(b, h);
    h.header_checksum = XXH3_64bits(b.data(), offsetof(FileHeader, header_checksum));
    set_header(b, h);
}
// Table and header, in that order (the header holds the table's checksum).
inline void reseal_table_and_header(Bytes& b) {
    reseal_table(b);
    reseal_header(b);
}

} // namespace presnap::snapshot::patch
