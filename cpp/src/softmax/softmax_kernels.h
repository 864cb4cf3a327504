// The softmax family's slot in the dispatch table: function pointers every ISA fills with its
// instantiation of softmax_kernels-inl.h. ISA-neutral: included by the driver and the dispatcher.
#pragma once
#include <cstddef>
#include <cstdint>

#include "logitkit/softmax.h"

namespace logitkit {

// Partial results of one chunk of a row; combining them in chunk order keeps long rows that are
// split across threads bitwise reproducible.
template <class T>
struct ExtSum {  // Two-pass: sum = mant * 2^expo
  T mant;
  T expo;
  bool ok;  // false: an input the (mantissa, exponent) pair cannot take (NaN, +inf, > 2^20)
};
template <class T>
struct MaxSum {  // Online: sum of exp(c (x - max))
  T max;
  T sum;
};
template <class T>
struct UntiedSum {  // sum of b exp(c (x - shift)) over x != m, and sum of b over x == m
  T sum;
  T tied_weight;
};

// c (a - b) in double for scalar merges of partial results (float arguments promote exactly),
// halved for c < 1 as scaled_difference (simd/math-inl.h), so that double arguments do not
// overflow where the product is finite. Out of line (softmax.cc, no ISA flags): the kernels of
// every ISA and the driver share this one definition; it runs once per block.
double scaled_difference_scalar(double a, double b, double c);

// three_pass_reload skips the max shift for rows whose every |c x| is at most
// kUnshiftedExpLimit<T> and that have at most kUnshiftedExpMaxElements elements: it then takes
// y = exp(c x) / sum (see unshifted_exp_ok in softmax_kernels-inl.h for the bounds).
template <class T>
inline constexpr T kUnshiftedExpLimit = T(64);
inline constexpr uint64_t kUnshiftedExpMaxElements = uint64_t{1} << 33;

// The one "no max shift needed" test (its vector form, for several rows at once, is in
// softmax_rows_short): three_pass_reload may take y = exp(c x) / sum without shifting x by its
// max. The shift only keeps exp in range, and here every term lies in [e^-64, e^64] (normal), a
// block's float partial sum stays below 1024 e^64, and 1/sum stays normal for up to 2^33 terms.
// It also makes the row more exact: each exp argument is c x itself, where x - max is rounded to
// the ulp of |x - max| (2^-19 relative for |x - max| in [32, 64), 16 float ulps of the result),
// and the loop has no subtraction and no range guard (in range by construction): 8.5% faster
// pipelined on Zen 4. False for NaN magnitude. static: see pipelines_rows.
template <class T>
static constexpr bool unshifted_exp_ok(T magnitude, T c, size_t n) {
  return magnitude * c <= kUnshiftedExpLimit<T> && uint64_t(n) <= kUnshiftedExpMaxElements;
}

// Softmax outputs at least this large are rewritten as 1 - t / (u_i + t) from the others' share t,
// correctly rounded (dominant_entry-inl.h); below it the plain product is as exact.
template <class T>
inline constexpr T kDominantThreshold = T(1) - T(1) / T(256);

// softmax_rows runs three_pass_reload software-pipelined across the rows of a call when rows have
// at least this many bytes; shorter rows run their max and scale passes from L1 and gain little.
constexpr size_t kPipelineMinRowBytes = 4096;

// The one "pipeline this row" test, of the kernels (softmax_rows, log_softmax_rows,
// logsumexp_rows) and of the driver's task split (softmax.cc). static: a copy per translation
// unit, so an ISA's copy is never shared with another ISA's code.
static constexpr bool pipelines_rows(size_t n, size_t item) { return n * item >= kPipelineMinRowBytes; }

// softmax_rows_streamed and log_softmax_rows_streamed compute rows short enough for one sum block
// in tiles of about kStreamedTileBytes in scratch (L1), then stream each tile to y. Small tiles
// keep the reads of x and the streaming stores of y overlapped in the memory system: a 16 KiB
// tile's reads and its stores ran as separate phases, and 262144x128 softmax on one thread took
// 22 ms with them, 9.3 with 4 KiB tiles (a streaming copy: 8.9; measured with a toy kernel).
constexpr size_t kStreamedTileBytes = 4096;
template <class T>
constexpr size_t streamed_tile_rows(size_t n) {
  return n * sizeof(T) >= kStreamedTileBytes ? 1 : kStreamedTileBytes / (n * sizeof(T));
}
// Scratch softmax_rows_streamed needs: a tile, or one row, plus a cache line to align its start
// and one for its offset from a line.
template <class T>
constexpr size_t streamed_scratch_elements(size_t n) {
  return streamed_tile_rows<T>(n) * n + 128 / sizeof(T);
}

// softmax<T> of one contiguous row of n elements with default options (softmax.cc): the same
// algorithm, kernels and bits as a call on any batch holding the row. For collapse_fraction.
template <class T>
void softmax_row_default(const T* x, T* y, int64_t n);

template <class T>
struct SoftmaxKernels {
  // Whole rows, each of length n: row r starts at x + r * ldx (and y + r * ldy).
  void (*softmax_rows)(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy,
                       T inv_temperature, SoftmaxAlgorithm algorithm);
  // three_pass_reload writing y with non-temporal stores (outputs beyond the last-level cache);
  // scratch holds streamed_scratch_elements<T>(n).
  void (*softmax_rows_streamed)(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy,
                                T inv_temperature, T* scratch);
  void (*log_softmax_rows)(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy,
                           T inv_temperature);
  // log_softmax_rows with non-temporal stores, as softmax_rows_streamed; same scratch.
  void (*log_softmax_rows_streamed)(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy,
                                    T inv_temperature, T* scratch);
  // b (weights, may be null), sign (may be null); out[r * out_stride].
  void (*logsumexp_rows)(const T* x, const T* b, T* out, T* sign, size_t rows, size_t n,
                         ptrdiff_t ldx, ptrdiff_t ldb, ptrdiff_t out_stride, ptrdiff_t sign_stride);

  // Chunk primitives, used to split one long row across threads.
  T (*max)(const T* x, size_t n);
  T (*magnitude)(const T* x, size_t n);                              // max |x| (NaN: see kernels)
  T (*exp_store_sum)(const T* x, T* y, size_t n, T shift, T c);     // y = exp(c(x-shift)), sum
  // y = exp(c x), sum; only for x whose every |c x| is at most kUnshiftedExpLimit<T>
  T (*exp_store_sum_unshifted)(const T* x, T* y, size_t n, T c);
  T (*exp_sum)(const T* x, size_t n, T shift, T c);                 // sum exp(c(x-shift))
  T (*scale)(const T* x, T* y, size_t n, T s);                       // y = s x; returns max y
  void (*exp_scale_store)(const T* x, T* y, size_t n, T shift, T c, T s);  // y = s exp(c(x-shift))
  ExtSum<T> (*extexp_sum)(const T* x, size_t n, T c);
  // stream: non-temporal stores, for outputs far larger than the last-level cache.
  T (*extexp_store)(const T* x, T* y, size_t n, T c, T inv_mant, T expo, bool stream);  // returns max y
  MaxSum<T> (*online_sum)(const T* x, size_t n, T c);
  T (*weighted_max)(const T* x, const T* b, size_t n);  // max over x where b != 0
  UntiedSum<T> (*untied_sum)(const T* x, const T* b, size_t n, T m, T shift, T c);  // b may be null
  void (*shift_store)(const T* x, T* y, size_t n, T shift, T c, T offset);  // y = c(x-shift) - offset

  // Row finishers (untied_sum_finish-inl.h), for the long-row driver: the same code as the kernels'.
  T (*log_sum_from_untied)(UntiedSum<T> u);
  void (*finish_logsumexp)(T m, UntiedSum<T> u, T* out, T* sign);

  // softmax's dominant entry of each row of outputs, correctly rounded (dominant_entry-inl.h).
  void (*finish_dominant_entries)(T* y, size_t rows, size_t n, ptrdiff_t ldy);
};

}  // namespace logitkit
