#include "delivery/routing.h"

namespace spate::delivery {

namespace {
RouteRef ToRoute(const Endpoint& e) {
  auto r = std::make_shared<Route>();
  r->name = e.text;
  r->hosts.push_back(e);
  // "host:port" or "[v6]:port": the host, for SNI and the certificate check.
  std::string_view host = e.text;
  if (size_t colon = host.rfind(':'); colon != std::string_view::npos)
    host = host.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  r->host_names.emplace_back(host);
  return r;
}
}  // namespace

StaticRouting::StaticRouting(const std::map<std::string, Endpoint>& routes,
                             std::optional<Endpoint> smarthost) {
  Replace(routes, std::move(smarthost));
}

void StaticRouting::Replace(const std::map<std::string, Endpoint>& routes,
                            std::optional<Endpoint> smarthost) {
  std::map<std::string, RouteRef, std::less<>> next;
  for (const auto& [domain, endpoint] : routes) {
    auto old = routes_.find(domain);
    next.emplace(domain, old != routes_.end() && old->second->name == endpoint.text
                             ? old->second
                             : ToRoute(endpoint));
  }
  routes_.swap(next);
  if (!smarthost) {
    smarthost_ = nullptr;
  } else if (smarthost_ == nullptr || smarthost_->name != smarthost->text) {
    smarthost_ = ToRoute(*smarthost);
  }
}

void StaticRouting::Resolve(std::string_view domain, Done done) {
  done(Find(domain));
}

RouteRef StaticRouting::Find(std::string_view domain) const {
  auto it = routes_.find(domain);
  return it != routes_.end() ? it->second : smarthost_;
}

}  // namespace spate::delivery
