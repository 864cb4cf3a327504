// Runtime ISA dispatch: available_isas(), set_isa() errors, and what LOGITKIT_ISA does at load time.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using logitkit::Error;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// True when this process was started with LOGITKIT_ISA set (the EnvIsa ctests set it).
bool env_isa_set() {
  const char* v = std::getenv("LOGITKIT_ISA");
  return v != nullptr && *v != '\0';
}

void softmax_once() {
  float x[3] = {0.0f, 1.0f, 2.0f}, y[3];
  logitkit::softmax(x, y, 1, 3);
}

// The cache size the streaming stores plan with is the one Linux describes for cpu0's highest
// cache level (sysconf can report a whole socket's L3 under a hypervisor); elsewhere, a plausible
// size.
TEST(Runtime, LastLevelCacheBytesIsCpu0sHighestCacheLevel) {
  int best_level = 0;
  size_t best_bytes = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), type_file(dir + "type"), size_file(dir + "size");
    int level = 0;
    std::string type, size;
    if (!(level_file >> level)) break;
    type_file >> type;
    size_file >> size;
    if (type == "Instruction" || size.empty()) continue;
    size_t bytes = std::stoull(size);
    if (size.back() == 'K') bytes <<= 10;
    if (size.back() == 'M') bytes <<= 20;
    if (level > best_level) best_level = level, best_bytes = bytes;
  }
  const size_t got = logitkit::last_level_cache_bytes();
  if (best_bytes) {
    EXPECT_EQ(got, best_bytes) << "level " << best_level;
  } else {
    EXPECT_GE(got, size_t{64} << 10);
    EXPECT_LE(got, size_t{4} << 30);
  }
  EXPECT_EQ(got, logitkit::last_level_cache_bytes());
}

TEST(Dispatch, AvailableIsasIncludeScalarAndActive) {
  const auto isas = logitkit::available_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), "scalar");
  EXPECT_TRUE(contains(isas, logitkit::isa())) << logitkit::isa();
  for (const auto& name : isas)
    EXPECT_TRUE(name == "scalar" || name == "avx2" || name == "avx512" || name == "avx512bf16" || name == "neon") << name;
#if defined(__x86_64__)
  EXPECT_FALSE(contains(isas, "neon"));
  // each level includes the one below it
  if (contains(isas, "avx512bf16")) {
    EXPECT_TRUE(contains(isas, "avx512"));
  }
  if (contains(isas, "avx512")) {
    EXPECT_TRUE(contains(isas, "avx2"));
  }
#elif defined(__aarch64__)
  EXPECT_TRUE(contains(isas, "neon"));  // ASIMD is part of the AArch64 baseline
  EXPECT_FALSE(contains(isas, "avx2"));
#endif
}

TEST(Dispatch, DefaultIsBestAvailable) {
  if (env_isa_set()) GTEST_SKIP() << "LOGITKIT_ISA is set in this environment";
  EXPECT_EQ(logitkit::isa(), logitkit::available_isas().back());
}

TEST(Dispatch, SetIsaSwitchesBackend) {
  const std::string before = logitkit::isa();
  for (const auto& name : logitkit::available_isas()) {
    logitkit::set_isa(name);
    EXPECT_EQ(logitkit::isa(), name);
    softmax_once();
  }
  logitkit::set_isa(before);
}

void expect_unsupported(const std::string& name) {
  const std::string before = logitkit::isa();
  try {
    logitkit::set_isa(name);
    ADD_FAILURE() << "set_isa(\"" << name << "\") did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::kUnsupportedIsa) << e.what();
    EXPECT_EQ(e.argument(), "isa") << e.what();
    EXPECT_NE(std::string(e.what()).find("scalar"), std::string::npos) << "message should list the choices: " << e.what();
  }
  EXPECT_EQ(logitkit::isa(), before);
}

TEST(Dispatch, UnknownIsaThrows) {
  for (const char* name : {"bogus", "AVX512", "avx", "sse4", "native", " scalar"}) expect_unsupported(name);
}

TEST(Dispatch, UnsupportedIsaThrows) {
  // Backends of the other architecture are never available here; on x86 also any the CPU lacks.
  int tried = 0;
  for (const char* name : {"avx2", "avx512", "avx512bf16", "neon"}) {
    if (contains(logitkit::available_isas(), name)) continue;
    expect_unsupported(name);
    ++tried;
  }
  EXPECT_GE(tried, 1);
}

// Run by the env_isa_* ctests only (tests/cpp/CMakeLists.txt), each in a fresh process with
// LOGITKIT_ISA set; LOGITKIT_TEST_EXPECT says what that value must do.
TEST(EnvIsa, LoadTimeSelection) {
  const char* expect = std::getenv("LOGITKIT_TEST_EXPECT");
  if (expect == nullptr) GTEST_SKIP() << "only meaningful under the env_isa_* ctests";
  const std::string want = expect;
  if (want == "throw") {
    // An invalid LOGITKIT_ISA must surface as an exception on the first kernel call, never a crash
    // or a silent fallback.
    try {
      softmax_once();
      FAIL() << "first kernel call with LOGITKIT_ISA=" << std::getenv("LOGITKIT_ISA") << " did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), Error::Kind::kUnsupportedIsa) << e.what();
      EXPECT_EQ(e.argument(), "LOGITKIT_ISA") << e.what();
    }
    EXPECT_THROW(logitkit::isa(), Error);
    EXPECT_THROW(softmax_once(), Error);  // still failing, not fixed up behind the caller's back
    // available_isas() keeps working, and set_isa() repairs the state.
    EXPECT_TRUE(contains(logitkit::available_isas(), "scalar"));
    logitkit::set_isa("scalar");
    EXPECT_STREQ(logitkit::isa(), "scalar");
    softmax_once();
  } else {
    EXPECT_EQ(logitkit::isa(), want);
    softmax_once();
  }
}

// Run by the env_num_threads_bogus ctest: an invalid LOGITKIT_NUM_THREADS fails every op call the same
// way, small or large, until set_num_threads() replaces it.
TEST(EnvThreads, InvalidValueFailsEveryCall) {
  const char* env = std::getenv("LOGITKIT_NUM_THREADS");
  if (env == nullptr || std::string(env) != "0") GTEST_SKIP() << "only meaningful under env_num_threads_bogus";
  std::vector<float> big(64 * 4096, 0.0f);
  for (int attempt = 0; attempt < 2; ++attempt) {
    for (size_t cols : {size_t{3}, size_t{4096}}) {
      try {
        logitkit::softmax(big.data(), big.data(), cols == 3 ? 1 : 64, cols);
        FAIL() << "softmax with " << cols << " columns did not throw";
      } catch (const Error& e) {
        EXPECT_EQ(e.argument(), "LOGITKIT_NUM_THREADS") << e.what();
      }
    }
    EXPECT_THROW(logitkit::get_num_threads(), Error);
  }
  EXPECT_NO_THROW(logitkit::isa());
  logitkit::set_num_threads(2);
  EXPECT_EQ(logitkit::get_num_threads(), 2);
  EXPECT_NO_THROW(softmax_once());
}

}  // namespace
