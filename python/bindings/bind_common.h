// Helpers shared by the binding files: NumPy array -> ArrayView without copies, error mapping.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit_py {

namespace py = pybind11;

// Whether `a` holds T. Compares dtypes by equivalence, not descriptor identity: a float64 array
// can carry its own descriptor object (dtype metadata, a spelled-out native byte order).
template <class T>
bool has_dtype(const py::array& a) {
  return py::isinstance<py::array_t<T>>(a);
}

// Wraps a float32/float64 array of exactly dtype T as a view (byte strides -> element strides).
// The Python layer guarantees dtype, alignment and writability; these checks only stop misuse of
// the private module from crashing.
template <class T>
logitkit::ArrayView<T> view_of(const py::array& a, const char* name, bool writable) {
  if (!has_dtype<std::remove_const_t<T>>(a))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<std::remove_const_t<T>>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() > logitkit::kMaxDims)
    throw py::value_error(std::string(name) + ": at most " + std::to_string(logitkit::kMaxDims) +
                          " dimensions are supported");
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  logitkit::ArrayView<T> v;
  v.data = static_cast<T*>(const_cast<void*>(a.data()));
  v.ndim = static_cast<int>(a.ndim());
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = a.shape(d);
    if (a.strides(d) % item != 0)
      throw py::value_error(std::string(name) + ": strides must be multiples of the item size");
    v.strides[d] = a.strides(d) / item;
  }
  return v;
}

inline bool is_f32(const py::array& a) { return has_dtype<float>(a); }

// A `where` mask (bool, or its uint8 view) read as 0/1 bytes, broadcast to the shape of `like`
// (NumPy's rule: trailing axes aligned; axes of length 1, and missing leading axes, get stride 0).
template <class T>
logitkit::ArrayView<const uint8_t> mask_view(const py::array& mask, const logitkit::ArrayView<T>& like,
                                             const char* like_name) {
  if (!has_dtype<bool>(mask) && !has_dtype<uint8_t>(mask))
    throw py::type_error("where: expected a boolean mask, got dtype " + std::string(py::str(mask.dtype())));
  const int lead = like.ndim - static_cast<int>(mask.ndim());
  if (lead < 0)  // python/logitkit checks first; this stops misuse
    throw py::value_error(std::string("where: more dimensions than ") + like_name);
  logitkit::ArrayView<const uint8_t> v;
  v.data = static_cast<const uint8_t*>(mask.data());
  v.ndim = like.ndim;
  for (int d = 0; d < like.ndim; ++d) {
    v.shape[d] = like.shape[d];
    const int md = d - lead;
    if (md < 0 || mask.shape(md) == 1) continue;  // stride 0
    if (mask.shape(md) != like.shape[d])  // python/logitkit checks first; this stops misuse
      throw py::value_error(std::string("where: shape cannot be broadcast to ") + like_name + "'s shape");
    v.strides[d] = mask.strides(md);  // itemsize 1: byte strides are element strides
  }
  return v;
}

// The loss bindings' arguments: the reduction's name, and optional arrays (None: absent view).
inline logitkit::Reduction parse_reduction(const std::string& name) {
  if (name == "mean") return logitkit::Reduction::kMean;
  if (name == "sum") return logitkit::Reduction::kSum;
  if (name == "none") return logitkit::Reduction::kNone;
  throw py::value_error("reduction: expected 'mean', 'sum' or 'none'; got '" + name + "'");
}

template <class T>
logitkit::ArrayView<const T> optional_input(const py::object& a, const char* name) {
  return a.is_none() ? logitkit::ArrayView<const T>{} : view_of<const T>(py::reinterpret_borrow<py::array>(a), name, false);
}
template <class T>
logitkit::ArrayView<T> optional_output(const py::object& a, const char* name) {
  return a.is_none() ? logitkit::ArrayView<T>{} : view_of<T>(py::reinterpret_borrow<py::array>(a), name, true);
}

// A loss call's common arguments as views: the options, the optional weights, the per-row loss
// (reduction "none") and the gradient outputs.
template <class T>
struct LossViews {
  logitkit::LossOptions options;
  logitkit::LossWeights<T> weights;
  logitkit::LossGrad<T> grad;
  logitkit::ArrayView<T> loss;
  LossViews(const py::object& weight, const py::object& sample_weight, const py::object& loss_rows,
            const py::object& grad_out, double grad_output, const py::object& grad_output_rows, int axis,
            int64_t ignore_index, const std::string& reduction) {
    options.reduction = parse_reduction(reduction);
    options.ignore_index = ignore_index;
    options.axis = axis;
    weights.weight = optional_input<T>(weight, "weight");
    weights.sample_weight = optional_input<T>(sample_weight, "sample_weight");
    grad.grad = optional_output<T>(grad_out, "grad");
    grad.grad_output = grad_output;
    grad.grad_output_rows = optional_input<T>(grad_output_rows, "grad_output");
    loss = optional_output<T>(loss_rows, "loss");
  }
};

// f(T{}, Index{}) for the input's float type (float32 or float64) and the target's index type
// (int32 or int64), which the Python layer has already converted to.
template <class F>
double with_loss_types(const py::array& input, const py::array& target, F&& f) {
  const bool i32 = has_dtype<int32_t>(target);
  if (is_f32(input)) return i32 ? f(float{}, int32_t{}) : f(float{}, int64_t{});
  return i32 ? f(double{}, int32_t{}) : f(double{}, int64_t{});
}

// Whether `a` is an aligned ndarray (not a subclass) with NumPy's own descriptor `dt`.
inline bool plain_array_of(py::handle a, const py::dtype& dt) {
  if (Py_TYPE(a.ptr()) != py::detail::npy_api::get().PyArray_Type_) return false;
  const auto arr = py::reinterpret_borrow<py::array>(a);
  return arr.dtype().is(dt) && (arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_);
}

// A new C-contiguous array. Large ones start on a cache line: NumPy places big buffers 16 bytes
// past one (the malloc header), so every vector store of a kernel would straddle two lines
// (measured: softmax 8x32000 writes 5% faster to an aligned y). The array is then a view of a
// slightly larger uint8 buffer (its .base).
inline py::array new_output(const py::dtype& dt, const std::vector<py::ssize_t>& shape) {
  constexpr py::ssize_t kLine = 64, kAlignFrom = py::ssize_t{1} << 16;  // bytes
  py::ssize_t bytes = dt.itemsize();
  for (py::ssize_t d : shape) bytes *= d;
  if (bytes < kAlignFrom) return py::array(dt, shape);
  py::array_t<uint8_t> buffer(bytes + kLine);
  const auto addr = reinterpret_cast<uintptr_t>(buffer.data());
  const auto skip = static_cast<py::ssize_t>((kLine - addr % kLine) % kLine);
  std::vector<py::ssize_t> strides(shape.size());
  py::ssize_t stride = dt.itemsize();
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return py::array(dt, shape, strides, buffer.mutable_data() + skip, buffer);
}

}  // namespace logitkit_py
