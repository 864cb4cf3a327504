// masked_softmax kernels (masked softmax / log_softmax (NumPy where= masks; all-masked rows give zeros)), written once over Simd<T> and compiled per ISA.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "masked_softmax/masked_softmax_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace masked_softmax_impl {

template <class T>
MaskedSoftmaxKernels<T> make_masked_softmax_kernels() {
  MaskedSoftmaxKernels<T> k{};
  return k;
}

}  // namespace masked_softmax_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
