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

// Panels of W lines of an operand, k-major: dst[(l / W * kc + k) * W + l % W] = element (l, k),
// which lives at src[l * ls + k * ks]; lines past `lines` are 0. A's panels are MR of its rows
// (ls, ks = its row and column strides), B's are NR of its columns (ls, ks = its column and row
// strides), so one routine packs both, whatever their layout.
template <class T, class E, size_t W>
void pack_panels_typed(const E* src, ptrdiff_t ls, ptrdiff_t ks, size_t lines, size_t kc, T* dst) {
  using S = Simd<T>;
  size_t first = 0;  // the panels before it are packed
  if constexpr (std::is_same_v<E, T> && W % S::N == 0) {
    if (ls == 1) {
      // Whole panels of a contiguous run per k: each run read once, in order, and spread over the
      // panels (a panel at a time would read W elements per k, runs apart, which the hardware
      // prefetcher does not follow: 43% of d_input's product by a 32-row chunk went to that).
      first = lines / W * W;
      for (size_t k = 0; k < kc; ++k) {
        const T* run = src + static_cast<ptrdiff_t>(k) * ks;
        for (size_t l = 0; l < first; l += W)
          for (size_t w = 0; w < W; w += S::N) S::store(dst + l * kc + k * W + w, S::load(run + l + w));
      }
    }
  }
  for (size_t l = first; l < lines; l += W) {
    const size_t count = std::min(W, lines - l);
    T* panel = dst + l * kc;
    if (ls == 1) {  // W consecutive elements per k
      for (size_t k = 0; k < kc; ++k) {
        const E* run = src + static_cast<ptrdiff_t>(k) * ks + static_cast<ptrdiff_t>(l);
        for (size_t w = 0; w < count; ++w) panel[k * W + w] = element<T>(run + w);
      }
    } else {  // one line at a time
      for (size_t w = 0; w < count; ++w) {
        const E* line = src + static_cast<ptrdiff_t>(l + w) * ls;
        for (size_t k = 0; k < kc; ++k) panel[k * W + w] = element<T>(line + static_cast<ptrdiff_t>(k) * ks);
      }
    }
    if (count < W)
      for (size_t k = 0; k < kc; ++k)
        for (size_t w = count; w < W; ++w) panel[k * W + w] = T(0);
  }
}

// Lines [l0, l0 + lines) x K [k0, k0 + kc) of operand o (its storage type read once here).
template <class T, size_t W>
void pack_panels(const GemmOperand& o, ptrdiff_t ls, ptrdiff_t ks, size_t l0, size_t lines, size_t k0, size_t kc,
                 T* dst) {
  const ptrdiff_t off = static_cast<ptrdiff_t>(l0) * ls + static_cast<ptrdiff_t>(k0) * ks;
  if (o.type == GemmElement::kBFloat16)
    pack_panels_typed<T, uint16_t, W>(static_cast<const uint16_t*>(o.data) + off, ls, ks, lines, kc, dst);
  else
    pack_panels_typed<T, T, W>(static_cast<const T*>(o.data) + off, ls, ks, lines, kc, dst);
}

// How the micro-kernel reads its MR rows of A: element (r, k) at a[k * a_stride + r] (a packed
// panel, a_stride = MR, or a transposed operand read in place) or at a[r * a_stride + k] (rows
// read in place). A is read in place whenever it is stored as T with a unit stride: packing it
// would cost a pass over it per K block for nothing (measured: 13% of a square GEMM's time).
enum class ARead { kColumns, kRows };

// The micro-kernels' MR x NV accumulators, all zero (unrolled: they live in registers).
template <class T>
inline __attribute__((always_inline)) void zero_accumulators(
    typename Simd<T>::V (&acc)[MicroShape<T>::MR][MicroShape<T>::NV]) {
#pragma GCC unroll 32
  for (int r = 0; r < MicroShape<T>::MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < MicroShape<T>::NV; ++v) acc[r][v] = Simd<T>::zero();
}

// C[0:mr_used, 0:nr_used] = alpha * acc (+ C when `add`): whole tiles of a row-major C stored
// directly, the rest through a buffer.
template <class T>
void store_accumulators(const typename Simd<T>::V (&acc)[MicroShape<T>::MR][MicroShape<T>::NV], T* c, ptrdiff_t c_rs,
                        ptrdiff_t c_cs, size_t mr_used, size_t nr_used, T alpha, bool add) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int MR = MicroShape<T>::MR, NV = MicroShape<T>::NV;
  constexpr size_t N = S::N, NR = MicroShape<T>::NR;
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

// C[0:mr_used, 0:nr_used] = alpha * (A panel x packed B panel) (+ C when `add`).
template <class T, ARead kRead>
void micro_kernel(size_t kc, const T* __restrict pa, ptrdiff_t a_stride, const T* __restrict pb, T* c, ptrdiff_t c_rs,
                  ptrdiff_t c_cs, size_t mr_used, size_t nr_used, T alpha, bool add) {
  using S = Simd<T>;
  using V = typename S::V;
  using Shape = MicroShape<T>;
  constexpr int MR = Shape::MR, NV = Shape::NV;
  constexpr size_t N = S::N, NR = Shape::NR;
  V acc[MR][NV];
  zero_accumulators<T>(acc);
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
  store_accumulators<T>(acc, c, c_rs, c_cs, mr_used, nr_used, alpha, add);
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

// ---- bfloat16 x bfloat16 on a pair dot-product instruction (Simd<float>::dot_bf16, where the vector
// layer has one: AVX512-BF16's vdpbf16ps; the other backends widen while packing, above).
// Twice the multiply-adds per instruction of float32 FMA, float32 accumulation, products exact; the
// pairs are summed in a different order from the widened kernel's, so results agree with it to
// float32 rounding, not bitwise. K is taken a pair at a time: B is packed as NR columns of pairs per
// k pair, A is read a pair (one 32-bit broadcast) per row and k pair.
template <class S, class = void>
struct HasBf16Dot : std::false_type {};
template <class S>
struct HasBf16Dot<S, std::void_t<decltype(S::kBf16Dot)>> : std::bool_constant<S::kBf16Dot> {};

template <class T>
inline constexpr bool kBf16DotKernel = std::is_same_v<T, float> && HasBf16Dot<Simd<float>>::value;

inline uint32_t pair_at(const uint16_t* p) {  // two consecutive bfloat16 (any alignment)
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Panels of W lines, k pairs major: dst[((l / W) * kp + k / 2) * 2W + (l % W) * 2 + k % 2] =
// element (l, k) at src[l * ls + k * ks] (kp = ceil(kc / 2) pairs; the odd k's partner and lines
// past `lines` are 0).
template <size_t W, class S = Simd<float>>
void pack_bf16_pairs(const uint16_t* src, ptrdiff_t ls, ptrdiff_t ks, size_t lines, size_t kc, uint16_t* dst) {
  const size_t kp = (kc + 1) / 2;
  for (size_t l = 0; l < lines; l += W) {
    const size_t count = std::min(W, lines - l);
    uint16_t* panel = dst + l * kp * 2;
    if constexpr (HasBf16Dot<S>::value && W == 2 * S::N) {
      if (ls == 1 && count == W && kc % 2 == 0) {  // whole pairs of contiguous runs: vector interleave
        for (size_t k = 0; k < kc; k += 2) {
          const uint16_t* run = src + static_cast<ptrdiff_t>(k) * ks + static_cast<ptrdiff_t>(l);
          S::interleave_pairs(run, run + ks, panel + k * W);
        }
        continue;
      }
    }
    for (size_t k = 0; k < kc; ++k) {
      uint16_t* out = panel + (k / 2) * 2 * W + k % 2;
      const uint16_t* in = src + static_cast<ptrdiff_t>(k) * ks + static_cast<ptrdiff_t>(l) * ls;
      if (ls == 1) {
        for (size_t w = 0; w < count; ++w) out[2 * w] = in[w];
      } else {
        for (size_t w = 0; w < count; ++w) out[2 * w] = in[static_cast<ptrdiff_t>(w) * ls];
      }
      for (size_t w = count; w < W; ++w) out[2 * w] = 0;
    }
    if (kc % 2)
      for (size_t w = 0; w < W; ++w) panel[(kp - 1) * 2 * W + 2 * w + 1] = 0;
  }
}

// C[0:mr_used, 0:nr_used] = alpha * sum over kp pairs (+ C when `add`). The pair (r, p) is at
// a[r * a_rs + p * a_ps] in 16-bit elements: a packed panel (a_rs = 2, a_ps = 2 MR) or rows of a
// row-major operand read in place (a_rs = its row stride, a_ps = 2).
template <class T>
void micro_kernel_bf16(size_t kp, const uint16_t* __restrict a, ptrdiff_t a_rs, ptrdiff_t a_ps,
                       const uint16_t* __restrict pb, T* c, ptrdiff_t c_rs, ptrdiff_t c_cs, size_t mr_used,
                       size_t nr_used, T alpha, bool add) {
  using S = Simd<T>;  // T = float
  using V = typename S::V;
  using Shape = MicroShape<T>;
  constexpr int MR = Shape::MR, NV = Shape::NV;
  constexpr size_t N = S::N, NR = Shape::NR;
  V acc[MR][NV];
  zero_accumulators<T>(acc);
  for (size_t p = 0; p < kp; ++p) {
    typename S::Pairs b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = S::load_pairs(pb + v * 2 * N);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const typename S::Pairs pair = S::set1_pair(pair_at(a + r * a_rs));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = S::dot_bf16(acc[r][v], pair, b[v]);
    }
    a += a_ps;
    pb += 2 * NR;
  }
  store_accumulators<T>(acc, c, c_rs, c_cs, mr_used, nr_used, alpha, add);
}

// The blocking both kernels share, for C[i0:i1, j0:j1]: K blocks of p.kc (skipped blocks left
// out; the first one summed overwrites C unless the problem accumulates), B packed once per K block
// (pack_b(pc, kc)), M blocks of kGemmMc rows whose A the kernel packs or reads in place (pack_a(ic,
// mc, pc, kc) returns how many leading rows it reads in place, a multiple of MR), and the MR x NR
// micro-tiles (micro(c, ir, jr, rows, cols, whole, ic, pc, kc, add)), rows skipped by p.skip_m
// zeroed or left alone.
template <class T, class PackB, class PackA, class Micro>
void walk_blocks(const GemmProblem<T>& p, size_t i0, size_t i1, size_t j0, size_t j1, PackB&& pack_b, PackA&& pack_a,
                 Micro&& micro) {
  using Shape = MicroShape<T>;
  constexpr int MR = Shape::MR;
  constexpr size_t NR = Shape::NR;
  const size_t nc = j1 - j0;
  bool first = true;
  for (size_t pc = 0; pc < p.k; pc += p.kc) {
    if (p.skip_k && p.skip_k[pc / p.kc]) continue;
    const size_t kc = std::min(p.kc, p.k - pc);
    const bool add = p.accumulate || !first;
    first = false;
    pack_b(pc, kc);
    for (size_t ic = i0; ic < i1; ic += kGemmMc) {
      const size_t mc = std::min(kGemmMc, i1 - ic);
      const size_t whole = pack_a(ic, mc, pc, kc);
      auto at = [&](size_t ir, size_t jr) {
        const size_t rows = std::min<size_t>(MR, mc - ir), cols = std::min(NR, nc - jr);
        if (p.skip_m && rows_skipped(p.skip_m, ic + ir, rows)) {
          if (!add) zero_c(p, ic + ir, rows, j0 + jr, cols);
          return;
        }
        T* c = p.c + static_cast<ptrdiff_t>(ic + ir) * p.c_rs + static_cast<ptrdiff_t>(j0 + jr) * p.c_cs;
        micro(c, ir, jr, rows, cols, whole, ic, pc, kc, add);
      };
      if (kc >= 64) {  // B's KC x NR panel stays in L1 (or L2) while the A panels pass
        for (size_t jr = 0; jr < nc; jr += NR)
          for (size_t ir = 0; ir < mc; ir += MR) at(ir, jr);
      } else {  // a short K: C's traffic dominates, so walk each C row block along its rows
        for (size_t ir = 0; ir < mc; ir += MR)
          for (size_t jr = 0; jr < nc; jr += NR) at(ir, jr);
      }
    }
  }
  if (first && !p.accumulate) zero_c(p, i0, i1 - i0, j0, j1 - j0);  // no K block summed (k = 0, or all skipped)
}

// tile() for two bfloat16 operands on the pair kernel. A is read in place when its rows are
// contiguous and the K block has whole pairs.
template <class T>
void tile_bf16(const GemmProblem<T>& p, size_t i0, size_t i1, size_t j0, size_t j1, T* scratch) {
  using Shape = MicroShape<T>;
  constexpr int MR = Shape::MR;
  constexpr size_t NR = Shape::NR;
  const size_t nc = j1 - j0, padded_n = (nc + NR - 1) / NR * NR;
  const size_t kp_max = (p.kc + 1) / 2;
  uint16_t* packed_b = reinterpret_cast<uint16_t*>(scratch);
  uint16_t* packed_a = packed_b + 2 * kp_max * padded_n;
  const auto* a_data = static_cast<const uint16_t*>(p.a.data);
  const auto* b_data = static_cast<const uint16_t*>(p.b.data);
  walk_blocks(
      p, i0, i1, j0, j1,
      [&](size_t pc, size_t kc) {
        pack_bf16_pairs<NR>(b_data + static_cast<ptrdiff_t>(j0) * p.b.cs + static_cast<ptrdiff_t>(pc) * p.b.rs, p.b.cs,
                            p.b.rs, nc, kc, packed_b);
      },
      [&](size_t ic, size_t mc, size_t pc, size_t kc) {
        const size_t whole = p.a.cs == 1 && kc % 2 == 0 ? mc / MR * MR : 0;  // a partial panel is packed
        if (whole < mc)
          pack_bf16_pairs<MR>(a_data + static_cast<ptrdiff_t>(ic + whole) * p.a.rs + static_cast<ptrdiff_t>(pc) * p.a.cs,
                              p.a.rs, p.a.cs, mc - whole, kc, packed_a);
        return whole;
      },
      [&](T* c, size_t ir, size_t jr, size_t rows, size_t cols, size_t whole, size_t ic, size_t pc, size_t kc,
          bool add) {
        const size_t kp = (kc + 1) / 2;
        const uint16_t* pb = packed_b + 2 * jr * kp;
        if (ir < whole)
          micro_kernel_bf16<T>(kp, a_data + static_cast<ptrdiff_t>(ic + ir) * p.a.rs + static_cast<ptrdiff_t>(pc),
                               p.a.rs, 2, pb, c, p.c_rs, p.c_cs, rows, cols, p.alpha, add);
        else
          micro_kernel_bf16<T>(kp, packed_a + 2 * (ir - whole) * kp, 2, 2 * MR, pb, c, p.c_rs, p.c_cs, rows, cols,
                               p.alpha, add);
      });
}

template <class T>
void tile(const GemmProblem<T>& p, size_t i0, size_t i1, size_t j0, size_t j1, T* scratch) {
  using Shape = MicroShape<T>;
  constexpr int MR = Shape::MR;
  constexpr size_t NR = Shape::NR;
  const size_t nc = j1 - j0, padded_n = (nc + NR - 1) / NR * NR;
  if constexpr (kBf16DotKernel<T>) {
    if (p.a.type == GemmElement::kBFloat16 && p.b.type == GemmElement::kBFloat16)
      return tile_bf16(p, i0, i1, j0, j1, scratch);
  }
  T* packed_b = scratch;
  T* packed_a = scratch + p.kc * padded_n;
  // A read in place (see ARead) in whole MR-row panels; a partial last panel is packed.
  const bool direct_a = p.a.type == GemmElement::kNative && (p.a.cs == 1 || p.a.rs == 1);
  const T* a_data = static_cast<const T*>(p.a.data);
  walk_blocks(
      p, i0, i1, j0, j1, [&](size_t pc, size_t kc) { pack_panels<T, NR>(p.b, p.b.cs, p.b.rs, j0, nc, pc, kc, packed_b); },
      [&](size_t ic, size_t mc, size_t pc, size_t kc) {
        const size_t whole = direct_a ? mc / MR * MR : 0;
        if (whole < mc) pack_panels<T, MR>(p.a, p.a.rs, p.a.cs, ic + whole, mc - whole, pc, kc, packed_a + whole * kc);
        return whole;
      },
      [&](T* c, size_t ir, size_t jr, size_t rows, size_t cols, size_t whole, size_t ic, size_t pc, size_t kc,
          bool add) {
        const T* pb = packed_b + jr * kc;
        if (ir >= whole) {
          micro_kernel<T, ARead::kColumns>(kc, packed_a + ir * kc, MR, pb, c, p.c_rs, p.c_cs, rows, cols, p.alpha, add);
        } else {
          const T* a = a_data + static_cast<ptrdiff_t>(ic + ir) * p.a.rs + static_cast<ptrdiff_t>(pc) * p.a.cs;
          if (p.a.cs == 1)
            micro_kernel<T, ARead::kRows>(kc, a, p.a.rs, pb, c, p.c_rs, p.c_cs, rows, cols, p.alpha, add);
          else
            micro_kernel<T, ARead::kColumns>(kc, a, p.a.cs, pb, c, p.c_rs, p.c_cs, rows, cols, p.alpha, add);
        }
      });
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
