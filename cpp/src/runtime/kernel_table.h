// The dispatch table: one KernelTable per compiled ISA, filled once; kernels() returns the active one.
#pragma once
#include "cross_entropy/cross_entropy_kernels.h"
#include "distill/distill_kernels.h"
#include "entropy/entropy_kernels.h"
#include "gemm/gemm_kernels.h"
#include "masked_softmax/masked_softmax_kernels.h"
#include "math/math_kernels.h"
#include "moe/moe_kernels.h"
#include "nll_loss/nll_loss_kernels.h"
#include "route/route_kernels.h"
#include "runtime/per_type.h"
#include "softmax/softmax_kernels.h"
#include "softmax_backward/softmax_backward_kernels.h"
#include "sparsemax/sparsemax_kernels.h"
#include "stablemax/stablemax_kernels.h"

namespace logitkit {

// kAvx512Bf16: avx512 plus the bfloat16 dot product (only its gemm kernels differ from avx512's).
enum class Isa { kScalar, kAvx2, kAvx512, kNeon, kAvx512Bf16 };

// Every op family has one slot (declared in cpp/src/<family>/<family>_kernels.h), filled for each
// ISA by its own generated translation unit from the same templates (cmake/LogitkitIsa.cmake).
struct KernelTable {
  Isa isa;
  const char* name;
  PerType<MathKernels> math;
  PerType<SoftmaxKernels> softmax;
  PerType<MaskedSoftmaxKernels> masked_softmax;
  PerType<SoftmaxBackwardKernels> softmax_backward;
  PerType<StablemaxKernels> stablemax;
  PerType<EntropyKernels> entropy;
  PerType<SparsemaxKernels> sparsemax;
  PerType<NllLossKernels> nll_loss;
  PerType<CrossEntropyKernels> cross_entropy;
  PerType<DistillKernels> distill;
  PerType<RouteKernels> route;
  PerType<MoeKernels> moe;
  PerType<GemmKernels> gemm;
};

// The active table. Throws logitkit::Error when LOGITKIT_ISA names a backend that cannot run.
const KernelTable& kernels();

// Per-ISA fill functions, generated as <build>/isa/kernel_table_<isa>.cc (each in its own namespace).
namespace scalar { void fill_kernel_table(KernelTable& table); }
namespace avx2 { void fill_kernel_table(KernelTable& table); }
namespace avx512 { void fill_kernel_table(KernelTable& table); }
namespace avx512bf16 { void fill_kernel_table(KernelTable& table); }
namespace neon { void fill_kernel_table(KernelTable& table); }

}  // namespace logitkit
