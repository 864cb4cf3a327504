// The gemm family's slot in the dispatch table: one tile of C = alpha A B (+ C), computed by a
// register-blocked micro-kernel over packed panels (gemm_kernels-inl.h). The driver (gemm.cc)
// splits C into tiles by size and runs them on the thread pool; each tile of C is written by one
// task, its K summed in a fixed order, so results do not depend on the thread count.
// ISA-neutral: included by the driver and by runtime/kernel_table.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace logitkit {

// How an operand's elements are stored: the kernel's own type T, or bfloat16 bits (uint16_t),
// widened to float while the panels are packed.
enum class GemmElement : uint8_t { kNative, kBFloat16 };

// Element (i, j) of an operand lives at data[i * rs + j * cs] (elements of its storage type):
// a transpose is a swap of the strides, and any strides are read, so no caller copies.
struct GemmOperand {
  const void* data = nullptr;
  ptrdiff_t rs = 0, cs = 0;
  GemmElement type = GemmElement::kNative;
};

// Cache blocking shared by every ISA (measured on Zen 3, 32 KiB L1d / 512 KiB L2): a KC x NR
// panel of B (16 KiB for AVX2 float) stays in L1 while the MC x KC block of A (96 KiB) streams
// from L2; the KC x tile_n block of B sits in L2/L3. kGemmMc is a multiple of every ISA's MR.
inline constexpr size_t kGemmKc = 256;
inline constexpr size_t kGemmMc = 96;
// Task tiles of C: at most kGemmTileM x kGemmTileN (kGemmMc rows when that gives few tiles).
inline constexpr size_t kGemmTileM = 384;
inline constexpr size_t kGemmTileN = 256;

// C (m x n) = alpha A (m x k) B (k x n), plus C's old value when `accumulate`.
template <class T>
struct GemmProblem {
  GemmOperand a, b;
  T* c = nullptr;
  ptrdiff_t c_rs = 0, c_cs = 1;
  size_t m = 0, n = 0, k = 0;
  T alpha = T(1);
  bool accumulate = false;
  // K block: the micro-kernel sums kc products in registers before adding them to C, so kc is a
  // function of the problem's shape only (run_gemm chooses it), never of the thread count.
  size_t kc = kGemmKc;
  // Optional: skip_k[p / kGemmKc] != 0 leaves K block p out of the sum, kc then being kGemmKc
  // (linear_cross_entropy's gradient filter: its skipped vocabulary blocks are K blocks of
  // d_input's product).
  const uint8_t* skip_k = nullptr;
  // Optional: rows i with skip_m[i / kGemmKc] != 0 get no product (their C is left as it is, or
  // set to 0 when C is overwritten): d_linear_weight's rows of skipped vocabulary blocks.
  const uint8_t* skip_m = nullptr;
};

template <class T>
struct GemmKernels {
  // Function pointers filled per ISA by make_gemm_kernels<T>() in gemm_kernels-inl.h.
  // C[i0:i1, j0:j1] of p, every K block in order. scratch: scratch_elements(j1 - j0, p.kc) T's.
  void (*tile)(const GemmProblem<T>& p, size_t i0, size_t i1, size_t j0, size_t j1, T* scratch);
  size_t mr, nr;  // the micro-kernel's register tile
  size_t scratch_elements(size_t tile_n, size_t kc) const { return kc * ((tile_n + nr - 1) / nr * nr) + kGemmMc * kc; }
};

}  // namespace logitkit
