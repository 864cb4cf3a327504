// softmax_backward kernels (fused vector-Jacobian products of softmax and log_softmax (plain and masked)), written once over Simd<T> and compiled per ISA.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "softmax_backward/softmax_backward_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace softmax_backward_impl {

template <class T>
SoftmaxBackwardKernels<T> make_softmax_backward_kernels() {
  SoftmaxBackwardKernels<T> k{};
  return k;
}

}  // namespace softmax_backward_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
