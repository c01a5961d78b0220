#include "delivery/routing.h"

namespace spate::delivery {

namespace {
RouteRef ToRoute(const Endpoint& e) {
  auto r = std::make_shared<Route>();
  r->name = e.text;
  r->hosts.push_back(e);
  return r;
}
}  // namespace

StaticRouting::StaticRouting(const std::map<std::string, Endpoint>& routes,
                             std::optional<Endpoint> smarthost) {
  for (const auto& [domain, endpoint] : routes)
    routes_.emplace(domain, ToRoute(endpoint));
  if (smarthost)
    smarthost_ = ToRoute(*smarthost);
}

void StaticRouting::Resolve(std::string_view domain, Done done) {
  done(Find(domain));
}

RouteRef StaticRouting::Find(std::string_view domain) const {
  auto it = routes_.find(domain);
  return it != routes_.end() ? it->second : smarthost_;
}

}  // namespace spate::delivery
