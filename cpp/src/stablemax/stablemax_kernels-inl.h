// stablemax kernels (StableMax and log-StableMax (grokking paper) forward and backward), written once over Simd<T> and compiled per ISA.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "stablemax/stablemax_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace stablemax_impl {

template <class T>
StablemaxKernels<T> make_stablemax_kernels() {
  StablemaxKernels<T> k{};
  return k;
}

}  // namespace stablemax_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
