// The public elementwise vector math (logitkit/math.h), through the active backend's math slot.
// Kernels live in math_kernels-inl.h.
#include "logitkit/math.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>

#include "logitkit/runtime.h"
#include "runtime/invalid.h"
#include "runtime/kernel_table.h"
#include "runtime/thread_pool.h"

namespace logitkit {

void vexp(const float* x, float* y, size_t n) { kernels().math.get<float>().exp(x, y, n); }
void vexp(const double* x, double* y, size_t n) { kernels().math.get<double>().exp(x, y, n); }
void vlog(const float* x, float* y, size_t n) { kernels().math.get<float>().log(x, y, n); }
void vlog(const double* x, double* y, size_t n) { kernels().math.get<double>().log(x, y, n); }
void vlog1p(const float* x, float* y, size_t n) { kernels().math.get<float>().log1p(x, y, n); }
void vlog1p(const double* x, double* y, size_t n) { kernels().math.get<double>().log1p(x, y, n); }

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

double measure_fma_peak(double seconds) {
  if (!(seconds > 0 && seconds <= 60)) invalid("seconds", "must be in (0, 60]");
  const auto& k = kernels().math.get<float>();
  const size_t tasks = static_cast<size_t>(get_num_threads());
  volatile float sink = k.fma_chains(1000);  // warm-up: wakes the pool's cores to full clock
  size_t steps = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(tasks, [&](size_t) { sink = k.fma_chains(steps); });
    const double t = seconds_since(t0);
    if (t >= seconds || steps > (size_t{1} << 40)) {
      return 2.0 * kFmaChains * static_cast<double>(k.lanes) * static_cast<double>(steps) * static_cast<double>(tasks) / t;
    }
    steps = static_cast<size_t>(static_cast<double>(steps) * std::min(16.0, 1.2 * seconds / std::max(t, 1e-6)));
  }
}

double measure_copy_bandwidth(size_t bytes, int repeats) {
  if (bytes < 4096 || bytes > (size_t{1} << 40)) invalid("bytes", "must be in [4096, 2^40]");
  if (repeats < 1) invalid("repeats", "must be at least 1");
  const size_t n = bytes / sizeof(float);
  constexpr size_t kChunk = size_t{1} << 18;  // floats per task (1 MiB): split by size, not by threads
  const size_t tasks = (n + kChunk - 1) / kChunk;
  std::unique_ptr<float, FreeDeleter> x(static_cast<float*>(std::aligned_alloc(64, tasks * kChunk * sizeof(float))));
  std::unique_ptr<float, FreeDeleter> y(static_cast<float*>(std::aligned_alloc(64, tasks * kChunk * sizeof(float))));
  if (!x || !y) throw std::bad_alloc();
  std::fill(x.get(), x.get() + n, 1.0f);
  std::fill(y.get(), y.get() + n, 0.0f);  // pages faulted in before timing
  const auto& k = kernels().math.get<float>();
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    parallel_for(tasks, [&](size_t t) {
      const size_t begin = t * kChunk;
      k.stream_copy(x.get() + begin, y.get() + begin, std::min(kChunk, n - begin));
    });
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * static_cast<double>(n * sizeof(float)) / best;
}

}  // namespace logitkit
