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
