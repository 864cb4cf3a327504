// The memory roof of a kernel that reads x once and writes y once (softmax beyond the caches):
// the time of the fastest copy this machine can do, with non-temporal stores so y costs one
// write and no read-for-ownership, on 1 and 2..T threads splitting the array by halves. Compare
// with bench_softmax.py's np.copyto row (a plain copy: x read, y read for ownership, y written).
//
//   g++ -O2 -std=c++17 -pthread bench/memory_roof.cc -o /tmp/memory_roof && /tmp/memory_roof 65536 128
//
// SSE2 only (every x86-64), no -m flags: 128-bit streaming stores reach the same bandwidth as
// wider ones on a memory-bound copy. Elsewhere it times a plain copy.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace {

void stream_copy(const float* x, float* y, size_t n) {  // y 16-byte aligned, n a multiple of 4
#if defined(__x86_64__)
  for (size_t i = 0; i < n; i += 4) _mm_stream_ps(y + i, _mm_loadu_ps(x + i));
  _mm_sfence();
#else
  std::memcpy(y, x, n * sizeof(float));
#endif
}

float read_only(const float* x, size_t n) {
  float s[8] = {};
  for (size_t i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += x[i + k];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

template <class F>
double best_ms(int threads, size_t n, F f) {
  double best = 1e30;
  for (int rep = 0; rep < 30; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    const size_t part = n / threads / 64 * 64;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] { f(t * part, t + 1 == threads ? n - t * part : part); });
    for (auto& th : pool) th.join();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const size_t rows = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 65536;
  const size_t cols = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 128;
  const size_t n = (rows * cols + 63) / 64 * 64;
  auto* x = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  auto* y = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  for (size_t i = 0; i < n; ++i) x[i] = float(i % 1000), y[i] = 0;
  volatile float sink = 0;
  const unsigned max_threads = std::max(1u, std::thread::hardware_concurrency());
  std::printf("%zux%zu float32 (%.1f MiB in, %.1f MiB out), best of 30\n", rows, cols, n * 4 / 1048576.0,
              n * 4 / 1048576.0);
  for (unsigned t = 1; t <= max_threads; t *= 2) {
    const double copy = best_ms(t, n, [&](size_t o, size_t l) { stream_copy(x + o, y + o, l); });
    const double plain = best_ms(t, n, [&](size_t o, size_t l) { std::memcpy(y + o, x + o, l * sizeof(float)); });
    const double read = best_ms(t, n, [&](size_t o, size_t l) { sink = read_only(x + o, l); });
    std::printf("threads %u: streaming copy %.3f ms (%.1f GB/s at 8 bytes/element), memcpy %.3f ms, read x only %.3f ms\n",
                t, copy, n * 8 / copy / 1e6, plain, read);
  }
  std::free(x);
  std::free(y);
  return sink == 12345.f;
}
