// logparse: a log-enrichment request handler (static C++, libstdc++).
//
// One request per line on stdin ("ROUTE ARGUMENT..."), one response line on
// stdout. It is the kind of service that sits behind a log shipper: classify a
// raw log line, tokenise a message for a search index, map a client address
// to a country. Each route's data structure is built the first time the route
// is used rather than at start-up, so a process that only tokenises never
// compiles a regex. That lazy, route-specific work is what presnap's
// specialised snapshots capture.
//
// Routes and the global state each one builds on first use:
//   parse LINE     rules: std::regex for 4 log formats plus a library of
//                  known-error signatures (960 compiled std::regex)
//   tokenize TEXT  vocabulary: a WordPiece vocabulary of 187k subwords in a
//                  std::unordered_map<std::string, uint32_t>
//   geoip ADDR     geo_ranges: ~500k IPv4 allocations, sorted and coalesced
// The data are generated from fixed tables and a fixed-seed generator (a
// stand-in for the files a later presnap issue will let examples ship), so
// every response is a deterministic function of the requests.
#include <algorithm>
#include <array>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

// ---- parse ---------------------------------------------------------------

struct Signature {
    std::string id;
    std::regex pattern;
};

struct Rules {
    std::regex access; // common/combined access log
    std::regex syslog; // BSD syslog
    std::regex app;    // "2024-05-01T12:00:00Z ERROR [component] message"
    std::regex logfmt; // key=value pairs
    std::regex logfmt_pair;
    std::vector<Signature> signatures;
};

// Known-error messages, per component. In a real incident runbook each
// component's rules are owned and edited separately, so every (component,
// message) pair is its own compiled rule with its own id; this example lets
// the components share their phrasing.
constexpr std::array<std::string_view, 24> kComponents = {
    "db",        "cache",   "queue",    "auth",     "storage",  "gateway", "search", "billing",
    "scheduler", "mailer",  "metrics",  "payments", "frontend", "worker",  "ledger", "notifier",
    "inventory", "catalog", "checkout", "session",  "upload",   "resizer", "audit",  "webhook"};
constexpr std::array<std::pair<std::string_view, std::string_view>, 40> kMessages = {{
    {"conn-refused", R"re(connection refused(?: to ([\w.-]+):(\d+))?)re"},
    {"conn-reset", R"re(connection reset by peer)re"},
    {"timeout", R"re(time(?:d )?out after (\d+) ?(ms|s))re"},
    {"oom", R"re(out of memory(?: \(requested (\d+) bytes\))?)re"},
    {"disk-full", R"re(no space left on device|disk (?:is )?full)re"},
    {"perm", R"re(permission denied(?: for ([\w/.-]+))?)re"},
    {"cert", R"re(certificate (?:has )?expired(?: on (\d{4}-\d{2}-\d{2}))?)re"},
    {"deadlock", R"re(deadlock detected(?: on (\w+))?)re"},
    {"fd-limit", R"re(too many open files)re"},
    {"pipe", R"re(broken pipe)re"},
    {"rate-limit", R"re(rate limit(?:ed| exceeded)(?: for (\S+))?)re"},
    {"auth-fail", R"re(authentication failed for (?:user )?'?(\w+)'?)re"},
    {"dns", R"re(failed to resolve (?:host )?([\w.-]+))re"},
    {"lag", R"re(replication lag (?:is )?(\d+) ?s)re"},
    {"slow", R"re(slow (?:query|request) \((\d+) ?ms\))re"},
    {"segv", R"re(segfault at ([0-9a-f]+))re"},
    {"checksum", R"re(checksum mismatch(?: in ([\w/.-]+))?)re"},
    {"quota", R"re(quota exceeded(?: for (\w+))?)re"},
    {"retry", R"re(giving up after (\d+) retries)re"},
    {"unavail", R"re((?:service )?unavailable(?: \((\d{3})\))?)re"},
    {"schema", R"re(unknown (?:column|field) '?(\w+)'?)re"},
    {"panic", R"re(panic: (.+))re"},
    {"leader", R"re(lost leadership|leader election (?:failed|timed out))re"},
    {"tls", R"re(tls handshake (?:failed|error)(?:: (.+))?)re"},
    {"pool", R"re((?:connection )?pool exhausted(?: \((\d+)/(\d+)\))?)re"},
    {"verify", R"re(certificate verify failed(?:: (.+))?)re"},
    {"port", R"re(address already in use(?: :?(\d+))?)re"},
    {"unreach", R"re(no route to host(?: ([\w.-]+))?)re"},
    {"eof", R"re(unexpected (?:eof|end of (?:file|stream)))re"},
    {"json", R"re((?:invalid|malformed) json(?: at (?:position|offset) (\d+))?)re"},
    {"utf8", R"re(invalid utf-?8(?: sequence)?(?: at (\d+))?)re"},
    {"not-found", R"re((?:key|object|file) not found(?::? (\S+))?)re"},
    {"conflict", R"re(version conflict(?: on (\S+))?|409 conflict)re"},
    {"overflow", R"re((?:integer|buffer|stack) overflow(?: in (\w+))?)re"},
    {"gc", R"re(gc pause (?:of )?(\d+) ?ms)re"},
    {"threads", R"re(thread pool (?:saturated|full)(?: \((\d+) queued\))?)re"},
    {"clock", R"re(clock skew (?:of )?(\d+) ?(?:ms|s) detected)re"},
    {"migration", R"re(migration (\d+) failed)re"},
    {"backpressure", R"re(backpressure: dropping (\d+) (?:messages|events))re"},
    {"config", R"re((?:missing|invalid) config(?:uration)? (?:key |value )?'?([\w.]+)'?)re"},
}};

std::unique_ptr<Rules> rules;

std::unique_ptr<Rules> build_rules() {
    constexpr auto opts = std::regex::ECMAScript | std::regex::optimize;
    auto r = std::make_unique<Rules>();
    r->access = std::regex(
        R"re(^(\S+) \S+ (\S+) \[([^\]]+)\] "([A-Z]+) (\S+)(?: HTTP/[\d.]+)?" (\d{3}) (\d+|-)(?: "([^"]*)" "([^"]*)")?$)re",
        opts);
    r->syslog = std::regex(
        R"re(^([A-Z][a-z]{2} +\d+ [\d:]{8}) (\S+) ([\w./-]+)(?:\[(\d+)\])?: (.*)$)re", opts);
    r->app = std::regex(
        R"re(^(\d{4}-\d{2}-\d{2}[T ][\d:.]+Z?) +(TRACE|DEBUG|INFO|WARN(?:ING)?|ERROR|FATAL) +\[?([\w.-]+)\]?:? +(.*)$)re",
        opts);
    r->logfmt = std::regex(R"re(^\w+=(?:"[^"]*"|\S+)(?: +\w+=(?:"[^"]*"|\S+))*$)re", opts);
    r->logfmt_pair = std::regex(R"re((\w+)=(?:"([^"]*)"|(\S+)))re", opts);
    // Case-insensitive: "Connection refused" and "connection refused" are the
    // same incident.
    for (std::size_t c = 0; c < kComponents.size(); c++) {
        for (std::size_t m = 0; m < kMessages.size(); m++) {
            std::string id = std::string(kComponents[c]) + "/" + std::string(kMessages[m].first);
            std::string re = std::string(kMessages[m].second);
            r->signatures.push_back({std::move(id), std::regex(re, opts | std::regex::icase)});
        }
    }
    return r;
}

// Which component a message came from: the source field if it names one of
// ours, else the first component word that appears in the message.
std::optional<std::size_t> component_of(const std::string& source, const std::string& message) {
    for (std::size_t c = 0; c < kComponents.size(); c++)
        if (source.find(kComponents[c]) != std::string::npos)
            return c;
    for (std::size_t c = 0; c < kComponents.size(); c++)
        if (message.find(kComponents[c]) != std::string::npos)
            return c;
    return std::nullopt;
}

// Appends " signature=ID" (plus the first captured detail) for the first rule
// of the message's component that matches, or " signature=none".
void describe_signature(std::ostream& out, const std::string& source, const std::string& message) {
    const auto c = component_of(source, message);
    if (c) {
        for (std::size_t m = 0; m < kMessages.size(); m++) {
            const Signature& sig = rules->signatures[*c * kMessages.size() + m];
            std::smatch match;
            if (!std::regex_search(message, match, sig.pattern))
                continue;
            out << " signature=" << sig.id;
            for (std::size_t g = 1; g < match.size(); g++) {
                if (match[g].matched) {
                    out << " detail=" << match[g].str();
                    break;
                }
            }
            return;
        }
    }
    out << " signature=none";
}

// libstdc++'s regex executor recurses per input character, about 300 bytes
// of stack each: a 2 KiB cap keeps a match under 1 MiB of stack, natively and
// in a guest with a smaller stack than Linux's 8 MiB.
constexpr std::size_t kMaxParseLine = 2048;

std::string route_parse(const std::string& line) {
    if (!rules)
        rules = build_rules();
    if (line.size() > kMaxParseLine)
        return "error: parse: line longer than " + std::to_string(kMaxParseLine) + " bytes";
    std::ostringstream out;
    out << "parse:";
    std::smatch m;
    if (std::regex_match(line, m, rules->access)) {
        out << " format=access client=" << m[1] << " user=" << m[2] << " method=" << m[4]
            << " path=" << m[5] << " status=" << m[6] << " bytes=" << m[7];
        if (m[6].str()[0] == '5')
            out << " class=server-error";
        else if (m[6].str()[0] == '4')
            out << " class=client-error";
    } else if (std::regex_match(line, m, rules->app)) {
        const std::string source = m[3], message = m[4];
        out << " format=app time=" << m[1] << " level=" << m[2] << " source=" << source;
        describe_signature(out, source, message);
    } else if (std::regex_match(line, m, rules->syslog)) {
        const std::string source = m[3], message = m[5];
        out << " format=syslog host=" << m[2] << " program=" << source;
        if (m[4].matched)
            out << " pid=" << m[4];
        describe_signature(out, source, message);
    } else if (std::regex_match(line, rules->logfmt)) {
        std::string level = "-", source, message;
        for (std::sregex_iterator it(line.begin(), line.end(), rules->logfmt_pair), end; it != end;
             ++it) {
            const std::string key = (*it)[1];
            const std::string value = (*it)[2].matched ? (*it)[2].str() : (*it)[3].str();
            if (key == "level" || key == "lvl")
                level = value;
            else if (key == "msg" || key == "message")
                message = value;
            else if (key == "component" || key == "svc" || key == "service")
                source = value;
        }
        out << " format=logfmt level=" << level;
        describe_signature(out, source, message);
    } else {
        out << " format=unknown";
    }
    return out.str();
}

// ---- tokenize ------------------------------------------------------------

// WordPiece-style: a word is split greedily into the longest vocabulary
// pieces; pieces after the first are looked up with a "##" prefix.
std::unique_ptr<std::unordered_map<std::string, std::uint32_t>> vocabulary;
constexpr std::size_t kMaxPiece = 24;

constexpr std::array<std::string_view, 20> kPrefixes = {
    "",    "un",    "re",   "pre",  "dis", "over", "under", "inter", "mis",   "non",
    "sub", "super", "anti", "auto", "de",  "en",   "ex",    "micro", "multi", "trans"};
constexpr std::array<std::string_view, 64> kRoots = {
    "act",     "cept",   "dict",  "duct",  "fer",   "form",    "gen",   "graph", "ject", "log",
    "mit",     "mov",    "pend",  "port",  "pos",   "press",   "rupt",  "scrib", "sent", "serv",
    "spect",   "struct", "tain",  "tend",  "tract", "vert",    "vid",   "vis",   "voc",  "volv",
    "connect", "load",   "read",  "writ",  "start", "stop",    "block", "lock",  "cach", "queu",
    "rout",    "pars",   "stor",  "fetch", "send",  "timeout", "error", "fail",  "retr", "request",
    "respons", "serial", "token", "index", "match", "count",   "limit", "quot",  "mem",  "disk",
    "net",     "sign",   "valid", "code"};
constexpr std::array<std::string_view, 20> kSuffixes = {
    "",     "s",    "ed",  "ing", "er", "ers", "ion", "ions", "ive",  "able",
    "ment", "ness", "ure", "ity", "al", "ly",  "or",  "ors",  "ible", "ation"};
constexpr std::array<std::string_view, 6> kSecondSuffixes = {"", "s", "ly", "ness", "al", "ity"};

std::unique_ptr<std::unordered_map<std::string, std::uint32_t>> build_vocabulary() {
    auto vocab = std::make_unique<std::unordered_map<std::string, std::uint32_t>>();
    vocab->reserve(1 << 18);
    auto add = [&](std::string piece) {
        if (!piece.empty() && piece.size() <= kMaxPiece)
            vocab->emplace(std::move(piece), static_cast<std::uint32_t>(vocab->size()));
    };
    // Every string of up to three letters, word-initial and continuing, so
    // that any lowercase word can be spelt out.
    const std::string letters = "abcdefghijklmnopqrstuvwxyz";
    for (const std::string cont : {"", "##"}) {
        for (char a : letters) {
            add(cont + a);
            for (char b : letters) {
                add(cont + a + b);
                for (char c : letters)
                    add(cont + a + b + c);
            }
        }
        for (char d = '0'; d <= '9'; d++)
            add(cont + d);
    }
    // Morphological combinations: prefix + root + suffix (+ second suffix),
    // and the same without the prefix as a continuation piece.
    for (auto root : kRoots) {
        for (auto suffix : kSuffixes) {
            for (auto second : kSecondSuffixes) {
                const std::string tail =
                    std::string(root) + std::string(suffix) + std::string(second);
                add("##" + tail);
                for (auto prefix : kPrefixes)
                    add(std::string(prefix) + tail);
            }
        }
    }
    return vocab;
}

std::string route_tokenize(const std::string& text) {
    if (!vocabulary)
        vocabulary = build_vocabulary();
    std::ostringstream pieces;
    std::size_t count = 0;
    std::string word;
    auto flush_word = [&] {
        // Greedy longest match. Every single letter and digit is a piece,
        // word-initial or continuing, so every step makes progress.
        for (std::size_t at = 0; at < word.size();) {
            const std::string cont = at ? "##" : "";
            std::size_t len = std::min(kMaxPiece, word.size() - at);
            for (; len > 1; len--)
                if (vocabulary->count(cont + word.substr(at, len)))
                    break;
            const std::string piece = cont + word.substr(at, len);
            pieces << ' ' << piece << '/' << vocabulary->at(piece);
            count++;
            at += len;
        }
        word.clear();
    };
    for (char ch : text) {
        if (ch >= 'A' && ch <= 'Z')
            ch = static_cast<char>(ch - 'A' + 'a');
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
            word += ch;
        else
            flush_word();
    }
    flush_word();
    return "tokenize: " + std::to_string(count) + " tokens:" + pieces.str();
}

// ---- geoip ---------------------------------------------------------------

struct GeoRange {
    std::uint32_t first; // first address of the range; it ends where the next begins
    std::uint16_t country;
};

constexpr std::array<std::string_view, 40> kCountries = {
    "US", "CN", "JP", "DE", "GB", "FR", "KR", "BR", "IT", "CA", "NL", "AU", "RU", "IN",
    "ES", "SE", "TW", "PL", "MX", "CH", "ZA", "AR", "BE", "TR", "NO", "FI", "DK", "AT",
    "IE", "SG", "HK", "ID", "VN", "TH", "EG", "NG", "KE", "CL", "CO", "NZ"};
constexpr std::uint32_t kBlockBits = 13; // allocations are /19 blocks
constexpr std::uint32_t kBlocks = 1u << (32 - kBlockBits);

std::unique_ptr<std::vector<GeoRange>> geo_ranges;

std::unique_ptr<std::vector<GeoRange>> build_geo_ranges() {
    // Registries publish allocations by registry and date, not by address,
    // so the records arrive scrambled: visit the blocks in the order of an
    // odd-multiplier permutation and draw countries from a fixed-seed LCG.
    std::vector<GeoRange> records(kBlocks);
    std::uint64_t state = 0x2545f4914f6cdd1dULL;
    for (std::uint32_t i = 0; i < kBlocks; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        const std::uint32_t block = (i * 0x9e3779b1u) & (kBlocks - 1);
        // Skewed towards the first countries, as real allocations are.
        const std::uint32_t r = static_cast<std::uint32_t>(state >> 33) % 1000;
        const std::uint16_t country =
            static_cast<std::uint16_t>(r < 400   ? r % 4
                                       : r < 700 ? 4 + r % 10
                                                 : 14 + r % (kCountries.size() - 14));
        records[i] = {block << kBlockBits, country};
    }
    std::sort(records.begin(), records.end(),
              [](const GeoRange& a, const GeoRange& b) { return a.first < b.first; });
    // Neighbouring blocks of one country are one range.
    auto ranges = std::make_unique<std::vector<GeoRange>>();
    for (const GeoRange& r : records)
        if (ranges->empty() || ranges->back().country != r.country)
            ranges->push_back(r);
    ranges->shrink_to_fit();
    return ranges;
}

std::optional<std::uint32_t> parse_ipv4(const std::string& text) {
    std::uint32_t addr = 0;
    int parts = 0;
    std::size_t at = 0;
    while (parts < 4) {
        std::size_t digits = 0;
        std::uint32_t octet = 0;
        while (at < text.size() && text[at] >= '0' && text[at] <= '9' && digits < 3) {
            octet = octet * 10 + static_cast<std::uint32_t>(text[at++] - '0');
            digits++;
        }
        if (digits == 0 || octet > 255)
            return std::nullopt;
        addr = addr << 8 | octet;
        if (++parts < 4 && (at >= text.size() || text[at++] != '.'))
            return std::nullopt;
    }
    if (at != text.size())
        return std::nullopt;
    return addr;
}

std::string format_ipv4(std::uint32_t a) {
    return std::to_string(a >> 24) + "." + std::to_string(a >> 16 & 255) + "." +
           std::to_string(a >> 8 & 255) + "." + std::to_string(a & 255);
}

std::string route_geoip(const std::string& arg) {
    if (!geo_ranges)
        geo_ranges = build_geo_ranges();
    const auto addr = parse_ipv4(arg);
    if (!addr)
        return "error: geoip: '" + arg + "' is not a dotted-quad IPv4 address";
    if ((*addr >> 24) == 10 || (*addr >> 24) == 127 || (*addr >> 16) == 0xc0a8)
        return "geoip " + arg + ": private";
    const auto& ranges = *geo_ranges;
    // The range holding addr is the last one starting at or before it.
    const auto next =
        std::upper_bound(ranges.begin(), ranges.end(), *addr,
                         [](std::uint32_t a, const GeoRange& r) { return a < r.first; });
    const GeoRange& hit = *(next - 1);
    const std::uint32_t last = next == ranges.end() ? 0xffffffffu : next->first - 1;
    return "geoip " + arg + ": " + std::string(kCountries[hit.country]) + " (" +
           format_ipv4(hit.first) + "-" + format_ipv4(last) + ")";
}

// ---- dispatch ------------------------------------------------------------

std::string handle(const std::string& line) {
    const std::size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos)
        return "error: empty request";
    const std::size_t end = line.find_first_of(" \t", start);
    const std::string route = line.substr(start, end - start);
    const std::size_t arg_start =
        end == std::string::npos ? end : line.find_first_not_of(" \t", end);
    const std::string arg = arg_start == std::string::npos ? "" : line.substr(arg_start);
    // Route names are literals compared in place (not a table) so that
    // presnap's static analysis can read each branch's token.
    if (route == "parse")
        return route_parse(arg);
    if (route == "tokenize")
        return route_tokenize(arg);
    if (route == "geoip")
        return route_geoip(arg);
    return "error: unknown route '" + route + "'";
}

} // namespace

int main() {
    std::string line;
    while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        // std::flush, not just '\n': stdout is a pipe natively, and each
        // request must get its answer before we block reading the next one.
        std::cout << handle(line) << '\n' << std::flush;
    }
    return 0;
}
