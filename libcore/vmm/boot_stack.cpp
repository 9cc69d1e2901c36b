#include "presnap/vmm/boot_stack.h"

#include <cstring>
#include <elf.h>

namespace presnap::vmm {

Result<StackImage> build_stack(const StackSpec& spec) {
    if (spec.top % 16 != 0)
        return make_error(Errc::kInternal, "stack top 0x{:x} is not 16-byte aligned", spec.top);
    // Strings first, at the top, in the order Linux puts them.
    std::vector<uint8_t> strings;
    auto add_string = [&](const std::string& s) {
        uint64_t off = strings.size();
        strings.insert(strings.end(), s.begin(), s.end());
        strings.push_back(0);
        return off;
    };
    std::vector<uint64_t> argv_off, envp_off;
    for (const auto& a : spec.argv)
        argv_off.push_back(add_string(a));
    for (const auto& e : spec.envp)
        envp_off.push_back(add_string(e));
    uint64_t execfn_off = add_string(spec.execfn);
    uint64_t random_off = strings.size();
    strings.insert(strings.end(), spec.at_random.begin(), spec.at_random.end());

    uint64_t strings_size = (strings.size() + 15) / 16 * 16;
    uint64_t strings_base = spec.top - strings_size;

    std::vector<uint64_t> words;
    words.push_back(spec.argv.size());
    for (uint64_t o : argv_off)
        words.push_back(strings_base + o);
    words.push_back(0);
    for (uint64_t o : envp_off)
        words.push_back(strings_base + o);
    words.push_back(0);
    for (const auto& [k, v] : spec.auxv) {
        words.push_back(k);
        words.push_back(v);
    }
    words.push_back(AT_RANDOM);
    words.push_back(strings_base + random_off);
    words.push_back(AT_EXECFN);
    words.push_back(strings_base + execfn_off);
    words.push_back(AT_NULL);
    words.push_back(0);
    if (words.size() % 2)
        words.push_back(0); // keeps %rsp 16-byte aligned
    uint64_t total = words.size() * 8 + strings_size;
    if (total > kMaxStackImage)
        return make_error(Errc::kInvalidArgument,
                          "arguments and environment take {} bytes (limit {})", total,
                          kMaxStackImage);

    StackImage img;
    img.rsp = spec.top - total;
    img.bytes.resize(total, 0);
    std::memcpy(img.bytes.data(), words.data(), words.size() * 8);
    std::memcpy(img.bytes.data() + words.size() * 8, strings.data(), strings.size());
    img.execfn_addr = strings_base + execfn_off;
    return img;
}

} // namespace presnap::vmm
