// The math family's slot in the dispatch table: the elementwise vector math of simd/math-inl.h
// over arrays, behind the public vexp / vlog / vlog1p (logitkit/math.h).
// ISA-neutral: included by math.cc and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct MathKernels {
  // Function pointers filled per ISA by make_math_kernels<T>() in math_kernels-inl.h.
  // y[i] = f(x[i]) for n contiguous elements; x and y may be the same pointer.
  void (*exp)(const T* x, T* y, size_t n);
  void (*log)(const T* x, T* y, size_t n);
  void (*log1p)(const T* x, T* y, size_t n);
  // Machine probes behind measure_fma_peak / measure_copy_bandwidth (logitkit/math.h):
  // kFmaChains independent chains of full-vector FMAs, `steps` each (2 * kFmaChains * lanes *
  // steps flops); the returned sum keeps the loop alive.
  T (*fma_chains)(size_t steps);
  size_t lanes;  // of the backend's vector
  // y = x with streaming stores (y aligned to 64 bytes): a read-once, write-once kernel's roof.
  void (*stream_copy)(const T* x, T* y, size_t n);
};

// Enough independent chains to cover FMA latency x issue width on current cores (4 cycles x 2
// pipes on Zen and Intel, 4 x 4 on Neoverse V-class needs 16: 12 is within 10% there).
constexpr int kFmaChains = 12;

}  // namespace logitkit
