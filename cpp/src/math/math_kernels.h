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
};

}  // namespace logitkit
