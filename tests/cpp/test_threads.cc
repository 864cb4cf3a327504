// Thread-count independence: every op gives bitwise identical results for 1, 2 and 3 threads.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <stdexcept>
#include <functional>
#include <string>
#include <vector>

#include "runtime/thread_pool.h"  // internal: parallel_for itself
#include "test_util.h"

namespace {

using logitkit::ArrayView;
using logitkit::SoftmaxOptions;

class Threads : public lktest::IsaTest {
 protected:
  void SetUp() override {
    lktest::IsaTest::SetUp();
    saved_ = logitkit::get_num_threads();
  }
  void TearDown() override {
    logitkit::set_num_threads(saved_);
    lktest::IsaTest::TearDown();
  }

 private:
  int saved_ = 1;
};
LKTEST_FOR_EACH_ISA(Threads);

// Runs `op` (which writes `out`) with 1, 2 and 3 threads and expects the same bytes each time.
template <class T>
void expect_thread_invariant(const std::string& what, std::vector<T>& out, const std::function<void()>& op) {
  std::vector<T> first;
  for (int threads : {1, 2, 3}) {
    logitkit::set_num_threads(threads);
    ASSERT_EQ(logitkit::get_num_threads(), threads);
    std::fill(out.begin(), out.end(), T(-1));
    op();
    if (threads == 1) {
      first = out;
      continue;
    }
    ASSERT_EQ(std::memcmp(first.data(), out.data(), out.size() * sizeof(T)), 0)
        << what << ": " << threads << " threads differ from 1 thread";
  }
}

template <class T>
void check_shape(int64_t rows, int64_t n, bool strided, uint64_t seed) {
  auto x = lktest::randn<T>(size_t(rows * n), seed, 4.0);
  ArrayView<const T> xv = ArrayView<const T>::contiguous(x.data(), {rows, n});
  int axis = 1;
  if (strided) {  // the same memory seen as (n, rows) with the axis strided: gather/scatter path
    xv = ArrayView<const T>::contiguous(x.data(), {n, rows});
    axis = 0;
  }
  const std::string shape = std::to_string(rows) + "x" + std::to_string(n) + (strided ? " strided" : "");
  std::vector<T> y(x.size());
  auto yv = ArrayView<T>::contiguous(y.data(), {xv.shape[0], xv.shape[1]});
  for (auto a : lktest::kAllAlgorithms)
    expect_thread_invariant<T>(shape + " softmax " + lktest::algorithm_name(a), y,
                               [&] { logitkit::softmax<T>(xv, yv, axis, SoftmaxOptions{0.8, a}); });
  expect_thread_invariant<T>(shape + " log_softmax", y, [&] { logitkit::log_softmax<T>(xv, yv, axis); });
  std::vector<T> out(static_cast<size_t>(rows)), b(x.size());
  for (size_t i = 0; i < b.size(); ++i) b[i] = T(0.5) + T(i % 5);
  auto outv = ArrayView<T>::contiguous(out.data(), {rows});
  expect_thread_invariant<T>(shape + " logsumexp", out, [&] { logitkit::logsumexp<T>(xv, outv, axis); });
  ArrayView<const T> bv = ArrayView<const T>::contiguous(b.data(), {xv.shape[0], xv.shape[1]});
  expect_thread_invariant<T>(shape + " logsumexp weighted", out, [&] { logitkit::logsumexp<T>(xv, outv, axis, bv); });
}

// Many short rows: split into many tasks by row count.
TEST_P(Threads, ManyRowsF32) { check_shape<float>(2000, 257, false, 1); }
TEST_P(Threads, ManyRowsF64) { check_shape<double>(2000, 257, false, 2); }
TEST_P(Threads, ManyStridedRowsF32) { check_shape<float>(700, 129, true, 3); }
TEST_P(Threads, ManyStridedRowsF64) { check_shape<double>(700, 129, true, 4); }
// Rows long enough for the pipelined three_pass_reload, whose rows per task follow the thread count.
TEST_P(Threads, PipelinedRowsF32) { check_shape<float>(37, 3001, false, 7); }
TEST_P(Threads, PipelinedRowsF64) { check_shape<double>(11, 1501, false, 8); }
// Long rows: one row split into chunks, partial results combined in chunk order.
TEST_P(Threads, LongRowF32) { check_shape<float>(2, (int64_t{1} << 19) + 77, false, 5); }
TEST_P(Threads, LongRowF64) { check_shape<double>(2, (int64_t{1} << 19) + 77, false, 6); }

// A task that throws: the exception reaches the caller once the other tasks have returned, on
// whichever thread it was thrown, and the pool stays usable (it used to terminate the process,
// or leave workers running a job whose frame was gone).
TEST(ThreadPool, TaskExceptionReachesTheCallerAndThePoolStaysUsable) {
  const int saved = logitkit::get_num_threads();
  logitkit::set_num_threads(2);
  for (size_t bad : {size_t{0}, size_t{1}, size_t{37}, size_t{63}}) {
    std::atomic<int> ran{0};
    try {
      logitkit::parallel_for(64, [&](size_t t) {
        if (t == bad) throw std::runtime_error("task " + std::to_string(t));
        ran.fetch_add(1);
      });
      ADD_FAILURE() << "no exception from task " << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "task " + std::to_string(bad));
    }
    std::atomic<int> all{0};
    logitkit::parallel_for(64, [&](size_t) { all.fetch_add(1); });
    EXPECT_EQ(all.load(), 64);
  }
  std::vector<float> x(4 * 5000, 1.0f), y(x.size());
  logitkit::softmax<float>(ArrayView<const float>::contiguous(x.data(), {4, 5000}),
                           ArrayView<float>::contiguous(y.data(), {4, 5000}), 1);
  EXPECT_FLOAT_EQ(y[0], 1.0f / 5000);
  logitkit::set_num_threads(saved);
}

// Back-to-back jobs of tiny tasks, the task count alternating between small and larger: each task
// runs exactly once, before its call returns, for every thread count. A claim word left over from
// the finished job once paired with the next job's larger task count (run_job wrote the fields
// before publishing the generation), so a task ran twice and the caller hung or returned early;
// 1.5 million calls at 8 threads hung within a minute. TSan cannot see that race (every access is
// atomic), so this test counts. A watchdog turns a hang into a failure; each thread count runs for
// a bounded time.
TEST(ThreadPool, BackToBackJobsRunEachTaskExactlyOnce) {
  const int saved = logitkit::get_num_threads();
  constexpr size_t kMaxTasks = 24;
  std::atomic<long> progress{0};
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    long last = -1;
    auto since = std::chrono::steady_clock::now();
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const long now = progress.load();
      if (now != last) {
        last = now;
        since = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - since > std::chrono::seconds(30)) {
        std::fprintf(stderr, "parallel_for made no progress for 30 s after %ld calls: hung\n", now);
        std::abort();
      }
    }
  });
  for (int threads : {2, 3, 4, 8}) {
    logitkit::set_num_threads(threads);
    std::atomic<int> runs[kMaxTasks];
    const auto stop = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
    long calls = 0, bad = 0;
    for (; std::chrono::steady_clock::now() < stop && bad == 0; ++calls) {
      for (int call = 0; call < 256; ++call) {
        const size_t n = (call & 1) ? 2 + (call >> 1) % (kMaxTasks - 2) : 2;
        for (auto& r : runs) r.store(0, std::memory_order_relaxed);
        logitkit::parallel_for(n, [&](size_t t) { runs[t].fetch_add(1, std::memory_order_relaxed); });
        for (size_t t = 0; t < kMaxTasks; ++t) bad += runs[t].load() != (t < n ? 1 : 0);
        progress.fetch_add(1, std::memory_order_relaxed);
      }
    }
    EXPECT_EQ(bad, 0) << threads << " threads: a task ran twice, not at all, or after its call returned";
  }
  finished.store(true);
  watchdog.join();
  logitkit::set_num_threads(saved);
}

}  // namespace
