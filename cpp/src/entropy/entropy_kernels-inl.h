// entropy kernels (fused Shannon entropy of softmax(logits) and the Softmax Collapse fraction), written once over Simd<T> and compiled per ISA.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "entropy/entropy_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace entropy_impl {

template <class T>
EntropyKernels<T> make_entropy_kernels() {
  EntropyKernels<T> k{};
  return k;
}

}  // namespace entropy_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
