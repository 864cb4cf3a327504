// gemm kernels: C = alpha A B (+ C) by a register-blocked micro-kernel over packed panels, written
// once over Simd<T> and compiled per ISA.
//
// Compute-bound: a micro-kernel step loads NV vectors of B and MR broadcasts of A for MR x NV
// FMAs, so it is judged against the FMA peak (bench/fma_peak.cc), not the memory roof. MR x NV
// accumulators fill the register file without spilling: AVX2 (16 registers) 6 x 2, AVX-512 and
// NEON (32) 12 x 2, scalar 4 x 4. Packing copies each A block and B panel once per K block into
// contiguous, zero-padded panels, so the micro-kernel never sees a stride or a tail; tails of C
// are written through a small buffer.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gemm/gemm_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace gemm_impl {

#if defined(__AVX512F__) || defined(__aarch64__)
inline constexpr int kVectorRegisters = 32;
#else
inline constexpr int kVectorRegisters = 16;
#endif

template <class T>
struct MicroShape {
  static constexpr size_t N = Simd<T>::N;
  static constexpr int NV = N == 1 ? 4 : 2;                            // vectors of B per row
  static constexpr int MR = N == 1 ? 4 : kVectorRegisters == 32 ? 12 : 6;  // rows of A
  static constexpr size_t NR = N * NV;
  static_assert(kGemmMc % MR == 0, "kGemmMc must be a multiple of MR");
};

inline float widen_bf16(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <class T, class E>
inline T element(const E* p) {
  if constexpr (std::is_same_v<E, uint16_t>) {
    return static_cast<T>(widen_bf16(*p));
  } else {
    return *p;
  }
}

// MR-row panels of A[i:i+mc, p:p+kc], k-major: dst[(panel * kc + k) * MR + r]; rows past mc are 0.
template <class T, class E, int MR>
void pack_a_typed(const E* a, ptrdiff_t rs, ptrdiff_t cs, size_t mc, size_t kc, T* dst) {
  for (size_t i = 0; i < mc; i += MR) {
    const size_t rows = std::min<size_t>(MR, mc - i);
    T* panel = dst + i * kc;
    if (cs == 1 || rs != 1) {  // rows contiguous (or neither): one row at a time
      for (size_t r = 0; r < rows; ++r) {
        const E* src = a + static_cast<ptrdiff_t>(i + r) * rs;
        for (size_t k = 0; k < kc; ++k) panel[k * MR + r] = element<T>(src + static_cast<ptrdiff_t>(k) * cs);
      }
    } else {  // columns contiguous (a transposed operand): MR consecutive elements per k
      for (size_t k = 0; k < kc; ++k) {
        const E* src = a + static_cast<ptrdiff_t>(k) * cs + static_cast<ptrdiff_t>(i);
        for (size_t r = 0; r < rows; ++r) panel[k * MR + r] = element<T>(src + r);
      }
    }
    if (rows < size_t(MR))
      for (size_t k = 0; k < kc; ++k)
        for (size_t r = rows; r < size_t(MR); ++r) panel[k * MR + r] = T(0);
  }
}

// NR-column panels of B[p:p+kc, j:j+nc], k-major: dst[(panel * kc + k) * NR + c]; columns past nc are 0.
template <class T, class E, size_t NR>
void pack_b_typed(const E* b, ptrdiff_t rs, ptrdiff_t cs, size_t kc, size_t nc, T* dst) {
  size_t first = 0;  // the panels before it are packed
  if (cs == 1 && std::is_same_v<E, T>) {
    // Whole panels of contiguous rows: each row's run read once, in order, and spread over the
    // panels (a panel at a time would read NR elements per row, rows apart, which the hardware
    // prefetcher does not follow: 43% of d_input's product by a 32-row chunk went to that).
    using S = Simd<T>;
    first = nc / NR * NR;
    for (size_t k = 0; k < kc; ++k) {
      const T* src = reinterpret_cast<const T*>(b) + static_cast<ptrdiff_t>(k) * rs;
      for (size_t j = 0; j < first; j += NR)
        for (size_t c = 0; c < NR; c += S::N) S::store(dst + j * kc + k * NR + c, S::load(src + j + c));
    }
  }
  for (size_t j = first; j < nc; j += NR) {
    const size_t cols = std::min(NR, nc - j);
    T* panel = dst + j * kc;
    if (cs == 1) {  // rows of B contiguous: NR consecutive elements per k
      for (size_t k = 0; k < kc; ++k) {
        const E* src = b + static_cast<ptrdiff_t>(k) * rs + static_cast<ptrdiff_t>(j);
        T* out = panel + k * NR;
        for (size_t c = 0; c < cols; ++c) out[c] = element<T>(src + c);
        for (size_t c = cols; c < NR; ++c) out[c] = T(0);
      }
    } else {  // columns contiguous (a transposed operand, such as linear_weight^T): one column at a time
      for (size_t c = 0; c < cols; ++c) {
        const E* src = b + static_cast<ptrdiff_t>(j + c) * cs;
        for (size_t k = 0; k < kc; ++k) panel[k * NR + c] = element<T>(src + static_cast<ptrdiff_t>(k) * rs);
      }
      for (size_t k = 0; k < kc; ++k)
        for (size_t c = cols; c < NR; ++c) panel[k * NR + c] = T(0);
    }
  }
}

template <class T, int MR>
void pack_a(const GemmOperand& a, size_t i, size_t mc, size_t p, size_t kc, T* dst) {
  const ptrdiff_t off = static_cast<ptrdiff_t>(i) * a.rs + static_cast<ptrdiff_t>(p) * a.cs;
  if (a.type == GemmElement::kBFloat16)
    pack_a_typed<T, uint16_t, MR>(static_cast<const uint16_t*>(a.data) + off, a.rs, a.cs, mc, kc, dst);
  else
    pack_a_typed<T, T, MR>(static_cast<const T*>(a.data) + off, a.rs, a.cs, mc, kc, dst);
}

template <class T, size_t NR>
void pack_b(const GemmOperand& b, size_t p, size_t kc, size_t j, size_t nc, T* dst) {
  const ptrdiff_t off = static_cast<ptrdiff_t>(p) * b.rs + static_cast<ptrdiff_t>(j) * b.cs;
  if (b.type == GemmElement::kBFloat16)
    pack_b_typed<T, uint16_t, NR>(static_cast<const uint16_t*>(b.data) + off, b.rs, b.cs, kc, nc, dst);
  else
    pack_b_typed<T, T, NR>(static_cast<const T*>(b.data) + off, b.rs, b.cs, kc, nc, dst);
}

// How the micro-kernel reads its MR rows of A: element (r, k) at a[k * a_stride + r] (a packed
// panel, a_stride = MR, or a transposed operand read in place) or at a[r * a_stride + k] (rows
// read in place). A is read in place whenever it is stored as T with a unit stride: packing it
// would cost a pass over it per K block for nothing (measured: 13% of a square GEMM's time).
enum class ARead { kColumns, kRows };

// C[0:mr_used, 0:nr_used] = alpha * (A panel x packed B panel) (+ C when `add`).
template <class T, ARead kRead>
void micro_kernel(size_t kc, const T* __restrict pa, ptrdiff_t a_stride, const T* __restrict pb, T* c, ptrdiff_t c_rs, ptrdiff_t c_cs, size_t mr_used, size_t nr_used, T alpha, bool add) {
  using S = Simd<T>;
  using V = typename S::V;
  using Shape = MicroShape<T>;
  constexpr int MR = Shape::MR, NV = Shape::NV;
  constexpr size_t N = S::N, NR = Shape::NR;
  V acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = S::zero();
  const T* row[MR];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) row[r] = pa + r * a_stride;
  for (size_t k = 0; k < kc; ++k) {
    V b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = S::load(pb + v * N);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const V a = S::set1(kRead == ARead::kColumns ? pa[r] : row[r][k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if constexpr (N == 1) {
          acc[r][v] = acc[r][v] + a * b[v];  // the baseline has no FMA instruction: fmaf would be a libm call
        } else {
          acc[r][v] = S::fma(a, b[v], acc[r][v]);
        }
      }
    }
    if (kRead == ARead::kColumns) pa += a_stride;
    pb += NR;
  }
  const V va = S::set1(alpha);
  if (mr_used == size_t(MR) && nr_used == NR && c_cs == 1) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      T* row = c + r * c_rs;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        T* p = row + v * N;
        S::store(p, add ? S::fma(acc[r][v], va, S::load(p)) : S::mul(acc[r][v], va));
      }
    }
    return;
  }
  alignas(64) T buf[MR * NR];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) S::store(buf + r * NR + v * N, S::mul(acc[r][v], va));
  if (c_rs == 1) {  // a transposed C (linear_cross_entropy's logits): its columns are contiguous
    for (size_t j = 0; j < nr_used; ++j) {
      T* col = c + static_cast<ptrdiff_t>(j) * c_cs;
      for (size_t r = 0; r < mr_used; ++r) col[r] = add ? col[r] + buf[r * NR + j] : buf[r * NR + j];
    }
    return;
  }
  for (size_t r = 0; r < mr_used; ++r)
    for (size_t j = 0; j < nr_used; ++j) {
      T* p = c + static_cast<ptrdiff_t>(r) * c_rs + static_cast<ptrdiff_t>(j) * c_cs;
      *p = add ? *p + buf[r * NR + j] : buf[r * NR + j];
    }
}

inline bool rows_skipped(const uint8_t* skip, size_t first, size_t rows) {
  for (size_t b = first / kGemmKc; b <= (first + rows - 1) / kGemmKc; ++b)
    if (!skip[b]) return false;
  return true;
}

template <class T>
void zero_c(const GemmProblem<T>& p, size_t i, size_t rows, size_t j, size_t cols) {
  for (size_t r = i; r < i + rows; ++r)
    for (size_t c = j; c < j + cols; ++c)
      p.c[static_cast<ptrdiff_t>(r) * p.c_rs + static_cast<ptrdiff_t>(c) * p.c_cs] = T(0);
}

template <class T>
void tile(const GemmProblem<T>& p, size_t i0, size_t i1, size_t j0, size_t j1, T* scratch) {
  using Shape = MicroShape<T>;
  constexpr int MR = Shape::MR;
  constexpr size_t NR = Shape::NR;
  const size_t nc = j1 - j0, padded_n = (nc + NR - 1) / NR * NR;
  T* packed_b = scratch;
  T* packed_a = scratch + p.kc * padded_n;
  // A read in place (see ARead) in whole MR-row panels; a partial last panel is packed.
  const bool direct_a = p.a.type == GemmElement::kNative && (p.a.cs == 1 || p.a.rs == 1);
  const T* a_data = static_cast<const T*>(p.a.data);
  bool first = true;  // the first K block summed overwrites C unless the problem accumulates
  for (size_t pc = 0; pc < p.k; pc += p.kc) {
    if (p.skip_k && p.skip_k[pc / p.kc]) continue;
    const size_t kc = std::min(p.kc, p.k - pc);
    const bool add = p.accumulate || !first;
    first = false;
    pack_b<T, NR>(p.b, pc, kc, j0, nc, packed_b);
    for (size_t ic = i0; ic < i1; ic += kGemmMc) {
      const size_t mc = std::min(kGemmMc, i1 - ic);
      const size_t whole = direct_a ? mc / MR * MR : 0;  // rows read in place
      if (whole < mc) pack_a<T, MR>(p.a, ic + whole, mc - whole, pc, kc, packed_a + whole * kc);
      auto micro = [&](size_t ir, size_t jr) {
        const T* pb = packed_b + jr * kc;
        const size_t rows = std::min<size_t>(MR, mc - ir), cols = std::min(NR, nc - jr);
        if (p.skip_m && rows_skipped(p.skip_m, ic + ir, rows)) {
          if (!add) zero_c(p, ic + ir, rows, j0 + jr, cols);
          return;
        }
        T* c = p.c + static_cast<ptrdiff_t>(ic + ir) * p.c_rs + static_cast<ptrdiff_t>(j0 + jr) * p.c_cs;
        if (ir >= whole) {
          micro_kernel<T, ARead::kColumns>(kc, packed_a + ir * kc, MR, pb, c, p.c_rs, p.c_cs, rows, cols, p.alpha, add);
        } else {
          const T* a = a_data + static_cast<ptrdiff_t>(ic + ir) * p.a.rs + static_cast<ptrdiff_t>(pc) * p.a.cs;
          if (p.a.cs == 1)
            micro_kernel<T, ARead::kRows>(kc, a, p.a.rs, pb, c, p.c_rs, p.c_cs, rows, cols, p.alpha, add);
          else
            micro_kernel<T, ARead::kColumns>(kc, a, p.a.cs, pb, c, p.c_rs, p.c_cs, rows, cols, p.alpha, add);
        }
      };
      if (kc >= 64) {  // B's KC x NR panel stays in L1 (or L2) while the A panels pass
        for (size_t jr = 0; jr < nc; jr += NR)
          for (size_t ir = 0; ir < mc; ir += MR) micro(ir, jr);
      } else {  // a short K: C's traffic dominates, so walk each C row block along its rows
        for (size_t ir = 0; ir < mc; ir += MR)
          for (size_t jr = 0; jr < nc; jr += NR) micro(ir, jr);
      }
    }
  }
  if (first && !p.accumulate) zero_c(p, i0, i1 - i0, j0, j1 - j0);  // no K block summed (k = 0, or all skipped)
}

template <class T>
GemmKernels<T> make_gemm_kernels() {
  GemmKernels<T> k;
  k.tile = &tile<T>;
  k.mr = static_cast<size_t>(MicroShape<T>::MR);
  k.nr = MicroShape<T>::NR;
  return k;
}

}  // namespace gemm_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
