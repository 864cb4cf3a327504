// The gemm driver's internal entry, shared by gemm.cc and linear_cross_entropy.cc.
#pragma once
#include <cstdint>
#include <utility>

#include "gemm/gemm_kernels.h"
#include "logitkit/view.h"

namespace logitkit {

// Runs p on the thread pool: tiles of kGemmTileM x kGemmTileN, each written by one task.
template <class T>
void run_gemm(const GemmProblem<T>& p);

// The bytes [first, last) a view can touch (absent or empty views: {0, 0}).
template <class U>
std::pair<uintptr_t, uintptr_t> byte_range(const ArrayView<U>& v) {
  if (v.data == nullptr) return {0, 0};
  for (int d = 0; d < v.ndim; ++d)
    if (v.shape[d] == 0) return {0, 0};
  auto lo = reinterpret_cast<uintptr_t>(v.data), hi = lo;
  for (int d = 0; d < v.ndim; ++d) {
    const int64_t span = (v.shape[d] - 1) * v.strides[d] * static_cast<int64_t>(sizeof(U));
    (span < 0 ? lo : hi) += static_cast<uintptr_t>(span);
  }
  return {lo, hi + sizeof(U)};
}

inline bool ranges_overlap(std::pair<uintptr_t, uintptr_t> a, std::pair<uintptr_t, uintptr_t> b) {
  return a.first < a.second && b.first < b.second && a.first < b.second && b.first < a.second;
}

}  // namespace logitkit
