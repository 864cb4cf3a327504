// nll_loss kernels, written once over Simd<T> and compiled per ISA.
//
// The gradient of nll_loss is one value per row in a row of zeros: a pure write, memory-bound
// (the roof is a memset of the gradient: 4 bytes per float32 element, and no read-for-ownership
// with streaming stores). The loss needs no kernel: one element per row, gathered by the driver.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "nll_loss/nll_loss_kernels.h"
#include "simd/loops-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace nll_loss_impl {

// g[0..len) = 0 except g[at[k]] = value[k] for the increasing positions at[0..count) (relative
// to g; those outside [0, len) are skipped). Each value goes out in its vector's store: a scalar
// store after streaming stores to the same line waits for them and reads the line back
// (measured: 65536x128 float32, 7x slower than a fill).
template <class T, bool kStream>
void one_hot_span(T* g, size_t len, const ptrdiff_t* at, const T* value, size_t count) {
  using S = Simd<T>;
  using V = typename S::V;
  const V z = S::zero();
  size_t k = 0;  // the next position not yet written; negative ones (no entry) are passed over
  auto vector_at = [&](size_t i, size_t width) {
    const ptrdiff_t lo = ptrdiff_t(i), hi = ptrdiff_t(i + width);
    while (k < count && at[k] < lo) ++k;
    if (k == count || at[k] >= hi) return z;
    alignas(64) T lanes[S::N] = {};
    for (; k < count && at[k] < hi; ++k)
      if (at[k] >= lo) lanes[at[k] - lo] = value[k];
    return S::load(lanes);
  };
  for_vectors<S>(
      len, [&](size_t i, int) { put<S, kStream>(g + i, vector_at(i, S::N)); },
      [&](size_t i, size_t r) { S::store_tail(g + i, vector_at(i, r), r); });
}

// Rows t of g: value[t] at index[t] (< 0: none), 0 elsewhere. Rows that follow each other in
// memory (ldg == n) are written as one span, so that streaming stores meet no partial line at
// every row boundary (a mixed line costs as above: 65536x128 ran at half the fill's speed).
template <class T>
void one_hot_rows(T* g, size_t rows, size_t n, ptrdiff_t ldg, const int64_t* index, const T* value, bool stream) {
  constexpr size_t kMaxRows = 256;  // the driver's chunk (nll_loss.cc's kGradChunk)
  ptrdiff_t at[kMaxRows];
  auto span = [&](T* start, size_t len, size_t first, size_t count, ptrdiff_t row_step) {
    for (size_t t = 0; t < count; ++t)
      at[t] = index[first + t] < 0 ? -1 : ptrdiff_t(t) * row_step + ptrdiff_t(index[first + t]);
    if (!stream) return one_hot_span<T, false>(start, len, at, value + first, count);
    split_for_streaming(start, len, [&](size_t b, size_t part, auto tag) {
      for (size_t t = 0; t < count; ++t)
        if (at[t] >= 0) at[t] -= ptrdiff_t(b);  // relative to the part; < 0 before it: skipped
      one_hot_span<T, decltype(tag)::value>(start + b, part, at, value + first, count);
      for (size_t t = 0; t < count; ++t)
        if (index[first + t] >= 0) at[t] += ptrdiff_t(b);
    });
  };
  if (ldg == static_cast<ptrdiff_t>(n)) {
    for (size_t r0 = 0; r0 < rows; r0 += kMaxRows) {
      const size_t count = std::min(kMaxRows, rows - r0);
      span(g + r0 * n, count * n, r0, count, ptrdiff_t(n));
    }
  } else {
    for (size_t t = 0; t < rows; ++t) span(g + static_cast<ptrdiff_t>(t) * ldg, n, t, 1, 0);
  }
  if (stream) Simd<T>::stream_fence();
}

template <class T>
NllLossKernels<T> make_nll_loss_kernels() {
  NllLossKernels<T> k{};
  k.one_hot_rows = one_hot_rows<T>;
  return k;
}

}  // namespace nll_loss_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
