// The serving mode's Server (server.h): library versions, the composite
// cache, the pool of VMs and its refill thread, and one request's path.
#include "internal.h"

#include "presnap/analysis/hash.h"
#include "presnap/runtime/history_recorder.h"
#include "presnap/snapshot/session_snapshots.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace presnap::serve {

using detail::Composite;
using Clock = std::chrono::steady_clock;

namespace {

double us_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

// One version of the library: what a reload replaces whole.
struct Version {
    library::Library lib;
    std::unique_ptr<Chooser> chooser;
    uint64_t generation = 0;
    uint64_t mem_size = 0;
    struct stat manifest {};
    std::optional<runtime::TracePlan> plan; // when tracing

    // The composite cache: key -> composite, least recently used last.
    std::mutex mu;
    std::list<std::shared_ptr<const Composite>> lru;
    std::map<std::string, std::list<std::shared_ptr<const Composite>>::iterator> by_key;
    std::map<std::string, std::shared_ptr<std::mutex>> building; // one build per key at a time
    // Built behind the requests (build_behind): keys queued or being built,
    // and keys whose build failed (their requests keep the fallback; the
    // failure was reported once).
    std::set<std::string> behind;
    std::set<std::string> failed;
};

std::string key_of(const Choice& c) {
    if (c.warm_all)
        return "all";
    std::string key;
    for (size_t i = 0; i < c.ids.size(); i++)
        key += (i ? " " : "") + c.ids[i];
    return key;
}

bool same_file(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

// Guest output of one request: the response kept (bounded by the
// Session's response limit), stderr passed on, the request's figures.
class RequestSink final : public runtime::ResponseSink {
  public:
    RequestSink(std::string& out, const std::function<void(std::string_view)>& err)
        : out_(out), err_(err) {}
    Status write(int fd, std::span<const uint8_t> bytes) override {
        if (fd == 1)
            out_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        else if (fd == 2 && (wrote_stderr_ = true) && err_)
            err_(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
        return {};
    }
    Status end_response(const runtime::RequestInfo& info) override {
        if (info.index == 0)
            return {};
        info_ = info;
        done_ = true;
        return {};
    }
    Status end_unfinished(const runtime::RequestInfo& info) override {
        info_ = info;
        return {};
    }
    bool done() const { return done_; }
    bool wrote_stderr() const { return wrote_stderr_; }
    const runtime::RequestInfo& info() const { return info_; }

  private:
    std::string& out_;
    const std::function<void(std::string_view)>& err_;
    runtime::RequestInfo info_;
    bool done_ = false, wrote_stderr_ = false;
};

// Brings the composite's recorded working set (the union of its links')
// into the Session's memory with MADV_POPULATE_WRITE, in chunks of at most
// kPrefetchChunk pages, so that the address-space lock is never held long
// while another VM of this process maps memory or takes a page fault.
constexpr uint64_t kPrefetchChunk = 64;
Result<uint64_t> prefetch(runtime::Session& s, const Composite& c) {
    std::vector<uint64_t> pages;
    for (const auto& f : c.files)
        for (const auto& r : f.working_set())
            for (uint64_t p = 0; p < r.page_count; p++)
                pages.push_back(r.first_page + p);
    std::sort(pages.begin(), pages.end());
    pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
    uint64_t done = 0;
    for (const auto& r : snapshot::to_ranges(pages))
        for (uint64_t p = r.first_page; p < r.first_page + r.page_count; p += kPrefetchChunk) {
            uint64_t n = std::min(kPrefetchChunk, r.first_page + r.page_count - p);
            auto span = s.memory().span(p * vmm::kPageSize, n * vmm::kPageSize);
            if (!span)
                return std::unexpected(span.error());
            if (madvise(span->data(), span->size(), MADV_POPULATE_WRITE) != 0)
                return make_errno_error(Errc::kIo, errno, "madvise(MADV_POPULATE_WRITE)");
            done += n;
        }
    return done;
}

// Restores `c` into `s` (a pooled VM), with the working set when `ws`.
Result<uint64_t> restore(runtime::Session& s, const Composite& c,
                         const runtime::SessionOptions& options, bool ws) {
    auto t0 = Clock::now();
    snapshot::RestoreOptions ro;
    ro.session = options;
    if (auto st = snapshot::restore_into(s, c.links, ro); !st)
        return std::unexpected(st.error());
    uint64_t pages = 0;
    if (ws) {
        auto p = prefetch(s, c);
        if (!p)
            return std::unexpected(p.error());
        pages = *p;
    }
    s.stats().restore_us = us_since(t0);
    s.stats().prefetched_pages = pages;
    return pages;
}

std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r')
            c = ' ';
    return s;
}

} // namespace

struct Server::Impl {
    ServerOptions opt;
    std::function<void(std::string_view)> on_stderr;

    std::mutex version_mu; // guards `current`
    std::shared_ptr<Version> current;
    std::mutex reload_mu; // one reload at a time
    std::atomic<uint64_t> next_generation{1};

    // The pool. Every Session exists in exactly one of: idle, ready, dirty,
    // or a request's hands; `sessions` counts them all (at most opt.pool).
    struct Ready {
        std::shared_ptr<const Composite> comp;
        std::unique_ptr<runtime::Session> session;
        double restore_us = 0;
        uint64_t prefetched = 0;
    };
    struct Dirty {
        std::unique_ptr<runtime::Session> session;
        std::shared_ptr<const Composite> hint; // restore this ahead, if any
        bool broken = false;                   // the run failed: make a new VM
    };
    std::mutex pool_mu;
    std::condition_variable pool_cv;   // a VM became idle or ready
    std::condition_variable refill_cv; // work for the refill thread
    std::vector<std::unique_ptr<runtime::Session>> idle;
    std::deque<Ready> ready; // oldest first
    std::deque<Dirty> dirty;
    size_t sessions = 0;
    size_t active = 0; // requests holding a VM
    // Composites of recent requests, most recent first, distinct, at most
    // `pool`: the refill thread restores a VM ahead with the first of them
    // that has no ready VM (else the most recent one).
    std::deque<std::shared_ptr<const Composite>> recent;
    std::shared_ptr<const Composite> next_ahead() const {
        for (const auto& c : recent)
            if (std::none_of(ready.begin(), ready.end(),
                             [&](const Ready& r) { return r.comp == c; }))
                return c;
        return recent.empty() ? nullptr : recent.front();
    }
    bool stopping = false;
    std::atomic<bool> reload_asked{false};
    std::thread refiller;
    bool stopping_builds = false; // under build_mu

    std::mutex history_mu;
    mutable std::mutex totals_mu;
    Totals totals;
    std::atomic<uint64_t> seq{0};

    Result<std::shared_ptr<Version>> open_version();
    // The composite of `c`: cached, built now, or (build_behind, `c` has a
    // fallback) queued for the builder thread, the fallback's returned and
    // `fell_back` set.
    Result<std::shared_ptr<const Composite>> composite(const std::shared_ptr<Version>& v,
                                                       const Choice& c, bool& hit, bool& fell_back);
    Result<std::shared_ptr<const Composite>> build(const Version& v, const Choice& c);
    // The builder thread: composites queued by composite(), one at a time.
    std::mutex build_mu;
    std::condition_variable build_cv;
    std::deque<std::pair<std::shared_ptr<Version>, Choice>> to_build;
    std::thread builder;
    void build_loop();
    // Queues the build of `c`'s composite behind the requests, once per key,
    // at most `cache` keys at a time; false when not queued.
    bool queue_build(const std::shared_ptr<Version>& v, const Choice& c);
    // The chooser's likely() choices of a new version, queued.
    void prepare(const std::shared_ptr<Version>& v);
    Result<std::unique_ptr<runtime::Session>> new_session(uint64_t mem_size);
    void refill_loop();
    void check_manifest();
    std::shared_ptr<Version> version() {
        std::lock_guard l(version_mu);
        return current;
    }
};

Result<std::shared_ptr<Version>> Server::Impl::open_version() {
    auto v = std::make_shared<Version>();
    // The manifest's identity first: a swap after it is seen by the next check.
    if (::stat((opt.library_dir + "/manifest.jsonl").c_str(), &v->manifest) != 0)
        return make_errno_error(Errc::kIo, errno, opt.library_dir + "/manifest.jsonl: cannot read");
    auto lib = library::open_library(opt.library_dir);
    if (!lib)
        return std::unexpected(lib.error());
    v->lib = std::move(*lib);
    auto ch = make_chooser(v->lib, opt.policy, opt.policy_arg);
    if (!ch)
        return std::unexpected(ch.error());
    v->chooser = std::move(*ch);
    auto base = snapshot::open_chain({v->lib.base_path});
    if (!base)
        return std::unexpected(base.error());
    v->mem_size = base->front().guest_memory_size();
    if (opt.trace_every > 0) {
        std::string map = opt.map_path.empty() ? v->lib.map_path : opt.map_path;
        if (map.empty())
            return make_error(Errc::kInvalidArgument,
                              "{}: the library has no map.pmap to trace with (give one)",
                              v->lib.dir);
        auto exe = snapshot::recorded_executable(base->front());
        if (!exe)
            return std::unexpected(exe.error());
        auto plan = runtime::plan_trace(map, *exe, opt.trace_all);
        if (!plan)
            return std::unexpected(plan.error());
        v->plan = std::move(*plan);
    }
    return v;
}

Result<std::shared_ptr<const Composite>> Server::Impl::build(const Version& v, const Choice& c) {
    auto t0 = Clock::now();
    auto comp = std::make_shared<Composite>();
    comp->key = key_of(c);
    comp->ids = c.ids;
    if (c.warm_all) {
        // Every snapshot's warm-up, in manifest order, on a restore of the
        // base, captured to memory: one diff over the base.
        auto base = snapshot::open_chain({v.lib.base_path});
        if (!base)
            return std::unexpected(base.error());
        snapshot::RestoreOptions ro;
        ro.session = opt.session;
        ro.session.track_dirty = true;
        ro.record_working_set = true;
        ro.session.trace = {};
        auto links = snapshot::links_of(*base);
        auto s = snapshot::restore(links, ro);
        if (!s)
            return std::unexpected(s.error());
        std::vector<std::string> warmups;
        for (const auto& e : v.lib.snapshots) {
            warmups.push_back(e.warmup);
            comp->ids.push_back(e.id);
        }
        auto src = runtime::MemoryRequestSource::of_lines(warmups);
        runtime::MemoryResponseSink sink;
        auto out = (*s)->run(src, sink, runtime::AtEof::kStop);
        if (!out)
            return std::unexpected(out.error());
        if (out->kind != runtime::RunOutcome::Kind::kWaiting)
            return make_error(Errc::kGuest, "{}: the warm-all composite's warm-ups failed: {}",
                              v.lib.dir, out->message);
        for (size_t i = 0; i < v.lib.snapshots.size() && i < sink.responses().size(); i++)
            if (sink.responses()[i] != v.lib.snapshots[i].warmup_response && opt.session.warn)
                opt.session.warn(fmt::format("warm-all: the warm-up of {} answers differently "
                                             "after the ones before it",
                                             v.lib.snapshots[i].id));
        auto diff = snapshot::capture_to_memory(**s);
        if (!diff)
            return std::unexpected(diff.error());
        comp->files = std::move(*base);
        comp->files.push_back(std::move(*diff));
    } else if (c.ids.empty()) {
        auto base = snapshot::open_chain({v.lib.base_path});
        if (!base)
            return std::unexpected(base.error());
        comp->files = std::move(*base);
    } else if (c.ids.size() == 1) {
        const library::Entry* e = v.lib.find(c.ids[0]);
        if (!e)
            return make_error(Errc::kInvalidArgument, "{}: no snapshot '{}' in the library",
                              v.lib.dir, c.ids[0]);
        auto chain = snapshot::open_chain({v.lib.base_path, e->path});
        if (!chain)
            return std::unexpected(chain.error());
        comp->files = std::move(*chain);
    } else {
        auto chain = detail::merged_chain(v.lib, c.ids, opt.session);
        if (!chain)
            return std::unexpected(chain.error());
        comp->files = std::move(*chain);
    }
    comp->links = snapshot::links_of(comp->files);
    if (auto s = snapshot::check_chain(comp->links); !s)
        return std::unexpected(s.error());
    if (comp->files.back().guest_memory_size() != v.mem_size)
        return make_error(Errc::kFormat, "{}: composite {} has {} bytes of memory, the base {}",
                          v.lib.dir, comp->key, comp->files.back().guest_memory_size(), v.mem_size);
    comp->build_us = us_since(t0);
    return std::shared_ptr<const Composite>(std::move(comp));
}

Result<std::shared_ptr<const Composite>> Server::Impl::composite(const std::shared_ptr<Version>& vp,
                                                                 const Choice& c, bool& hit,
                                                                 bool& fell_back) {
    Version& v = *vp;
    const std::string key = key_of(c);
    std::shared_ptr<std::mutex> gate;
    {
        std::unique_lock l(v.mu);
        if (auto it = v.by_key.find(key); it != v.by_key.end()) {
            v.lru.splice(v.lru.begin(), v.lru, it->second);
            hit = true;
            return *it->second;
        }
        if (opt.build_behind && c.fallback) {
            // Not on this request's path: queue the build (once) and serve
            // the fallback, base + one snapshot, meanwhile.
            l.unlock();
            queue_build(vp, c);
            fell_back = true;
            Choice f;
            if (!c.fallback->empty())
                f.ids = {*c.fallback};
            bool unused = false;
            return composite(vp, f, hit, unused);
        }
        auto& g = v.building[key];
        if (!g)
            g = std::make_shared<std::mutex>();
        gate = g;
    }
    // Built once even when several requests want it at the same time.
    std::lock_guard building(*gate);
    {
        std::lock_guard l(v.mu);
        if (auto it = v.by_key.find(key); it != v.by_key.end()) {
            hit = true;
            return *it->second;
        }
    }
    hit = false;
    auto comp = build(v, c);
    std::lock_guard l(v.mu);
    v.building.erase(key);
    if (!comp)
        return comp;
    v.lru.push_front(*comp);
    v.by_key[key] = v.lru.begin();
    while (v.lru.size() > std::max<size_t>(opt.cache_entries, 1)) {
        v.by_key.erase(v.lru.back()->key);
        v.lru.pop_back(); // in-flight users and ready VMs keep their own reference
    }
    {
        std::lock_guard t(totals_mu);
        totals.composites_built++;
    }
    return comp;
}

bool Server::Impl::queue_build(const std::shared_ptr<Version>& v, const Choice& c) {
    const std::string key = key_of(c);
    {
        // Queued builds are bounded like the cache; a key not queued now is
        // queued by a later request that wants it.
        std::lock_guard l(v->mu);
        if (v->by_key.contains(key) || v->failed.contains(key) ||
            v->behind.size() >= std::max<size_t>(opt.cache_entries, 1) ||
            !v->behind.insert(key).second)
            return false;
    }
    {
        std::lock_guard b(build_mu);
        Choice wanted = c;
        wanted.fallback.reset();
        to_build.emplace_back(v, std::move(wanted));
    }
    build_cv.notify_one();
    return true;
}

void Server::Impl::prepare(const std::shared_ptr<Version>& v) {
    if (!opt.build_behind)
        return;
    for (const Choice& c : v->chooser->likely())
        queue_build(v, c);
}

void Server::Impl::build_loop() {
    // Below the request threads, as the refill thread is: a merge can take
    // a second of CPU, which requests should not wait behind.
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
    std::unique_lock l(build_mu);
    while (!stopping_builds) {
        if (to_build.empty()) {
            build_cv.wait(l);
            continue;
        }
        auto [v, c] = std::move(to_build.front());
        to_build.pop_front();
        l.unlock();
        Result<std::shared_ptr<const Composite>> comp = nullptr;
        if (v == version()) { // a version replaced since needs nothing more
            bool hit = false, fell_back = false;
            comp = composite(v, c, hit, fell_back);
        }
        {
            std::lock_guard g(v->mu);
            v->behind.erase(key_of(c));
            if (!comp)
                v->failed.insert(key_of(c));
        }
        if (!comp && opt.session.warn)
            opt.session.warn(fmt::format("composite {}: {} (not built again behind the requests: "
                                         "those with a fallback keep it)",
                                         key_of(c), comp.error().describe()));
        l.lock();
    }
}

Result<std::unique_ptr<runtime::Session>> Server::Impl::new_session(uint64_t mem_size) {
    runtime::SessionOptions so = opt.session;
    so.track_dirty = false;
    auto s = runtime::Session::create(mem_size, so);
    if (s) {
        std::lock_guard t(totals_mu);
        totals.vms_created++;
    }
    return s;
}

void Server::Impl::check_manifest() {
    std::lock_guard once(reload_mu);
    auto v = version();
    struct stat st {};
    bool changed = ::stat((opt.library_dir + "/manifest.jsonl").c_str(), &st) == 0 &&
                   !same_file(st, v->manifest);
    if (changed || reload_asked.exchange(false)) {
        auto nv = open_version();
        if (!nv) {
            if (opt.session.warn)
                opt.session.warn(fmt::format("reload: keeping library version {}: {}",
                                             v->generation, nv.error().describe()));
            // Do not retry a broken version at every tick: remember what was seen.
            std::lock_guard l(version_mu);
            if (changed)
                current->manifest = st;
            return;
        }
        (*nv)->generation = next_generation++;
        {
            std::lock_guard l(version_mu);
            current = *nv;
        }
        prepare(*nv);
        std::lock_guard t(totals_mu);
        totals.reloads++;
    }
}

// The refill thread: wipes VMs given back, makes new ones up to the pool
// size, restores them ahead (kAhead), and watches the library.
void Server::Impl::refill_loop() {
    // Below the threads that serve requests: a request arriving while a VM
    // is refilled gets the CPU first (on a busy host, waking up behind the
    // refill costs the request milliseconds). Best effort: if the nice value
    // cannot be raised, the thread runs at the normal priority.
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
    auto last_check = Clock::now();
    std::unique_lock l(pool_mu);
    while (!stopping) {
        if (reload_asked ||
            (opt.watch && Clock::now() - last_check >= std::chrono::milliseconds(opt.watch_ms))) {
            l.unlock();
            check_manifest();
            last_check = Clock::now();
            l.lock();
            continue;
        }
        const bool ahead = opt.prefetch == Prefetch::kAhead;
        // Wiping and restoring a VM changes this process's address space,
        // which stalls a running guest's page faults and memory writes: it
        // is done while no request runs (the time between requests), unless
        // the next request would find no VM at all.
        const bool quiet = active == 0 || (idle.empty() && ready.empty());
        if (quiet && (!dirty.empty() || sessions < opt.pool)) {
            Dirty d;
            if (!dirty.empty()) {
                d = std::move(dirty.front());
                dirty.pop_front();
            } else {
                sessions++; // reserved for the VM made below
            }
            d.hint = ahead ? next_ahead() : nullptr;
            l.unlock();
            auto v = version();
            if (d.hint && !ahead)
                d.hint.reset();
            uint64_t mem = d.hint ? d.hint->files.back().guest_memory_size() : v->mem_size;
            if (d.broken || !d.session || d.session->memory_size() != mem) {
                d.session.reset();
                auto s = new_session(mem);
                if (s)
                    d.session = std::move(*s);
                else if (opt.session.warn)
                    opt.session.warn("pool: cannot make a VM: " + s.error().describe());
            }
            Ready r;
            bool ok = d.session != nullptr;
            if (ok && d.hint) {
                auto t = Clock::now();
                auto pages = restore(*d.session, *d.hint, opt.session, true);
                ok = bool(pages);
                if (ok) {
                    r.restore_us = us_since(t);
                    r.prefetched = *pages;
                }
            } else if (ok) {
                ok = bool(d.session->reset());
            }
            l.lock();
            if (!ok) {
                sessions--; // made again on the next turn
                d.session.reset();
                l.unlock();
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                l.lock();
            } else if (d.hint) {
                r.comp = std::move(d.hint);
                r.session = std::move(d.session);
                ready.push_back(std::move(r));
            } else {
                idle.push_back(std::move(d.session));
            }
            l.unlock();
            pool_cv.notify_all();
            l.lock();
            continue;
        }
        refill_cv.wait_for(l, std::chrono::milliseconds(opt.watch_ms));
    }
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
    {
        std::lock_guard l(impl_->pool_mu);
        impl_->stopping = true;
    }
    impl_->refill_cv.notify_all();
    if (impl_->refiller.joinable())
        impl_->refiller.join();
    {
        std::lock_guard l(impl_->build_mu);
        impl_->stopping_builds = true;
    }
    impl_->build_cv.notify_all();
    if (impl_->builder.joinable())
        impl_->builder.join(); // after the build it is in, if any
}

Result<std::unique_ptr<Server>> Server::open(const ServerOptions& options) {
    if (options.pool == 0)
        return make_error(Errc::kInvalidArgument, "the pool needs at least one VM");
    auto impl = std::make_unique<Impl>();
    impl->opt = options;
    impl->on_stderr = options.on_stderr;
    auto v = impl->open_version();
    if (!v)
        return std::unexpected(v.error());
    (*v)->generation = impl->next_generation++;
    impl->current = std::move(*v);
    auto server = std::unique_ptr<Server>(new Server(std::move(impl)));
    Impl& m = *server->impl_;
    // The first VM now, so that a host without KVM fails here, not per request.
    auto s = m.new_session(m.current->mem_size);
    if (!s)
        return std::unexpected(s.error());
    m.idle.push_back(std::move(*s));
    m.sessions = 1;
    m.prepare(m.current);
    m.refiller = std::thread([&m] { m.refill_loop(); });
    m.builder = std::thread([&m] { m.build_loop(); });
    return server;
}

std::string Server::error_line(std::string_view kind, std::string_view message) {
    return fmt::format("{}{}: {}\n", kErrorPrefix, kind, one_line(std::string(message)));
}

Status Server::handle(std::string_view request, std::string& response, RequestReport& rep) {
    Impl& m = *impl_;
    auto t0 = Clock::now();
    rep = {};
    rep.seq = ++m.seq;
    response.clear();
    auto v = m.version();
    rep.generation = v->generation;
    auto fail = [&](std::string_view kind, const std::string& msg) {
        response = error_line(kind, msg);
        rep.error = std::string(kind);
        rep.total_us = us_since(t0);
        std::lock_guard t(m.totals_mu);
        m.totals.requests++;
        m.totals.errors++;
        return Status{};
    };
    if (request.size() + 1 > m.opt.session.limits.max_request)
        return fail("limit", fmt::format("request of {} bytes is over the limit of {} bytes",
                                         request.size() + 1, m.opt.session.limits.max_request));
    auto choice = v->chooser->choose(request);
    if (!choice)
        return fail("host", "choosing snapshots: " + choice.error().describe());
    rep.choose_us = us_since(t0);
    rep.ids = choice->warm_all ? std::vector<std::string>{"all"} : choice->ids;
    auto t1 = Clock::now();
    auto comp = m.composite(v, *choice, rep.cache_hit, rep.fallback);
    if (!comp)
        return fail("host", "composite: " + comp.error().describe());
    rep.composite_us = us_since(t1);
    if (rep.fallback)
        rep.ids = (*comp)->ids;
    const uint64_t mem = (*comp)->files.back().guest_memory_size();

    // A VM: one ready with this composite, else an idle one, else the
    // oldest ready one (restored again), else wait for the refill thread.
    std::unique_ptr<runtime::Session> session;
    auto t2 = Clock::now();
    {
        std::unique_lock l(m.pool_mu);
        std::erase(m.recent, *comp);
        m.recent.push_front(*comp);
        if (m.recent.size() > m.opt.pool)
            m.recent.pop_back();
        for (;;) {
            auto it = std::find_if(m.ready.begin(), m.ready.end(),
                                   [&](const Impl::Ready& r) { return r.comp == *comp; });
            if (it != m.ready.end()) {
                session = std::move(it->session);
                rep.ready = true;
                rep.prepared_restore_us = it->restore_us;
                rep.prefetched_pages = it->prefetched;
                m.ready.erase(it);
                break;
            }
            if (!m.idle.empty()) {
                session = std::move(m.idle.back());
                m.idle.pop_back();
                break;
            }
            if (!m.ready.empty()) {
                session = std::move(m.ready.front().session);
                m.ready.pop_front();
                break;
            }
            // A VM given back and not wiped yet: restoring resets it anyway,
            // sooner than waiting for the refill thread.
            auto d = std::find_if(m.dirty.begin(), m.dirty.end(),
                                  [](const Impl::Dirty& x) { return !x.broken && x.session; });
            if (d != m.dirty.end()) {
                session = std::move(d->session);
                m.dirty.erase(d);
                break;
            }
            l.unlock();
            m.refill_cv.notify_one();
            l.lock();
            // Something changed while the lock was released: look again.
            if (!m.idle.empty() || !m.ready.empty() ||
                std::any_of(m.dirty.begin(), m.dirty.end(),
                            [](const Impl::Dirty& x) { return !x.broken && x.session; }))
                continue;
            m.pool_cv.wait(l);
        }
        m.active++;
    }
    rep.wait_us = us_since(t2);
    // The refill thread is woken after the lock is released: woken under
    // it, it could take the CPU and then block on the lock this thread
    // still holds (milliseconds on a busy host).
    auto give_back = [&](bool broken) {
        {
            std::lock_guard l(m.pool_mu);
            m.dirty.push_back({std::move(session), *comp, broken});
            m.active--;
        }
        m.refill_cv.notify_one();
    };
    if (!rep.ready) {
        if (session->memory_size() != mem) {
            auto s = m.new_session(mem);
            if (!s) {
                give_back(true);
                return fail("host", "cannot make a VM: " + s.error().describe());
            }
            session = std::move(*s);
        }
        auto t = Clock::now();
        auto pages = restore(*session, **comp, m.opt.session, m.opt.prefetch != Prefetch::kNone);
        if (!pages) {
            give_back(true);
            return fail("host", "restore: " + pages.error().describe());
        }
        rep.restore_us = us_since(t);
        rep.prefetched_pages = *pages;
    }

    const bool traced = v->plan && m.opt.history && (rep.seq - 1) % m.opt.trace_every == 0;
    if (auto s = session->set_trace(traced ? runtime::TraceOptions{v->plan->points, 1}
                                           : runtime::TraceOptions{});
        !s) {
        give_back(true);
        return fail("host", "tracing: " + s.error().describe());
    }
    std::string line(request);
    line += '\n';
    runtime::MemoryRequestSource src(std::move(line));
    RequestSink sink(response, m.on_stderr);
    auto t3 = Clock::now();
    auto out = session->run(src, sink, runtime::AtEof::kStop);
    rep.run_us = us_since(t3);
    if (traced && out) {
        analysis::HistoryRequest rec;
        rec.seq = rep.seq - 1;
        rec.hash = analysis::request_hash(request); // the line without its newline
        rec.length = request.size();
        rec.bytes = std::string(request);
        for (uint32_t i : sink.info().segments)
            if (i < v->plan->map.segments.size())
                rec.segments.push_back(v->plan->map.segments[i].id);
        rec.latency_us = sink.info().us;
        rec.snapshot = (*comp)->key.empty() ? "base" : (*comp)->key;
        rec.index = 1;
        rec.response_len = response.size();
        const auto& p = m.opt.error_prefix;
        rec.failed = !sink.done() || sink.wrote_stderr() || (!p.empty() && response.starts_with(p));
        std::lock_guard h(m.history_mu);
        m.opt.history(analysis::format_history_request(std::move(rec)));
    }
    rep.request_us = sink.info().us;
    rep.faults = sink.info().host_faults;
    if (!out) {
        give_back(true);
        return fail("host", out.error().describe());
    }
    using K = runtime::RunOutcome::Kind;
    if (out->kind == K::kWaiting && sink.done()) {
        give_back(false);
    } else if (out->kind == K::kExited && out->status == 0 && out->requests == 1) {
        give_back(true); // a one-shot function answered and exited
    } else {
        give_back(true);
        const char* kind = out->kind == K::kTimeout      ? "timeout"
                           : out->kind == K::kGuestError ? "guest"
                                                         : "fault";
        std::string msg = out->message.empty()
                              ? fmt::format("the program exited with status {}", out->status)
                              : out->message;
        return fail(kind, msg);
    }
    rep.total_us = us_since(t0);
    std::lock_guard t(m.totals_mu);
    m.totals.requests++;
    m.totals.ready_hits += rep.ready;
    m.totals.cache_hits += rep.cache_hit;
    m.totals.fallbacks += rep.fallback;
    return {};
}

void Server::reload() {
    impl_->reload_asked = true;
    impl_->check_manifest();
}

void Server::request_reload() {
    impl_->reload_asked = true; // lock-free store: safe from a signal handler
}

uint64_t Server::generation() const {
    return impl_->version()->generation;
}

std::string Server::history_preamble() const {
    auto v = impl_->version();
    return v->plan ? v->plan->preamble : std::string();
}

const library::Library& Server::library() const {
    return impl_->current->lib;
}

Server::Totals Server::totals() const {
    std::lock_guard t(impl_->totals_mu);
    return impl_->totals;
}

} // namespace presnap::serve
