// Everything one ISA translation unit instantiates: every family's kernels and the table filler.
// Included exactly once per kernels_<isa>.cc, after that ISA's vec_<isa>-inl.h.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include "entropy/entropy_kernels-inl.h"
#include "masked_softmax/masked_softmax_kernels-inl.h"
#include "runtime/kernel_table.h"
#include "softmax/softmax_kernels-inl.h"
#include "softmax_backward/softmax_backward_kernels-inl.h"
#include "sparsemax/sparsemax_kernels-inl.h"
#include "stablemax/stablemax_kernels-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {

template <template <class> class Kernels>
void fill_family(PerType<Kernels>& slot, Kernels<float> (*make_f32)(), Kernels<double> (*make_f64)()) {
  slot.f32 = make_f32();
  slot.f64 = make_f64();
}

void fill_kernel_table(KernelTable& table) {
  fill_family(table.softmax, softmax_impl::make_softmax_kernels<float>, softmax_impl::make_softmax_kernels<double>);
  fill_family(table.masked_softmax, masked_softmax_impl::make_masked_softmax_kernels<float>,
              masked_softmax_impl::make_masked_softmax_kernels<double>);
  fill_family(table.softmax_backward, softmax_backward_impl::make_softmax_backward_kernels<float>,
              softmax_backward_impl::make_softmax_backward_kernels<double>);
  fill_family(table.stablemax, stablemax_impl::make_stablemax_kernels<float>,
              stablemax_impl::make_stablemax_kernels<double>);
  fill_family(table.entropy, entropy_impl::make_entropy_kernels<float>, entropy_impl::make_entropy_kernels<double>);
  fill_family(table.sparsemax, sparsemax_impl::make_sparsemax_kernels<float>,
              sparsemax_impl::make_sparsemax_kernels<double>);
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
