// sparsemax kernels (sparsemax, entmax-1.5 and entmax-bisect forward and backward), written once over Simd<T> and compiled per ISA.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "sparsemax/sparsemax_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace sparsemax_impl {

template <class T>
SparsemaxKernels<T> make_sparsemax_kernels() {
  SparsemaxKernels<T> k{};
  return k;
}

}  // namespace sparsemax_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
