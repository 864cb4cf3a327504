// ArrayView: a non-owning N-D view over caller-owned memory (pointer, shape, strides in elements).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "logitkit/error.h"

namespace logitkit {

inline constexpr int kMaxDims = 16;

// One extent given to ArrayView::contiguous: any integer type, so that contiguous(p, {rows, cols})
// compiles as it is written whether rows and cols are int, int64_t or size_t (a braced list of
// int64_t would narrow size_t, an error under clang and -pedantic-errors). A value beyond int64 is
// rejected by contiguous with an Error naming "shape".
class Extent {
 public:
  template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  Extent(I v)  // NOLINT(google-explicit-constructor): implicit, for braced lists of mixed integer types
      : value_(static_cast<int64_t>(v)), fits_(fits_int64(v)) {}
  int64_t value() const { return value_; }
  bool fits() const { return fits_; }

 private:
  template <class I>
  static constexpr bool fits_int64(I v) {
    if constexpr (std::is_signed_v<I>)
      return sizeof(I) <= sizeof(int64_t) || (v >= I(INT64_MIN) && v <= I(INT64_MAX));
    else
      return v <= static_cast<uint64_t>(INT64_MAX);
  }
  int64_t value_;
  bool fits_;
};

// Strides are counted in elements, not bytes, and may be zero (broadcast) or negative.
// A view never owns or frees its memory; it is cheap to copy and carries no heap state.
template <class T>
struct ArrayView {
  T* data = nullptr;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  // A C-contiguous view over `data` with the given shape (at most kMaxDims extents of any integer
  // type, each within int64, else throws logitkit::Error naming "shape").
  static ArrayView contiguous(T* data, std::initializer_list<Extent> dims) {
    if (dims.size() > static_cast<size_t>(kMaxDims))
      throw Error(Error::Kind::kInvalidArgument, "shape",
                  "at most " + std::to_string(kMaxDims) + " dimensions, got " + std::to_string(dims.size()));
    ArrayView v;
    v.data = data;
    for (const Extent& d : dims) {
      if (!d.fits())  // only unsigned (or 128-bit) extents get here; value() keeps their low 64 bits
        throw Error(Error::Kind::kInvalidArgument, "shape",
                    "extent " + std::to_string(v.ndim) + " is " + std::to_string(static_cast<uint64_t>(d.value())) +
                        ", beyond int64");
      v.shape[v.ndim++] = d.value();
    }
    int64_t stride = 1;
    for (int i = v.ndim - 1; i >= 0; --i) {
      v.strides[i] = stride;
      if (__builtin_mul_overflow(stride, v.shape[i], &stride)) stride = 0;  // size() reports it
    }
    return v;
  }

  // The element count; -1 when it overflows int64 or ndim is outside [0, kMaxDims] (the
  // library rejects such views with an Error).
  int64_t size() const {
    if (ndim < 0 || ndim > kMaxDims) return -1;
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i)
      if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return -1;
    return n;
  }

  // Implicit conversion to a read-only view of the same memory.
  operator ArrayView<const T>() const {
    ArrayView<const T> v;
    v.data = data;
    v.ndim = ndim;  // an ndim beyond kMaxDims is kept for the library to reject
    for (int i = 0; i < ndim && i < kMaxDims; ++i) {
      v.shape[i] = shape[i];
      v.strides[i] = strides[i];
    }
    return v;
  }
};

namespace detail {
template <class T>
struct Identity {
  using type = T;
};
// The element types the library is compiled for: every op template is specialized for these two,
// and its primary template (in the op's header) static_asserts for any other T.
template <class T>
inline constexpr bool kIsElement = std::is_same_v<T, float> || std::is_same_v<T, double>;
}  // namespace detail

// The type of an op's read-only inputs: ArrayView<const T>, with T taken from the op's output view
// only (Identity makes this parameter a non-deduced context). So softmax(x, y, -1) compiles for an
// x of either ArrayView<const float> or ArrayView<float> (converted), and mixing float with double
// is a compile error.
template <class T>
using InputView = ArrayView<const typename detail::Identity<T>::type>;

}  // namespace logitkit
