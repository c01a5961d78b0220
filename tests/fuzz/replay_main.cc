// tests/fuzz/replay_main.cc
//
// A main() for fuzz targets built without libFuzzer (g++, the ordinary build): runs
// LLVMFuzzerTestOneInput once over every file named on the command line, or every regular file
// under a named directory, in sorted order. A failed invariant traps, which fails the ctest
// test; the name of the input being run is printed first, so the log names the culprit.
// An argument that names no input at all is an error: a replay of nothing can never fail.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool ReadFile(const std::filesystem::path& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return false;
  }
  contents->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  size_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    std::vector<std::filesystem::path> inputs;
    std::error_code ec;
    if (std::filesystem::is_directory(argv[i], ec)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(argv[i], ec)) {
        if (entry.is_regular_file()) {
          inputs.push_back(entry.path());
        }
      }
      std::sort(inputs.begin(), inputs.end());
    } else {
      inputs.emplace_back(argv[i]);
    }
    if (ec || inputs.empty()) {
      std::fprintf(stderr, "%s: no inputs in %s\n", argv[0], argv[i]);
      return 2;
    }
    for (const auto& path : inputs) {
      std::string data;
      if (!ReadFile(path, &data)) {
        std::fprintf(stderr, "%s: cannot read %s\n", argv[0], path.c_str());
        return 2;
      }
      std::printf("replaying %s (%zu bytes)\n", path.c_str(), data.size());
      std::fflush(stdout);
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
      ++runs;
    }
  }
  std::printf("replayed %zu inputs, no invariant failed\n", runs);
  return 0;
}
