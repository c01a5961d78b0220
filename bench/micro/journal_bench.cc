// bench/micro/journal_bench.cc
//
// Google Benchmark of the records writer (core/journal.h): 2 threads each Append() 10,000
// records of ~300 bytes and Flush(), into a real file in a temp directory (rotated at 256 MiB):
// items_per_second is records appended and written (write(2)) per second, the sustained rate,
// not the cost of a drop. `dropped` must stay 0 (10,000 x 2 x 300 bytes is far below the 64 MiB
// max_buffered); `written` is the lines the writer wrote in all.
// Run: ./build/bench/micro/journal_bench   (numbers, not verdicts; not part of the tests).
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "core/journal.h"
#include "core/json.h"

namespace spate {
namespace {

std::unique_ptr<Journal> g_journal;
std::string g_dir;

std::string Record(int64_t i) {
  std::string line = "{\"type\":\"Delivery\",\"time\":\"2024-05-01T12:00:00.123Z\",\"id\":";
  AppendJsonNumber(line, i);
  line += ",\"from\":\"bounce+123@campaign.example\",\"to\":\"someone@example.test\",";
  line += "\"mx\":\"mx1.example.test\",\"ip\":\"192.0.2.10\",\"attempt\":1,\"reply\":";
  AppendJsonString(line, "250 2.0.0 Ok: queued as 4Vq1xk2Zs9z3 <- hostile \"text\"\r\n");
  line += "}";
  return line;
}

void BM_JournalAppend(benchmark::State& state) {
  if (state.thread_index() == 0) {
    char tmpl[] = "/tmp/journal_bench.XXXXXX";
    g_dir = mkdtemp(tmpl);
    Journal::Options o;
    o.path = g_dir + "/records.jsonl";
    o.max_size = 256ull << 20;  // rotations are part of the cost
    o.keep = 2;
    std::string error;
    auto j = Journal::Open(o, &error);
    if (!j) {
      state.SkipWithError(error.c_str());
      return;
    }
    g_journal = std::move(*j);
  }
  constexpr int kBatch = 10000;
  const std::string line = Record(state.thread_index());
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i)
      g_journal->Append(std::string(line));
    g_journal->Flush();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kBatch * (line.size() + 1)));
  if (state.thread_index() == 0) {
    g_journal->Flush();
    const Journal::Stats s = g_journal->stats();
    state.counters["dropped"] = static_cast<double>(s.dropped);
    state.counters["written"] = static_cast<double>(s.lines);
    g_journal.reset();
    std::filesystem::remove_all(g_dir);
  }
}
BENCHMARK(BM_JournalAppend)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace spate

BENCHMARK_MAIN();
