// core/daemon/options.h
//
// The daemon's configuration (config.h) mapped onto each module's own Options. The only place
// that knows both sides: a module never sees Config, so it can be read, tested and reused alone.
// Threading: start-up only.
#pragma once

#include "core/daemon/config.h"
#include "core/dns/resolver.h"
#include "core/journal.h"
#include "core/server/submission.h"
#include "delivery/mx_routing.h"
#include "delivery/options.h"
#include "delivery/routing.h"
#include "delivery/shaping.h"
#include "queue/spool.h"

namespace spate::daemon {

// [spool]; the daemon and the `spate suppression` commands.
queue::Spool::Options SpoolOptions(const Config& config);
// [log] records and its rotation.
Journal::Options RecordsOptions(const Config& config);
server::Options ServerOptions(const Config& config);
delivery::Options DeliveryOptions(const Config& config);
// [routes] and [delivery] smarthost.
std::unique_ptr<delivery::StaticRouting> MakeRouting(const Config& config);
// MX routing: [delivery] mx_port, prohibited_networks, address_order, max_addresses; [dns].
delivery::MxRouting::Options MxRoutingOptions(const Config& config);
dns::Resolver::Options ResolverOptions(const Config& config);
// [delivery] shaping: the file, the shipped one (unset) or none ("none": *out null). False
// with *error ("PATH: line N: ...") for a file that cannot be read or is refused; *warnings
// says what in it was ignored.
bool LoadShaping(const Config& config, std::shared_ptr<const delivery::Shaping>* out,
                 std::string* error, std::vector<std::string>* warnings);

}  // namespace spate::daemon
