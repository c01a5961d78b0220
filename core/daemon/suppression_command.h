// core/daemon/suppression_command.h
//
// `spate suppression ...`: the suppression list of the spool named by the configuration
// ([spool] path; --spool DIR overrides it), read and edited from the command line. The work is
// queue/suppression.h's (ExportSpoolSuppression and the rest); this is only the arguments.
//
//   spate suppression export [--config FILE] [--spool DIR]          CSV on stdout
//   spate suppression import FILE|- [--config FILE] [--spool DIR]   "imported N entries"
//   spate suppression remove ADDRESS [--config FILE] [--spool DIR]  "removed ADDRESS"
//
// Export opens the spool read-only, so it works beside a running spate. Import and remove
// refuse a spool a running spate holds (stop it first). Exit status: 0 done; 1 failed (spool in
// use, no spool, I/O error, a bad CSV line, an address not on the list); 2 usage or
// configuration error.
// Threading: the main thread of a short-lived process; blocks on the disk.
#pragma once

namespace spate::daemon {

// argv[0] is "suppression".
int SuppressionCommand(int argc, char** argv);

}  // namespace spate::daemon
