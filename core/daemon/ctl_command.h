// core/daemon/ctl_command.h
//
// `spate ctl`: the admin API's client (core/daemon/admin.h), for operators and their scripts.
//
//   spate ctl [--admin HOST:PORT] [--token-file FILE] [--config FILE] [--json] COMMAND
//     queue [--by domain|site|campaign]   queued and in-flight recipients, oldest age,
//                                         connections, suspended
//     top [--interval SECONDS] [--count N] [--by domain|site|campaign]
//                                         delivered, deferred, failed per second, polled
//     suspend (--domain D | --site S | --campaign C) [--duration DUR] [--reason TEXT]
//                                         no deliveries (for DUR: 90s, 30m, 1h, 2d) till resumed
//     resume (--domain D | --site S | --campaign C)
//     suspensions                         what is suspended, until when, why
//     bounce (--domain D | --campaign C) [--reason TEXT] [--duration DUR]
//                                         its queued recipients bounced, new mail too (for DUR)
//     message ID                          a message and its recipients: status, attempts, reply
//     reload                              as SIGHUP: shaping, routes and DKIM keys read again
//     flush [--domain D]                  deferred mail (of D) tried now instead of at its time
//     suppression add ADDRESS [--reason TEXT] | show ADDRESS | remove ADDRESS
//     suppression list [--limit N]        the list (its first N entries) and its size
//     suppression export [FILE|-]         the list as CSV, to FILE or stdout (--json ignored)
//     suppression import FILE|-           a CSV as export writes it added to the list
//
// --admin defaults to the [admin] listen of --config (or of the embedded default), and the
// token to its [admin] token_file. A table for people, --json the API's JSON as it came (top:
// one JSON object a line per table). Query values are percent-encoded; an answer is read to its
// Content-Length (or EOF), with 30 s allowed between reads rather than for all of it.
// Exit status: 0 done; 1 the API refused (its error, and field, printed) or could not be
// reached; 2 usage (or a FILE or token file that cannot be read or written).
// Threading: the main thread of a short-lived process; blocks on one connection at a time.
#pragma once

namespace spate::daemon {

// argv[0] is "ctl".
int CtlCommand(int argc, char** argv);

}  // namespace spate::daemon
