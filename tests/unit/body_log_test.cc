// tests/unit/body_log_test.cc
//
// BodyLog on a real directory: what the spool relies on. Bodies come back byte for byte from
// the ref Append gave; a batch larger than one pwritev (IOV_MAX pieces) is written whole; a
// read past what is on disk or of bytes that changed is refused, never handed out; the CRC32C
// is the Castagnoli one (the test vectors of RFC 3720 B.4), whichever code computes it.
#include "queue/body_log.h"

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <limits.h>

#include <gtest/gtest.h>

#include "queue/errc.h"
#include "queue/records.h"

namespace spate::queue {
namespace {

class BodyLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/body_log_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<BodyLog> OpenLog(uint64_t segment_bytes = 1 << 20) {
    std::string error;
    auto log = BodyLog::Open(dir_ + "/bodies", segment_bytes, &error);
    EXPECT_TRUE(log.has_value()) << error;
    return log ? std::move(*log) : nullptr;
  }
  std::string dir_;
};

TEST(Crc32cTest, TheCastagnoliVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8a9136aau);    // RFC 3720 B.4: 32 bytes of zeros
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62a8ab43u);  // and of ones
  std::string ascending;
  for (int i = 0; i < 32; ++i)
    ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46dd794eu);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, InPiecesTheSameAsWhole) {
  std::string data;
  for (int i = 0; i < 1000; ++i)
    data.push_back(static_cast<char>(i * 7));
  for (size_t cut : {0u, 1u, 7u, 8u, 9u, 500u, 999u})
    EXPECT_EQ(Crc32c(data.substr(cut), Crc32c(data.substr(0, cut))), Crc32c(data)) << cut;
}

TEST_F(BodyLogTest, BodiesComeBackFromTheirRefsAlsoAfterReopen) {
  std::vector<std::string> bodies = {"first", "", std::string(100000, 'b'), "x"};
  std::vector<BodyRef> refs(bodies.size());
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    std::vector<BodyLog::Item> items;
    for (size_t i = 0; i < bodies.size(); ++i)
      items.push_back({i + 1, bodies[i], &refs[i]});
    ASSERT_FALSE(log->Append(items, true));
    for (size_t i = 0; i < bodies.size(); ++i) {
      EXPECT_EQ(refs[i].segment, 1u);
      EXPECT_EQ(refs[i].length, bodies[i].size());
      Result<std::string> got = log->Read(refs[i]);
      ASSERT_TRUE(got.has_value()) << i;
      EXPECT_EQ(*got, bodies[i]);
    }
    EXPECT_EQ(log->bytes(), 4 * BodyLog::kHeaderSize + 100006);
  }
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (size_t i = 0; i < bodies.size(); ++i) {
    EXPECT_TRUE(log->Holds(refs[i]));
    Result<std::string> got = log->Read(refs[i]);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(*got, bodies[i]);
  }
  BodyRef past = refs[2];
  past.length += 100;
  EXPECT_FALSE(log->Holds(past));
  past.segment = 7;
  EXPECT_FALSE(log->Holds(past));
}

TEST_F(BodyLogTest, ABatchOfMorePiecesThanOnePwritevTakesIsWrittenWhole) {
  auto log = OpenLog(64 << 20);
  ASSERT_NE(log, nullptr);
  const size_t n = IOV_MAX + 10;  // two pieces a body: three calls
  std::vector<std::string> bodies;
  for (size_t i = 0; i < n; ++i)
    bodies.push_back(std::to_string(i) + std::string(i % 50, 'q'));
  std::vector<BodyRef> refs(n);
  std::vector<BodyLog::Item> items;
  for (size_t i = 0; i < n; ++i)
    items.push_back({i + 1, bodies[i], &refs[i]});
  ASSERT_FALSE(log->Append(items, false));
  for (size_t i : {size_t{0}, size_t{IOV_MAX / 2}, size_t{IOV_MAX / 2 + 1}, n - 1}) {
    Result<std::string> got = log->Read(refs[i]);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(*got, bodies[i]);
  }
}

TEST_F(BodyLogTest, ATruncatedOrChangedBodyIsRefused) {
  BodyRef ref;
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    std::vector<BodyLog::Item> items = {{1, std::string(1000, 'a'), &ref}};
    ASSERT_FALSE(log->Append(items, true));
  }
  const std::string file = dir_ + "/bodies/00000001.body";
  std::filesystem::resize_file(file, ref.offset + 500);
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(log->Holds(ref));
  Result<std::string> got = log->Read(ref);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), make_error_code(Errc::kCorruption));
  BodyRef wrong = ref;
  wrong.length = 400;  // inside the file, but not the bytes the CRC was of
  got = log->Read(wrong);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), make_error_code(Errc::kCorruption));
}

TEST_F(BodyLogTest, RefsRoundTripAndNothingElseDecodes) {
  const BodyRef ref{7, 24, uint64_t{1} << 40, 0xdeadbeef};
  const std::string v = records::EncodeBodyRef(ref);
  EXPECT_EQ(v.size(), 25u);
  EXPECT_EQ(records::DecodeBodyRef(v), ref);
  EXPECT_FALSE(records::DecodeBodyRef(v.substr(0, 24)));
  EXPECT_FALSE(records::DecodeBodyRef(v + "x"));
  std::string other = v;
  other[0] = 2;  // a version this build does not know
  EXPECT_FALSE(records::DecodeBodyRef(other));
  EXPECT_FALSE(records::DecodeBodyRef(records::EncodeBodyRef({0, 24, 1, 0})));
}

}  // namespace
}  // namespace spate::queue
