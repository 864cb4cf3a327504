// logitkit._core: the private extension module. Each op family registers itself from its own
// bind_<family>.cc; this file holds the runtime controls and the error mapping.
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "bind_common.h"
#include "logitkit/runtime.h"
#include "logitkit/version.h"

namespace logitkit_py {
void bind_math(py::module_& m);
void bind_softmax(py::module_& m);
void bind_masked_softmax(py::module_& m);
void bind_softmax_backward(py::module_& m);
void bind_stablemax(py::module_& m);
void bind_entropy(py::module_& m);
void bind_nll_loss(py::module_& m);
void bind_cross_entropy(py::module_& m);
void bind_distill(py::module_& m);
void bind_class_losses(py::module_& m);
void bind_sparsemax(py::module_& m);
void bind_route(py::module_& m);
void bind_moe(py::module_& m);
void bind_linear_cross_entropy(py::module_& m);

namespace {

// The output array of the common call to an op whose output has the inputs' shape (reduce =
// false) or that shape without `axis` (reduce = true, out must be None), or None for the general
// path of python/logitkit/_arrays.py, which gives the same result and every error.
// The common call: x (and every array of the tuple `others`, the op's further inputs) float32 or
// float64 aligned ndarrays of one shape with NumPy's own (native) descriptor, at most kMaxDims
// dimensions; axis an int in range; `where` None or a bool ndarray that broadcasts to that shape
// (the binding reads it with stride-0 axes); out None (a new C-contiguous array is returned) or an
// aligned, writable ndarray of the inputs' descriptor and shape, with no stride 0 along an extent
// above 1 (it may share memory with the inputs: the row driver copies an input that overlaps it
// partly). Anything else x may be (a list, a tuple of arrays to stack, a subclass) takes the
// general path. In C++ because the same tests in Python cost 1 to 5 microseconds, several times the
// kernel call itself for small inputs.
py::object fast_target(py::handle x, py::handle axis, py::handle out, bool reduce, py::handle where,
                       py::handle others) {
  if (Py_TYPE(x.ptr()) != py::detail::npy_api::get().PyArray_Type_ || !PyLong_CheckExact(axis.ptr()))
    return py::none();
  const auto xa = py::reinterpret_borrow<py::array>(x);
  const py::dtype dt = xa.dtype();
  if (!dt.is(py::dtype::of<float>()) && !dt.is(py::dtype::of<double>())) return py::none();
  if (!plain_array_of(x, dt)) return py::none();
  const auto ndim = static_cast<long>(xa.ndim());
  if (ndim > logitkit::kMaxDims) return py::none();  // the general path merges axes
  const py::ssize_t* shape = xa.shape();
  auto same_shape = [&](const py::array& a) {
    return a.ndim() == xa.ndim() && std::equal(shape, shape + ndim, a.shape());
  };
  if (!others.is_none()) {
    for (py::handle a : py::reinterpret_borrow<py::tuple>(others))
      if (!plain_array_of(a, dt) || !same_shape(py::reinterpret_borrow<py::array>(a))) return py::none();
  }
  int overflow = 0;
  const long ax = PyLong_AsLongAndOverflow(axis.ptr(), &overflow);
  if (overflow || ax < -ndim || ax >= ndim) return py::none();
  if (!where.is_none()) {
    if (!plain_array_of(where, py::dtype::of<bool>())) return py::none();
    const auto m = py::reinterpret_borrow<py::array>(where);
    if (m.ndim() > ndim) return py::none();
    for (py::ssize_t d = 0; d < m.ndim(); ++d) {
      const py::ssize_t md = m.shape(d), xd = shape[ndim - m.ndim() + d];
      if (md != xd && md != 1) return py::none();
    }
  }
  if (out.is_none()) {
    std::vector<py::ssize_t> result(shape, shape + ndim);
    if (reduce) result.erase(result.begin() + (ax < 0 ? ax + ndim : ax));
    return new_output(dt, result);
  }
  if (reduce || !plain_array_of(out, dt)) return py::none();
  const auto oa = py::reinterpret_borrow<py::array>(out);
  if (!same_shape(oa) || !oa.writeable()) return py::none();
  // A broadcast out, or one whose rows overlap each other (as_strided): the general path names it.
  if (oa.size() == 0) return py::reinterpret_borrow<py::object>(out);  // nothing written (NumPy 2: zero strides)
  std::pair<py::ssize_t, py::ssize_t> dims[logitkit::kMaxDims];  // (|stride| in bytes, extent)
  int n = 0;
  for (py::ssize_t d = 0; d < oa.ndim(); ++d)
    if (oa.shape(d) > 1) dims[n++] = {oa.strides(d) < 0 ? -oa.strides(d) : oa.strides(d), oa.shape(d)};
  std::sort(dims, dims + n);
  py::ssize_t inner = oa.itemsize();  // bytes spanned by the dimensions already visited
  for (int i = 0; i < n; ++i) {
    if (dims[i].first < inner) return py::none();
    inner += dims[i].first * (dims[i].second - 1);
  }
  return py::reinterpret_borrow<py::object>(out);
}

}  // namespace
}  // namespace logitkit_py

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "logitkit C++ core (private; use the logitkit package)";
  m.attr("__version__") = LOGITKIT_VERSION;
  m.attr("MAX_DIMS") = logitkit::kMaxDims;  // most dimensions of a view (the Python layer merges beyond)

  // Every C++ logitkit::Error surfaces as ValueError carrying the argument name in its message.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const logitkit::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("isa", [] { return std::string(logitkit::isa()); });
  m.def("available_isas", &logitkit::available_isas);
  m.def("set_isa", &logitkit::set_isa, py::arg("name"));
  m.def("get_num_threads", &logitkit::get_num_threads);
  m.def("set_num_threads", &logitkit::set_num_threads, py::arg("n"));
  m.def("last_level_cache_bytes", &logitkit::last_level_cache_bytes);
  m.def("fast_target", &logitkit_py::fast_target, py::arg("x"), py::arg("axis"), py::arg("out"),
        py::arg("reduce") = false, py::arg("where") = py::none(), py::arg("others") = py::tuple());

  logitkit_py::bind_math(m);
  logitkit_py::bind_softmax(m);
  logitkit_py::bind_masked_softmax(m);
  logitkit_py::bind_softmax_backward(m);
  logitkit_py::bind_stablemax(m);
  logitkit_py::bind_entropy(m);
  logitkit_py::bind_nll_loss(m);
  logitkit_py::bind_cross_entropy(m);
  logitkit_py::bind_distill(m);
  logitkit_py::bind_class_losses(m);
  logitkit_py::bind_sparsemax(m);
  logitkit_py::bind_route(m);
  logitkit_py::bind_moe(m);
  logitkit_py::bind_linear_cross_entropy(m);
}
