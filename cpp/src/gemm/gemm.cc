// gemm: the driver (tiles by size on the thread pool) and the public entry of logitkit/gemm.h.
#include "logitkit/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "gemm/gemm_run.h"
#include "logitkit/error.h"
#include "runtime/kernel_table.h"
#include "runtime/rows.h"
#include "runtime/thread_pool.h"

namespace logitkit {

namespace {

// The packing buffers: runtime/rows.h's per-thread scratch, in a slot of their own (softmax's long
// rows use 0 to 2, and never run inside a GEMM).
constexpr int kPackingSlot = kMaxOperands - 1;

}  // namespace

template <class T>
void run_gemm(const GemmProblem<T>& p) {
  if (p.m == 0 || p.n == 0) return;
  const GemmKernels<T>& k = kernels().gemm.get<T>();
  // How C is tiled never changes a result (each element's K sum is the same sequence in any tile),
  // so small problems take smaller tiles, enough to keep every thread busy.
  // A short K (d_linear_weight's update by a chunk of rows) is bound by C's traffic: whole rows of
  // C per task, so that C is read and written in long sequential runs.
  const bool short_k = p.k < kGemmKc / 4;
  const size_t tile_n = short_k ? std::min<size_t>(p.n, 8192) : kGemmTileN;
  const size_t tiles_n = (p.n + tile_n - 1) / tile_n;
  size_t tile_m = short_k ? kGemmMc : kGemmTileM;
  if ((p.m + tile_m - 1) / tile_m * tiles_n < 16) tile_m = kGemmMc;
  const size_t tiles_m = (p.m + tile_m - 1) / tile_m;
  // A read in place by rows (linear_weight in the logits product) streams from memory in runs of
  // kc elements per row: runs of the whole row, up to what keeps B's kc x tile_n block within
  // 256 KiB of L2, let the hardware prefetcher follow (256-element runs defeat it).
  GemmProblem<T> q = p;
  q.kc = kGemmKc;
  if (!p.skip_k && p.a.type == GemmElement::kNative && p.a.cs == 1) {
    const size_t padded_n = (tile_n + k.nr - 1) / k.nr * k.nr;
    const size_t fits = (size_t{256} << 10) / (padded_n * sizeof(T)) / 64 * 64;
    q.kc = std::clamp<size_t>(std::min(fits, (p.k + 63) / 64 * 64), kGemmKc, 4096);
  }
  q.kc = std::max<size_t>(1, std::min(q.kc, p.k));  // one block either way: the same sums, less scratch
  parallel_for(tiles_m * tiles_n, [&](size_t t) {
    const size_t i0 = t / tiles_n * tile_m, j0 = t % tiles_n * tile_n;
    const size_t i1 = std::min(p.m, i0 + tile_m), j1 = std::min(p.n, j0 + tile_n);
    k.tile(q, i0, i1, j0, j1, thread_scratch<T>(k.scratch_elements(j1 - j0, q.kc), kPackingSlot));
  });
}
template void run_gemm<float>(const GemmProblem<float>&);
template void run_gemm<double>(const GemmProblem<double>&);

namespace {

template <class U>
void check_matrix(const ArrayView<U>& v, const char* name) {
  if (v.ndim != 2)
    throw Error(Error::Kind::kInvalidArgument, name, "must be 2-D, got " + std::to_string(v.ndim) + " dimensions");
  if (v.data == nullptr && v.shape[0] * v.shape[1] != 0)
    throw Error(Error::Kind::kInvalidArgument, name, "is null");
}

// E: how a and b are stored (T, or uint16_t bfloat16 bits).
template <class T, class E>
void gemm_impl(ArrayView<const E> a, ArrayView<const E> b, ArrayView<T> c, const GemmOptions& options) {
  check_matrix(a, "a");
  check_matrix(b, "b");
  check_matrix(c, "c");
  if (b.shape[0] != a.shape[1])
    throw Error(Error::Kind::kInvalidArgument, "b",
                "has " + std::to_string(b.shape[0]) + " rows, but a has " + std::to_string(a.shape[1]) + " columns");
  if (c.shape[0] != a.shape[0] || c.shape[1] != b.shape[1])
    throw Error(Error::Kind::kInvalidArgument, "c",
                "must have shape (" + std::to_string(a.shape[0]) + ", " + std::to_string(b.shape[1]) + "), got (" +
                    std::to_string(c.shape[0]) + ", " + std::to_string(c.shape[1]) + ")");
  if (!std::isfinite(options.alpha))
    throw Error(Error::Kind::kInvalidArgument, "alpha", "must be finite");
  if (std::fabs(options.alpha) > static_cast<double>(std::numeric_limits<T>::max()))
    throw Error(Error::Kind::kInvalidArgument, "alpha",
                "must be finite in the element type (|alpha| <= " + std::to_string(std::numeric_limits<T>::max()) + ")");
  const auto out = byte_range(c);
  if (ranges_overlap(out, byte_range(a)) || ranges_overlap(out, byte_range(b)))
    throw Error(Error::Kind::kInvalidArgument, "c", "must not overlap a or b");
  if (c.shape[0] > 1 && c.shape[1] > 1 && (c.strides[0] == 0 || c.strides[1] == 0))
    throw Error(Error::Kind::kInvalidArgument, "c", "must not have a zero (broadcast) stride");
  kernels();  // the thread environment checked before any work
  GemmProblem<T> p;
  constexpr GemmElement kElement = std::is_same_v<E, uint16_t> ? GemmElement::kBFloat16 : GemmElement::kNative;
  p.a = {a.data, a.strides[0], a.strides[1], kElement};
  p.b = {b.data, b.strides[0], b.strides[1], kElement};
  p.c = c.data;
  p.c_rs = c.strides[0];
  p.c_cs = c.strides[1];
  p.m = static_cast<size_t>(c.shape[0]);
  p.n = static_cast<size_t>(c.shape[1]);
  p.k = static_cast<size_t>(a.shape[1]);
  p.alpha = static_cast<T>(options.alpha);
  p.accumulate = options.accumulate;
  run_gemm(p);
}

}  // namespace

template <>
void gemm<float>(InputView<float> a, InputView<float> b, ArrayView<float> c, const GemmOptions& options) {
  gemm_impl<float, float>(a, b, c, options);
}
void gemm_bf16(ArrayView<const uint16_t> a, ArrayView<const uint16_t> b, ArrayView<float> c,
               const GemmOptions& options) {
  gemm_impl<float, uint16_t>(a, b, c, options);
}
template <>
void gemm<double>(InputView<double> a, InputView<double> b, ArrayView<double> c, const GemmOptions& options) {
  gemm_impl<double, double>(a, b, c, options);
}

}  // namespace logitkit
