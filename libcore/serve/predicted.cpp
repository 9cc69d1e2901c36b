// The `predicted` policy and multi-snapshot composites: the only file of the
// serving mode that calls snapselect (presnap/select) and snapmerge
// (presnap/merge).
#include "internal.h"

#include "presnap/merge/composite.h"
#include "presnap/select/select.h"

namespace presnap::serve::detail {

namespace {

class PredictedChooser final : public Chooser {
  public:
    explicit PredictedChooser(select::Selector s) : selector_(std::move(s)) {}
    Result<Choice> choose(std::string_view request) const override {
        select::Selection s = selector_.select(request);
        Choice c;
        c.ids = std::move(s.snapshots);
        c.warm_all = false; // a warm-all selection names its snapshots: merged like any other
        if (c.ids.size() > 1) {
            // Until the merge is made: the chosen snapshot worth most to this
            // request, or the base when none is worth anything.
            const select::Candidate* best = nullptr;
            for (const auto& cand : s.candidates)
                if (cand.chosen && cand.value_us > 0 && (!best || cand.value_us > best->value_us))
                    best = &cand;
            c.fallback = best ? best->id : std::string();
        }
        return c;
    }

    std::vector<Choice> likely() const override {
        // Warm-all does not depend on the request: when the model answers
        // it, every request gets the same set.
        select::Selection s = selector_.select("");
        if (!s.warm_all || s.snapshots.size() < 2)
            return {};
        Choice c;
        c.ids = std::move(s.snapshots);
        return {c};
    }

  private:
    select::Selector selector_;
};

} // namespace

Result<std::unique_ptr<Chooser>> make_predicted_chooser(const library::Library& lib) {
    auto s = select::Selector::open(lib);
    if (!s)
        return std::unexpected(s.error());
    return std::make_unique<PredictedChooser>(std::move(*s));
}

Result<std::vector<snapshot::SnapshotFile>> merged_chain(const library::Library& lib,
                                                         std::span<const std::string> ids,
                                                         const runtime::SessionOptions& session) {
    merge::CompositeOptions o;
    o.store = false; // the library is shared read-only; the server keeps composites in memory
    o.session = session;
    auto c = merge::make_composite(lib, ids, o);
    if (!c)
        return std::unexpected(c.error());
    return std::move(c->chain);
}

} // namespace presnap::serve::detail
