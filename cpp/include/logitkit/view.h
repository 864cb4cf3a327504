// ArrayView: a non-owning N-D view over caller-owned memory (pointer, shape, strides in elements).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "logitkit/error.h"

namespace logitkit {

inline constexpr int kMaxDims = 16;

// Strides are counted in elements, not bytes, and may be zero (broadcast) or negative.
// A view never owns or frees its memory; it is cheap to copy and carries no heap state.
template <class T>
struct ArrayView {
  T* data = nullptr;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  // A C-contiguous view over `data` with the given shape (at most kMaxDims extents, else throws
  // logitkit::Error naming "shape").
  static ArrayView contiguous(T* data, std::initializer_list<int64_t> dims) {
    if (dims.size() > static_cast<size_t>(kMaxDims))
      throw Error(Error::Kind::kInvalidArgument, "shape",
                  "at most " + std::to_string(kMaxDims) + " dimensions, got " + std::to_string(dims.size()));
    ArrayView v;
    v.data = data;
    for (int64_t d : dims) v.shape[v.ndim++] = d;
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

}  // namespace logitkit
