// C++ microbenchmarks of the kernels themselves, no Python in the way (Google Benchmark, built with
// -DLOGITKIT_BUILD_BENCH=ON): the figures `python -m logitkit bench` reports, per call of the
// public C++ API on the active backend (LOGITKIT_ISA picks another).
//
//   build/release/bench/cpp/bench_kernels --benchmark_filter=Softmax
//
// Counters: bytes_per_second counts the bytes an op must move (softmax: x read + y written;
// cross_entropy with its gradient: logits read + gradient written); GFLOPs (gemm) counts 2 m n k.
// The softmax rows reproduce the Two-Pass paper's sweep (one row of n float32, 1K to 32M: in L1
// to far beyond L3) for each algorithm, single-threaded as in the paper (threads = 1 unless
// LOGITKIT_NUM_THREADS says otherwise).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <random>
#include <vector>

#include "logitkit/logitkit.h"

namespace {

std::vector<float> normal(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Memory- or cache-bound (1 read + 1 write per element; two_pass and three_pass_* differ in
// passes over x and exps per element, not in flops that matter).
void Softmax(benchmark::State& state) {
  const auto algorithm = static_cast<logitkit::SoftmaxAlgorithm>(state.range(0));
  const int64_t n = state.range(1);
  const auto x = normal(static_cast<size_t>(n), 3.0f, 1);
  std::vector<float> y(x.size());
  const auto xv = logitkit::ArrayView<const float>::contiguous(x.data(), {int64_t{1}, n});
  const auto yv = logitkit::ArrayView<float>::contiguous(y.data(), {int64_t{1}, n});
  logitkit::SoftmaxOptions options;
  options.algorithm = algorithm;
  for (auto _ : state) {
    logitkit::softmax(xv, yv, -1, options);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * n * 2 * int64_t{sizeof(float)});
}

void SoftmaxArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"algorithm", "n"});
  for (int alg = 0; alg <= 4; ++alg)  // auto, three_pass_reload, three_pass_recompute, two_pass, online
    for (int64_t n = 1 << 10; n <= (int64_t{1} << 25); n *= 4) b->Args({alg, n});
}
BENCHMARK(Softmax)->Apply(SoftmaxArgs)->UseRealTime();

// Memory-bound: one read of the logits, one write of the gradient.
void CrossEntropyWithGrad(benchmark::State& state) {
  const int64_t rows = state.range(0), classes = state.range(1);
  const auto x = normal(static_cast<size_t>(rows * classes), 2.0f, 2);
  std::vector<float> grad(x.size());
  std::vector<int64_t> target(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) target[static_cast<size_t>(r)] = (r * 7919) % classes;
  const auto xv = logitkit::ArrayView<const float>::contiguous(x.data(), {rows, classes});
  const auto tv = logitkit::ArrayView<const int64_t>::contiguous(target.data(), {rows});
  logitkit::LossGrad<float> g;
  g.grad = logitkit::ArrayView<float>::contiguous(grad.data(), {rows, classes});
  for (auto _ : state) benchmark::DoNotOptimize(logitkit::cross_entropy(xv, tv, {}, {}, {}, {}, g));
  state.SetBytesProcessed(state.iterations() * rows * classes * 2 * int64_t{sizeof(float)});
}
BENCHMARK(CrossEntropyWithGrad)->Args({256, 32000})->Args({4096, 128})->UseRealTime();

// Compute-bound within L1: a router row is a few hundred bytes; reported per token.
void Route(benchmark::State& state) {
  const int64_t tokens = state.range(0), experts = state.range(1), k = state.range(2);
  const auto x = normal(static_cast<size_t>(tokens * experts), 1.0f, 3);
  std::vector<float> w(static_cast<size_t>(tokens * k));
  std::vector<int32_t> ids(w.size());
  const auto xv = logitkit::ArrayView<const float>::contiguous(x.data(), {tokens, experts});
  const auto wv = logitkit::ArrayView<float>::contiguous(w.data(), {tokens, k});
  const auto iv = logitkit::ArrayView<int32_t>::contiguous(ids.data(), {tokens, k});
  logitkit::RouteOptions options;
  options.renormalize = true;
  for (auto _ : state) {
    logitkit::route(xv, wv, iv, k, options);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetItemsProcessed(state.iterations() * tokens);
}
BENCHMARK(Route)->ArgNames({"tokens", "experts", "k"})->Args({1, 8, 2})->Args({16384, 64, 8})->Args({16384, 256, 8})->UseRealTime();

// Compute-bound: 2 m n k flops over O(m k + k n + m n) data.
void Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const auto a = normal(static_cast<size_t>(m * k), 1.0f, 4), b = normal(static_cast<size_t>(k * n), 1.0f, 5);
  std::vector<float> c(static_cast<size_t>(m * n));
  const auto av = logitkit::ArrayView<const float>::contiguous(a.data(), {m, k});
  const auto bv = logitkit::ArrayView<const float>::contiguous(b.data(), {k, n});
  const auto cv = logitkit::ArrayView<float>::contiguous(c.data(), {m, n});
  for (auto _ : state) {
    logitkit::gemm(av, bv, cv);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * double(m) * double(n) * double(k) * double(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(Gemm)->ArgNames({"m", "n", "k"})->Args({512, 512, 512})->Args({256, 4096, 1024})->UseRealTime();

// Small-call latency, the floor under the Python figures.
void SoftmaxSmall(benchmark::State& state) {
  const auto x = normal(8 * 32, 1.0f, 6);
  std::vector<float> y(x.size());
  const auto xv = logitkit::ArrayView<const float>::contiguous(x.data(), {8, 32});
  const auto yv = logitkit::ArrayView<float>::contiguous(y.data(), {8, 32});
  for (auto _ : state) {
    logitkit::softmax(xv, yv, -1);
    benchmark::DoNotOptimize(y.data());
  }
}
BENCHMARK(SoftmaxSmall);

}  // namespace

int main(int argc, char** argv) {
  // Single-threaded unless the environment asks otherwise: the paper's setting, and stable numbers.
  if (std::getenv("LOGITKIT_NUM_THREADS") == nullptr) logitkit::set_num_threads(1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("logitkit_isa", logitkit::isa());
  benchmark::AddCustomContext("logitkit_threads", std::to_string(logitkit::get_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
