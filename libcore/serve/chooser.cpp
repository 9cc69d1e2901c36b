// The policies that choose a request's snapshots (server.h): base, all,
// fixed, oracle here; predicted in predicted.cpp.
#include "internal.h"

#include <algorithm>

namespace presnap::serve {

namespace {

class ConstantChooser final : public Chooser {
  public:
    explicit ConstantChooser(Choice c) : c_(std::move(c)) {}
    Result<Choice> choose(std::string_view) const override { return c_; }
    std::vector<Choice> likely() const override {
        if (c_.warm_all || c_.ids.size() > 1) // a composite to build
            return {c_};
        return {};
    }

  private:
    Choice c_;
};

std::string_view first_word(std::string_view s) {
    size_t b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos)
        return {};
    s.remove_prefix(b);
    return s.substr(0, s.find_first_of(" \t\r"));
}

// The snapshot made after a request of the same route, the route being the
// first word (as in the examples): what a perfect predictor would pick.
class OracleChooser final : public Chooser {
  public:
    explicit OracleChooser(const library::Library& lib) {
        for (const auto& e : lib.snapshots) {
            std::string route(first_word(e.warmup));
            if (!route.empty() && std::none_of(routes_.begin(), routes_.end(),
                                               [&](const auto& r) { return r.first == route; }))
                routes_.emplace_back(route, e.id);
        }
    }
    Result<Choice> choose(std::string_view request) const override {
        std::string_view route = first_word(request);
        for (const auto& [r, id] : routes_)
            if (r == route)
                return Choice{{id}, false};
        return Choice{};
    }

  private:
    std::vector<std::pair<std::string, std::string>> routes_;
};

} // namespace

Result<std::unique_ptr<Chooser>> make_chooser(const library::Library& lib, std::string_view policy,
                                              std::string_view arg) {
    if (policy != "fixed" && !arg.empty())
        return make_error(Errc::kInvalidArgument, "policy {} takes no snapshot list", policy);
    if (policy == "base")
        return std::make_unique<ConstantChooser>(Choice{});
    if (policy == "all")
        return std::make_unique<ConstantChooser>(Choice{{}, true});
    if (policy == "oracle")
        return std::make_unique<OracleChooser>(lib);
    if (policy == "predicted")
        return detail::make_predicted_chooser(lib);
    if (policy == "fixed") {
        Choice c;
        std::string s(arg);
        std::replace(s.begin(), s.end(), ',', ' ');
        size_t i = 0;
        while ((i = s.find_first_not_of(' ', i)) != std::string::npos) {
            size_t j = s.find(' ', i);
            std::string id = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
            i = j;
            const library::Entry* e = lib.find(id);
            if (!e)
                return make_error(Errc::kInvalidArgument, "{}: no snapshot '{}' in the library",
                                  lib.dir, id);
            if (std::find(c.ids.begin(), c.ids.end(), e->id) == c.ids.end())
                c.ids.push_back(e->id);
        }
        // Manifest order, as selections are.
        std::vector<std::string> ordered;
        for (const auto& e : lib.snapshots)
            if (std::find(c.ids.begin(), c.ids.end(), e.id) != c.ids.end())
                ordered.push_back(e.id);
        c.ids = std::move(ordered);
        return std::make_unique<ConstantChooser>(std::move(c));
    }
    return make_error(Errc::kInvalidArgument,
                      "unknown policy '{}' (expected base, all, fixed, oracle or predicted)",
                      policy);
}

} // namespace presnap::serve
