// tests/unit/suppression_test.cc
//
// The suppression list (queue/suppression.h) and its CSV form (queue/suppression_csv.h). What an
// operator relies on: an address that bounced is refused in any case of its letters; the list
// survives a restart; an entry past the ttl is gone, from memory and from disk; off means off;
// an export imported into another spool gives the same list back, whatever the reason text
// holds; a bad CSV line is named and imports nothing; the commands refuse a spool a running
// spate holds. The spool tests run a real RocksDB in a fresh temporary directory.
#include "queue/suppression.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "queue/errc.h"
#include "queue/records.h"
#include "queue/spool.h"

namespace spate::queue {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kDayMs = 86400000;
constexpr auto kDeadline = 30s;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A directory under /tmp, removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/suppression_test.XXXXXX";
    if (char* p = mkdtemp(tmpl); p != nullptr)
      path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty())
      std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The value of `key` in CF "suppression" of the closed spool at `path`, read by RocksDB itself.
std::optional<std::string> RawGet(const std::string& path, const std::string& key) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}},
                                                      {"suppression", {}}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly({}, path, cfs, &handles, &raw);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok())
    return std::nullopt;
  std::unique_ptr<rocksdb::DB> db(raw);
  std::string value;
  s = db->Get(rocksdb::ReadOptions(), handles[1], key, &value);
  for (auto* h : handles)
    db->DestroyColumnFamilyHandle(h);
  if (s.IsNotFound())
    return std::nullopt;
  EXPECT_TRUE(s.ok()) << s.ToString();
  return value;
}

class SuppressionSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed"; }

  std::string path() const { return dir_.path() + "/spool"; }
  Spool::Options options() const {
    Spool::Options o;
    o.path = path();
    o.check_interval = 20ms;
    return o;
  }

  std::unique_ptr<Spool> Open(Spool::Options o) {
    std::string error;
    auto spool = Spool::Open(o, &error);
    EXPECT_TRUE(spool.has_value()) << error;
    if (!spool)
      return nullptr;
    (*spool)->Start();
    return std::move(spool).value();
  }
  std::unique_ptr<Spool> Open() { return Open(options()); }

  TempDir dir_;
};

TEST_F(SuppressionSpoolTest, AnAddedAddressIsFoundInAnyCaseWithWhenAndWhy) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  const int64_t since = NowMs() - 5000;
  spool->suppression().Add(
      {"Bob.Smith@Example.COM", since, "InvalidRecipient", "550 5.1.1 <bob>: no such user"});
  for (const char* a :
       {"bob.smith@example.com", "BOB.SMITH@EXAMPLE.COM", "Bob.Smith@Example.COM"}) {
    auto e = spool->suppression().Lookup(a, NowMs());
    ASSERT_TRUE(e.has_value()) << a;
    EXPECT_EQ(e->address, "bob.smith@example.com");
    EXPECT_EQ(e->since_ms, since);
    EXPECT_EQ(e->klass, "InvalidRecipient");
    EXPECT_EQ(e->reason, "550 5.1.1 <bob>: no such user");
  }
  EXPECT_FALSE(spool->suppression().Lookup("alice@example.com", NowMs()).has_value());
  EXPECT_EQ(spool->suppression().size(), 1u);
}

TEST_F(SuppressionSpoolTest, AddCleansWhatItIsGiven) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  Suppression& list = spool->suppression();
  list.Add({"not an address", NowMs(), "BadDomain", "x"});
  list.Add({"@example.com", NowMs(), "BadDomain", "x"});
  EXPECT_EQ(list.size(), 0u);
  list.Add({"a@example.com", 0, "Bad Class!", std::string(600, 'r')});
  auto e = list.Lookup("a@example.com", NowMs());
  ASSERT_TRUE(e.has_value());
  EXPECT_GT(e->since_ms, NowMs() - 60000) << "since 0 is now";
  EXPECT_EQ(e->klass, "Bad_Class_");
  EXPECT_EQ(e->reason, std::string(512, 'r'));
  list.Add({"b@example.com", NowMs(), "", "y"});
  EXPECT_EQ(list.Lookup("b@example.com", NowMs())->klass, "Manual");
  // A later bounce renews the entry.
  list.Add({"A@example.com", NowMs() - 1000, "BadDomain", "newer"});
  EXPECT_EQ(list.Lookup("a@example.com", NowMs())->reason, "newer");
  EXPECT_EQ(list.size(), 2u);
}

TEST_F(SuppressionSpoolTest, EntriesSurviveCloseAndReopenAndRemovedOnesStayGone) {
  const int64_t since = NowMs() - kDayMs;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    spool->suppression().Add({"a@example.com", since, "InvalidRecipient", "550 5.1.1 a"});
    spool->suppression().Add({"b@example.com", since + 1, "BadDomain", "550 5.1.2 b"});
    spool->suppression().Add({"c@example.com", since + 2, "InvalidRecipient", "550 5.1.1 c"});
    EXPECT_TRUE(spool->suppression().Remove("C@example.com"));
    EXPECT_FALSE(spool->suppression().Remove("c@example.com"));
    EXPECT_FALSE(spool->suppression().Lookup("c@example.com", NowMs()).has_value());
  }
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->suppression().size(), 2u);
  auto b = spool->suppression().Lookup("b@example.com", NowMs());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*b, (SuppressionEntry{"b@example.com", since + 1, "BadDomain", "550 5.1.2 b"}));
  EXPECT_TRUE(spool->suppression().Lookup("a@example.com", NowMs()).has_value());
  EXPECT_FALSE(spool->suppression().Lookup("c@example.com", NowMs()).has_value());
}

// [cluster]: what the observer hears is what Apply() on another node's list takes; an applied
// change is stored (it survives a reopen) and is not heard again (no echo between nodes).
TEST_F(SuppressionSpoolTest, ObservedChangesApplyElsewhereWithoutAnEcho) {
  std::vector<std::pair<std::string, std::optional<std::string>>> heard;
  const int64_t since = NowMs() - 1000;
  {
    auto here = Open();
    ASSERT_NE(here, nullptr);
    here->suppression().SetObserver(
        [&](const std::string& key, const std::optional<std::string>& value) {
          heard.emplace_back(key, value);
        });
    here->suppression().Add({"Gone@Example.com", since, "InvalidRecipient", "550 5.1.1 gone"});
    here->suppression().Add({"temp@example.com", since, "Manual", "x"});
    EXPECT_TRUE(here->suppression().Remove("temp@example.com"));
    here->suppression().Apply("other@example.com", heard.front().second, NowMs());
  }
  ASSERT_EQ(heard.size(), 3u) << "two adds and a remove; the Apply is not heard";
  EXPECT_EQ(heard[0].first, "gone@example.com");
  EXPECT_FALSE(heard[2].second.has_value());

  TempDir other_dir;
  Spool::Options o = options();
  o.path = other_dir.path() + "/spool";
  {
    auto there = Open(o);
    ASSERT_NE(there, nullptr);
    for (const auto& [key, value] : heard)
      EXPECT_TRUE(there->suppression().Apply(key, value, NowMs()));
    EXPECT_FALSE(there->suppression().Apply("Not Normalized@x", heard[0].second, NowMs()));
    EXPECT_FALSE(there->suppression().Apply("a@example.com", std::string("garbage"), NowMs()));
  }
  auto there = Open(o);
  ASSERT_NE(there, nullptr);
  auto e = there->suppression().Lookup("gone@example.com", NowMs());
  ASSERT_TRUE(e.has_value()) << "stored by Apply";
  EXPECT_EQ(*e,
            (SuppressionEntry{"gone@example.com", since, "InvalidRecipient", "550 5.1.1 gone"}));
  EXPECT_FALSE(there->suppression().Lookup("temp@example.com", NowMs()).has_value());
  EXPECT_EQ(there->suppression().size(), 1u);
}

TEST_F(SuppressionSpoolTest, AnEntryPastTheTtlIsAbsentAndGoneFromDiskAfterReopen) {
  Spool::Options o = options();
  o.suppression_ttl = Seconds(30 * 86400);
  {
    auto spool = Open(o);
    ASSERT_NE(spool, nullptr);
    spool->suppression().Add({"old@example.com", NowMs() - 20 * kDayMs, "BadDomain", "old"});
    spool->suppression().Add({"new@example.com", NowMs() - 1 * kDayMs, "BadDomain", "new"});
    // Already past the ttl: not stored at all.
    spool->suppression().Add({"dead@example.com", NowMs() - 31 * kDayMs, "BadDomain", "dead"});
    EXPECT_EQ(spool->suppression().size(), 2u);
    // Seen at a later time, the old one has expired.
    EXPECT_FALSE(spool->suppression().Lookup("old@example.com", NowMs() + 11 * kDayMs));
    EXPECT_TRUE(spool->suppression().Lookup("new@example.com", NowMs() + 11 * kDayMs));
  }
  ASSERT_TRUE(RawGet(path(), "old@example.com").has_value());
  EXPECT_FALSE(RawGet(path(), "dead@example.com").has_value());
  o.suppression_ttl = Seconds(10 * 86400);
  {
    auto spool = Open(o);
    ASSERT_NE(spool, nullptr);
    EXPECT_EQ(spool->suppression().size(), 1u) << "expired at Open";
    EXPECT_FALSE(spool->suppression().Lookup("old@example.com", NowMs()));
    EXPECT_TRUE(spool->suppression().Lookup("new@example.com", NowMs()));
  }
  EXPECT_FALSE(RawGet(path(), "old@example.com").has_value()) << "purged from RocksDB";
  EXPECT_TRUE(RawGet(path(), "new@example.com").has_value());
}

TEST_F(SuppressionSpoolTest, SetTtlHidesOlderEntriesAtOnceAndTheSweepDeletesThem) {
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    Suppression& list = spool->suppression();
    list.Add({"old@example.com", NowMs() - 20 * kDayMs, "BadDomain", "old"});
    list.Add({"new@example.com", NowMs() - 1 * kDayMs, "BadDomain", "new"});
    list.SetTtl(Seconds(10 * 86400));
    EXPECT_FALSE(list.Lookup("old@example.com", NowMs()));
    EXPECT_TRUE(list.Lookup("new@example.com", NowMs()));
    // The commit thread sweeps soon after (its check interval is 20 ms here).
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (list.size() != 1 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    EXPECT_EQ(list.size(), 1u);
  }
  EXPECT_FALSE(RawGet(path(), "old@example.com").has_value());
  EXPECT_TRUE(RawGet(path(), "new@example.com").has_value());
}

TEST_F(SuppressionSpoolTest, OffItFindsAndKeepsNothingAndLeavesTheStoredListAlone) {
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    spool->suppression().Add({"kept@example.com", NowMs(), "BadDomain", "kept"});
  }
  Spool::Options off = options();
  off.suppression = false;
  {
    auto spool = Open(off);
    ASSERT_NE(spool, nullptr);
    Suppression& list = spool->suppression();
    EXPECT_FALSE(list.enabled());
    EXPECT_FALSE(list.Lookup("kept@example.com", NowMs()).has_value());
    list.Add({"new@example.com", NowMs(), "BadDomain", "new"});
    EXPECT_FALSE(list.Lookup("new@example.com", NowMs()).has_value());
    EXPECT_FALSE(list.Remove("kept@example.com"));
    EXPECT_EQ(list.size(), 0u);
    std::istringstream csv("x@example.com\n");
    std::string error;
    auto r = list.ImportCsv(csv, NowMs(), &error);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), make_error_code(Errc::kDisabled));
    std::ostringstream out;
    EXPECT_EQ(list.ExportCsv(out, NowMs()), 0u);
  }
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(spool->suppression().Lookup("kept@example.com", NowMs()).has_value());
  EXPECT_FALSE(spool->suppression().Lookup("new@example.com", NowMs()).has_value());
}

TEST_F(SuppressionSpoolTest, ASpoolMadeBeforeTheListOpensAndGetsIt) {
  {
    rocksdb::DBOptions o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
        {rocksdb::kDefaultColumnFamilyName, {}}, {"body", {}}, {"envelope", {}}, {"rcpt", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path(), cfs, &handles, &raw).ok());
    for (auto* h : handles)
      raw->DestroyColumnFamilyHandle(h);
    delete raw;
  }
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    spool->suppression().Add({"a@example.com", NowMs(), "BadDomain", "a"});
  }
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(spool->suppression().Lookup("a@example.com", NowMs()).has_value());
}

std::vector<SuppressionEntry> Tricky(int64_t since) {
  return {
      {"comma@example.com", since, "InvalidRecipient", "550 5.1.1 <comma>, user unknown, sorry"},
      {"quote@example.com", since + 1, "BadDomain", "550 \"quoted\" text \"\""},
      {"lines@example.com", since + 1000, "InvalidRecipient", "550-first\r\n550 second\nthird"},
      {"plain@example.com", since + 2, "Manual", ""},
      {"\"odd,local\"@example.com", since + 3, "BadDomain", " leading space"},
  };
}

TEST_F(SuppressionSpoolTest, AnExportImportedIntoAFreshSpoolGivesTheSameList) {
  const int64_t since = NowMs() - kDayMs;
  std::string csv;
  {
    auto spool = Open();
    ASSERT_NE(spool, nullptr);
    for (const SuppressionEntry& e : Tricky(since))
      spool->suppression().Add(e);
    std::ostringstream out;
    EXPECT_EQ(spool->suppression().ExportCsv(out, NowMs()), 5u);
    csv = out.str();
  }
  ASSERT_EQ(csv.rfind("address,since,class,reason\r\n", 0), 0u) << csv;
  // Sorted by address: '"' sorts before the letters.
  EXPECT_LT(csv.find("\"\"\"odd,local\"\"@example.com\""), csv.find("comma@"));
  EXPECT_LT(csv.find("comma@"), csv.find("lines@"));
  EXPECT_NE(csv.find("\"550 5.1.1 <comma>, user unknown, sorry\""), std::string::npos) << csv;
  EXPECT_NE(csv.find("\"550 \"\"quoted\"\" text \"\"\"\"\""), std::string::npos) << csv;

  TempDir other;
  Spool::Options o = options();
  o.path = other.path() + "/spool";
  auto fresh = Open(o);
  ASSERT_NE(fresh, nullptr);
  std::istringstream in(csv);
  std::string error;
  auto n = fresh->suppression().ImportCsv(in, NowMs(), &error);
  ASSERT_TRUE(n.has_value()) << error;
  EXPECT_EQ(*n, 5u);
  for (const SuppressionEntry& e : Tricky(since)) {
    auto got = fresh->suppression().Lookup(e.address, NowMs());
    ASSERT_TRUE(got.has_value()) << e.address;
    EXPECT_EQ(*got, e);
  }
  EXPECT_EQ(fresh->suppression().size(), 5u);
}

TEST_F(SuppressionSpoolTest, ABadCsvLineIsNamedAndNothingIsImported) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  std::istringstream in(
      "address,since,class,reason\n"
      "a@example.com,2026-01-02T03:04:05Z,BadDomain,x\n"
      "b@example.com,yesterday,BadDomain,y\n"
      "c@example.com\n");
  std::string error;
  auto r = spool->suppression().ImportCsv(in, NowMs(), &error);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), make_error_code(Errc::kInvalid));
  EXPECT_EQ(error.rfind("line 3: since:", 0), 0u) << error;
  EXPECT_EQ(spool->suppression().size(), 0u);
}

TEST_F(SuppressionSpoolTest, LookupsFromManyThreadsWhileAddsAndRemovesRun) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  Suppression& list = spool->suppression();
  for (int i = 0; i < 100; ++i)
    list.Add({"stable" + std::to_string(i) + "@example.com", NowMs(), "BadDomain", "s"});
  std::atomic<bool> stop{false};
  std::atomic<int> misses{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        auto e = list.Lookup("STABLE" + std::to_string((i + t) % 100) + "@example.com", NowMs());
        if (!e || e->reason != "s")
          misses.fetch_add(1);
        (void)list.Lookup("churn" + std::to_string(i % 500) + "@example.com", NowMs());
      }
    });
  }
  for (int i = 0; i < 5000; ++i) {
    list.Add({"churn" + std::to_string(i % 500) + "@example.com", NowMs(), "InvalidRecipient",
              "550 5.1.1 churn " + std::to_string(i)});
    if (i % 3 == 0)
      list.Remove("churn" + std::to_string((i * 7) % 500) + "@example.com");
  }
  stop = true;
  for (auto& r : readers)
    r.join();
  EXPECT_EQ(misses.load(), 0) << "an entry nobody removed went missing";
  EXPECT_EQ(list.Lookup("churn499@example.com", NowMs())->reason, "550 5.1.1 churn 4999");
}

// ---- The commands' functions -----------------------------------------------------------

TEST_F(SuppressionSpoolTest, CommandsImportExportAndRemoveOnAClosedSpool) {
  Spool::Options o = options();
  const std::string since = FormatRfc3339(NowMs() - kDayMs);
  std::istringstream in(
      "address,since,class,reason\r\n"
      "B@example.com," +
      since +
      ",BadDomain,\"550 5.1.2, no such domain\"\r\n"
      "a@example.com\r\n"
      "old@example.com,2001-01-01T00:00:00Z\r\n");
  std::string error;
  auto imported = ImportSpoolSuppression(o, in, NowMs(), &error);
  ASSERT_TRUE(imported.has_value()) << error;
  EXPECT_EQ(imported->imported, 2u);
  EXPECT_EQ(imported->expired, 1u);

  std::ostringstream out;
  auto n = ExportSpoolSuppression(o, NowMs(), out, &error);
  ASSERT_TRUE(n.has_value()) << error;
  EXPECT_EQ(*n, 2u);
  SuppressionCsv csv = ParseSuppressionCsv(out.str(), 0);
  ASSERT_TRUE(csv.ok()) << csv.error;
  ASSERT_EQ(csv.entries.size(), 2u);
  EXPECT_EQ(csv.entries[0].address, "a@example.com");
  EXPECT_EQ(csv.entries[0].klass, "Manual");
  EXPECT_EQ(csv.entries[1], (SuppressionEntry{"b@example.com", *ParseRfc3339(since), "BadDomain",
                                              "550 5.1.2, no such domain"}));

  auto removed = RemoveSpoolSuppression(o, "A@EXAMPLE.COM", &error);
  ASSERT_TRUE(removed.has_value()) << error;
  EXPECT_TRUE(*removed);
  removed = RemoveSpoolSuppression(o, "a@example.com", &error);
  ASSERT_TRUE(removed.has_value()) << error;
  EXPECT_FALSE(*removed);

  // The daemon's view of it.
  auto spool = Open(o);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->suppression().size(), 1u);
  EXPECT_TRUE(spool->suppression().Lookup("b@example.com", NowMs()).has_value());
}

TEST_F(SuppressionSpoolTest, CommandsRefuseToWriteASpoolInUseButExportIt) {
  auto spool = Open();
  ASSERT_NE(spool, nullptr);
  spool->suppression().Add({"live@example.com", NowMs(), "BadDomain", "live"});
  spool.reset();
  spool = Open();  // held open from here on, its list on disk
  ASSERT_NE(spool, nullptr);
  std::string error;
  std::istringstream in("x@example.com\n");
  auto imported = ImportSpoolSuppression(options(), in, NowMs(), &error);
  ASSERT_FALSE(imported.has_value());
  EXPECT_EQ(imported.error(), make_error_code(Errc::kInUse));
  EXPECT_EQ(error, "the spool at " + path() +
                       " is in use by a running spate; stop it first (the admin API will import "
                       "live)");
  auto removed = RemoveSpoolSuppression(options(), "live@example.com", &error);
  ASSERT_FALSE(removed.has_value());
  EXPECT_EQ(removed.error(), make_error_code(Errc::kInUse));

  std::ostringstream out;
  auto n = ExportSpoolSuppression(options(), NowMs(), out, &error);
  ASSERT_TRUE(n.has_value()) << error;
  EXPECT_EQ(*n, 1u);
  EXPECT_NE(out.str().find("live@example.com,"), std::string::npos) << out.str();
  EXPECT_TRUE(spool->suppression().Lookup("live@example.com", NowMs()).has_value());
}

TEST_F(SuppressionSpoolTest, ExportOfNoSpoolFailsAndABadImportWritesNothing) {
  std::string error;
  std::ostringstream out;
  auto n = ExportSpoolSuppression(options(), NowMs(), out, &error);
  ASSERT_FALSE(n.has_value());
  EXPECT_EQ(n.error(), make_error_code(Errc::kNotFound));
  EXPECT_NE(error.find(path()), std::string::npos) << error;

  std::istringstream in("a@example.com\nb@example.com,,,\"unclosed\n");
  auto imported = ImportSpoolSuppression(options(), in, NowMs(), &error);
  ASSERT_FALSE(imported.has_value());
  EXPECT_EQ(imported.error(), make_error_code(Errc::kInvalid));
  EXPECT_EQ(error.rfind("line 2: a quoted field is not closed", 0), 0u) << error;
  EXPECT_FALSE(std::filesystem::exists(path())) << "nothing opened, nothing made";
}

// ---- The CSV form, without a spool -----------------------------------------------------

TEST(SuppressionCsvTest, Rfc3339BothWays) {
  const int64_t t = *ParseRfc3339("2026-12-01T16:42:33Z");
  EXPECT_EQ(t, 1796143353000);
  EXPECT_EQ(FormatRfc3339(t), "2026-12-01T16:42:33Z");
  EXPECT_EQ(FormatRfc3339(t + 7), "2026-12-01T16:42:33.007Z");
  EXPECT_EQ(ParseRfc3339("2026-12-01T16:42:33.0071Z"), t + 7);
  EXPECT_EQ(ParseRfc3339("2026-12-01t16:42:33.5z"), t + 500);
  EXPECT_EQ(ParseRfc3339("2026-12-01 18:42:33+02:00"), t);
  EXPECT_EQ(ParseRfc3339("2026-12-01T15:42:33-01:00"), t);
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(ParseRfc3339("2024-02-29T00:00:00Z"), 1709164800000);
  EXPECT_EQ(FormatRfc3339(1709164800000), "2024-02-29T00:00:00Z");
  EXPECT_EQ(FormatRfc3339(253402300799999), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339(-5), "1970-01-01T00:00:00Z");
  for (const char* bad :
       {"", "2026-12-01", "2026-12-01T16:42:33", "2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-12-01T24:00:00Z", "2026-12-01T16:60:00Z",
        "2026-12-01T16:42:60Z", "1969-12-31T23:59:59Z", "2026-12-01T16:42:33.Z",
        "2026-12-01T16:42:33+0200", "2026-12-01T16:42:33Zjunk", "2026-1a-01T00:00:00Z",
        "1970-01-01T00:30:00+01:00"}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

TEST(SuppressionCsvTest, FieldsAreQuotedOnlyWhenTheyMustBe) {
  std::string out;
  AppendSuppressionCsv({"a@b.example", 0, "BadDomain", "plain text"}, &out);
  EXPECT_EQ(out, "a@b.example,1970-01-01T00:00:00Z,BadDomain,plain text\r\n");
  out.clear();
  AppendSuppressionCsv({"a@b.example", 0, "BadDomain", "a,\"b\"\r\nc"}, &out);
  EXPECT_EQ(out, "a@b.example,1970-01-01T00:00:00Z,BadDomain,\"a,\"\"b\"\"\r\nc\"\r\n");
}

TEST(SuppressionCsvTest, HeaderSinceClassAndReasonAreOptional) {
  const int64_t now = 1800000000000;
  SuppressionCsv with = ParseSuppressionCsv("address,since,class,reason\na@x.example\n", now);
  SuppressionCsv without = ParseSuppressionCsv("A@X.example", now);
  ASSERT_TRUE(with.ok()) << with.error;
  ASSERT_TRUE(without.ok()) << without.error;
  ASSERT_EQ(with.entries.size(), 1u);
  EXPECT_EQ(with.entries, without.entries);
  EXPECT_EQ(with.entries[0], (SuppressionEntry{"a@x.example", now, "Manual", ""}));
  SuppressionCsv some = ParseSuppressionCsv(
      "ADDRESS\n  b@x.example , ,InvalidRecipient\n\n\nc@x.example,,, kept as is \n", now);
  ASSERT_TRUE(some.ok()) << some.error;
  ASSERT_EQ(some.entries.size(), 2u);
  EXPECT_EQ(some.entries[0], (SuppressionEntry{"b@x.example", now, "InvalidRecipient", ""}));
  EXPECT_EQ(some.entries[1].reason, " kept as is ");
}

TEST(SuppressionCsvTest, CrlfAndLfReadTheSame) {
  const std::string lf =
      "address,since,class,reason\na@x.example,2026-01-01T00:00:00Z,BadDomain,\"r\nr\"\n"
      "b@x.example,2026-01-01T00:00:01Z,Manual,s\n";
  std::string crlf;
  for (char c : lf) {
    if (c == '\n')
      crlf += '\r';
    crlf += c;
  }
  SuppressionCsv a = ParseSuppressionCsv(lf, 0);
  SuppressionCsv b = ParseSuppressionCsv(crlf, 0);
  ASSERT_TRUE(a.ok()) << a.error;
  ASSERT_TRUE(b.ok()) << b.error;
  ASSERT_EQ(a.entries.size(), 2u);
  EXPECT_EQ(a.entries[0].reason, "r\nr");
  EXPECT_EQ(b.entries[0].reason, "r\r\nr") << "inside quotes the line end is the text's";
  EXPECT_EQ(a.entries[1], b.entries[1]);
}

TEST(SuppressionCsvTest, ABadRecordNamesTheLineItStartsOn) {
  struct Case {
    const char* text;
    size_t line;
    const char* says;
  };
  const Case cases[] = {
      {"a@x.example\nnope\n", 2, "address:"},
      {"a@x.example,,,\"two\nlines\"\nb@x.example,bad\n", 3, "since:"},
      {"a@x.example,,Not A Class\n", 1, "class:"},
      {"a@x.example,,,r,extra\n", 1, "more than 4 fields"},
      {"a@x.example,,,\"unclosed\nb@x.example\n", 1, "a quoted field is not closed"},
      {"a@x.example,,,say \"hi\"\n", 1, "a quote inside an unquoted field"},
      {"a@x.example,,,\"q\"x\n", 1, "text after a quoted field's closing quote"},
      {"a@x.example\rb@x.example\n", 1, "a CR not followed by LF"},
      {"a@x.example\r\n\r\nb@x.example,,,", 1, nullptr},
      {"\"\"\n", 1, "address:"},
  };
  for (const Case& c : cases) {
    SuppressionCsv r = ParseSuppressionCsv(c.text, 0);
    if (c.says == nullptr) {
      EXPECT_TRUE(r.ok()) << c.text << ": " << r.error;
      continue;
    }
    EXPECT_EQ(r.bad_line, c.line) << c.text;
    EXPECT_TRUE(r.entries.empty()) << c.text;
    EXPECT_EQ(r.error.rfind("line " + std::to_string(c.line) + ": " + c.says, 0), 0u)
        << c.text << " -> " << r.error;
  }
  SuppressionCsv long_reason = ParseSuppressionCsv("a@x.example,,," + std::string(513, 'r'), 0);
  EXPECT_EQ(long_reason.error, "line 1: reason: longer than 512 octets");
  EXPECT_TRUE(ParseSuppressionCsv("a@x.example,,," + std::string(512, 'r'), 0).ok());
}

TEST(SuppressionCsvTest, AddressesAreLowerCasedAndChecked) {
  EXPECT_EQ(NormalizeAddress("Bob.Smith@Example.COM"), "bob.smith@example.com");
  EXPECT_EQ(NormalizeAddress("J\xC3\x96rg@B\xC3\xBC.example"), "j\xC3\x96rg@b\xC3\xBC.example")
      << "octets past ASCII unchanged";
  EXPECT_TRUE(ValidSuppressionAddress("a@b"));
  EXPECT_TRUE(ValidSuppressionAddress("\"a,b\"@b.example"));
  EXPECT_FALSE(ValidSuppressionAddress("a b@c"));
  EXPECT_FALSE(ValidSuppressionAddress("a@"));
  EXPECT_FALSE(ValidSuppressionAddress("@a"));
  EXPECT_FALSE(ValidSuppressionAddress("ab"));
  EXPECT_FALSE(ValidSuppressionAddress("a\x7f@b"));
  EXPECT_FALSE(ValidSuppressionAddress(std::string(255, 'a') + "@b"));
}

}  // namespace
}  // namespace spate::queue
