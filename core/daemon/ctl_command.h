// core/daemon/ctl_command.h
//
// `spate ctl`: the admin API's client (core/daemon/admin.h), for operators and their scripts.
//
//   spate ctl [--admin HOST:PORT] [--token-file FILE] [--config FILE] [--json] COMMAND
//     queue [--by domain|site]   queued recipients, oldest age, connections, suspended
//     reload                     as SIGHUP: shaping, routes and DKIM keys read again
//     flush [--domain D]         deferred mail (of D) tried now instead of at its retry time
//     suppression add ADDRESS [--reason TEXT] | show ADDRESS | remove ADDRESS
//
// --admin defaults to the [admin] listen of --config (or of the embedded default), and the
// token to its [admin] token_file. A table for people, --json the API's JSON as it came.
// Exit status: 0 done; 1 the API refused (its error printed) or could not be reached; 2 usage.
// Threading: the main thread of a short-lived process; blocks on its one connection.
#pragma once

namespace spate::daemon {

// argv[0] is "ctl".
int CtlCommand(int argc, char** argv);

}  // namespace spate::daemon
