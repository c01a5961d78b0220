// core/daemon/options.h
//
// The daemon's configuration (config.h) mapped onto each module's own Options. The only place
// that knows both sides: a module never sees Config, so it can be read, tested and reused alone.
// Threading: start-up only.
#pragma once

#include "core/daemon/config.h"
#include "core/server/submission.h"
#include "delivery/options.h"
#include "delivery/routing.h"

namespace spate::daemon {

server::Options ServerOptions(const Config& config);
delivery::Options DeliveryOptions(const Config& config);
// [routes] and [delivery] smarthost.
std::unique_ptr<delivery::StaticRouting> MakeRouting(const Config& config);

}  // namespace spate::daemon
