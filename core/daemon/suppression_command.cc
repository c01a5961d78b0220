#include "core/daemon/suppression_command.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/daemon/config.h"
#include "core/daemon/options.h"
#include "queue/suppression.h"

namespace spate::daemon {

namespace {

constexpr const char* kUsage =
    "usage: spate suppression export [--config FILE] [--spool DIR]\n"
    "       spate suppression import FILE|- [--config FILE] [--spool DIR]\n"
    "       spate suppression remove ADDRESS [--config FILE] [--spool DIR]\n"
    "  export writes the list as CSV (address,since,class,reason) to stdout; import reads\n"
    "  one (all or nothing: a bad line is named and nothing is imported); import and remove\n"
    "  need spate stopped.\n";

struct Args {
  std::string verb;
  std::vector<std::string> operands;
  std::string config_path;
  std::string spool;
};

bool Parse(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--config" || arg == "--spool") {
      if (i + 1 >= argc)
        return false;
      (arg == "--config" ? a->config_path : a->spool) = argv[++i];
    } else if (arg.size() > 1 && arg[0] == '-') {
      return false;
    } else if (a->verb.empty()) {
      a->verb = arg;
    } else {
      a->operands.push_back(arg);
    }
  }
  const size_t want = a->verb == "export" ? 0 : 1;
  return (a->verb == "export" || a->verb == "import" || a->verb == "remove") &&
         a->operands.size() == want;
}

int Fail(const std::string& verb, const std::string& error) {
  std::fprintf(stderr, "spate: suppression %s: %s\n", verb.c_str(), error.c_str());
  return 1;
}

int Import(const queue::Spool::Options& options, const std::string& file) {
  std::ifstream in_file;
  if (file != "-") {
    in_file.open(file, std::ios::binary);
    if (!in_file)
      return Fail("import", "cannot read " + file);
  }
  std::istream& in = file == "-" ? std::cin : in_file;
  std::string error;
  auto r = queue::ImportSpoolSuppression(options, in, Clock::Real().WallMs(), &error);
  if (!r)
    return Fail("import", error);
  std::printf("imported %zu entries\n", r->imported);
  if (r->expired > 0)
    std::printf("skipped %zu entries older than [suppression] ttl\n", r->expired);
  return 0;
}

}  // namespace

int SuppressionCommand(int argc, char** argv) {
  Args args;
  if (!Parse(argc, argv, &args)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string error;
  auto config = LoadConfig(args.config_path, &error);
  if (!config) {
    std::fprintf(stderr, "spate: configuration: %s\n", error.c_str());
    return 2;
  }
  if (!args.spool.empty())
    config->spool_path = args.spool;
  const queue::Spool::Options options = SpoolOptions(*config);
  if (!options.suppression)
    std::fputs("spate: note: [spool] suppression is off: the list is kept but not used\n", stderr);
  if (args.verb == "export") {
    auto n = queue::ExportSpoolSuppression(options, Clock::Real().WallMs(), std::cout, &error);
    return n ? 0 : Fail("export", error);
  }
  if (args.verb == "import")
    return Import(options, args.operands[0]);
  auto removed = queue::RemoveSpoolSuppression(options, args.operands[0], &error);
  if (!removed)
    return Fail("remove", error);
  if (!*removed) {
    std::printf("%s is not on the suppression list\n", args.operands[0].c_str());
    return 1;
  }
  std::printf("removed %s\n", queue::NormalizeAddress(args.operands[0]).c_str());
  return 0;
}

}  // namespace spate::daemon
