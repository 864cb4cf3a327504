// BlockSum<T>: the accumulator of a row's partial sums (one per block of loops-inl.h's for_blocks,
// and one per chunk of a long row split across threads). Hot loops sum a block in T; only the
// block totals come here, once per 64 vectors, so its cost is off the hot path.
//  float   added in double: each block total has 24 bits, so the row's error does not grow with
//          its length.
//  double  compensated (Knuth's TwoSum, branch-free): a plain double add puts one rounding per
//          block into the sum, which grew with the row length (up to ~600 units of 2^-53 in
//          1/sum on 262k equal terms on the scalar backend, where a block is 64 elements); with
//          the rounding errors carried along, the result is the exact sum of the block totals
//          rounded about once, whatever the number of blocks.
// Needs ISO rounding (the build's -ffp-contract=off; no -ffast-math). Non-finite totals pass
// through as in a plain sum (TwoSum's error term is NaN then, and is ignored).
#pragma once

#include <cmath>

namespace logitkit {

template <class T>
class BlockSum;

template <>
class BlockSum<float> {
 public:
  void add(double v) { s_ += v; }
  void scale(double f) { s_ *= f; }  // the running sum times f (online softmax's rescaling)
  void scale_pow2(int k) { s_ = std::ldexp(s_, k); }
  double value() const { return s_; }

 private:
  double s_ = 0;
};

template <>
class BlockSum<double> {
 public:
  void add(double v) {
    const double t = s_ + v;
    const double vv = t - s_;
    err_ += (s_ - (t - vv)) + (v - vv);  // s_ + v - t, exactly
    s_ = t;
  }
  void scale(double f) {
    s_ *= f;
    err_ *= f;
  }
  void scale_pow2(int k) {
    s_ = std::ldexp(s_, k);
    err_ = std::ldexp(err_, k);
  }
  // Once s_ is not finite it stays so (inf or NaN absorb every later add), as a plain sum would.
  double value() const { return std::isfinite(s_) ? s_ + err_ : s_; }

 private:
  double s_ = 0, err_ = 0;
};

}  // namespace logitkit
