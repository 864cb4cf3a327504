// ArrayView: a non-owning N-D view over caller-owned memory (pointer, shape, strides in elements).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>

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

  // A C-contiguous view over `data` with the given shape.
  static ArrayView contiguous(T* data, std::initializer_list<int64_t> dims) {
    ArrayView v;
    v.data = data;
    for (int64_t d : dims) v.shape[v.ndim++] = d;
    int64_t stride = 1;
    for (int i = v.ndim - 1; i >= 0; --i) {
      v.strides[i] = stride;
      stride *= v.shape[i];
    }
    return v;
  }

  int64_t size() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }

  // Implicit conversion to a read-only view of the same memory.
  operator ArrayView<const T>() const {
    ArrayView<const T> v;
    v.data = data;
    v.ndim = ndim;
    for (int i = 0; i < ndim; ++i) {
      v.shape[i] = shape[i];
      v.strides[i] = strides[i];
    }
    return v;
  }
};

}  // namespace logitkit
