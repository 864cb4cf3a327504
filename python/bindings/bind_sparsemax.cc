// Bindings for the sparsemax family (see python/logitkit/sparsemax.py for the public API). Arrays
// arrive validated and allocated by the Python layer; this file wraps pointers and releases the GIL.
#include "bind_common.h"
#include "logitkit/sparsemax.h"

namespace logitkit_py {
namespace {

enum class Forward { kSparsemax, kEntmax15, kBisect };

template <class T>
void forward(Forward op, const py::array& x, const py::array& out, int axis, double temperature, double alpha,
             int n_iter) {
  auto xv = view_of<const T>(x, "x", false);
  auto yv = view_of<T>(out, "out", true);
  py::gil_scoped_release release;
  if (op == Forward::kBisect) {
    logitkit::EntmaxBisectOptions o;
    o.alpha = alpha;
    o.n_iter = n_iter;
    o.temperature = temperature;
    logitkit::entmax_bisect<T>(xv, yv, axis, o);
    return;
  }
  logitkit::SparsemaxOptions o;
  o.temperature = temperature;
  if (op == Forward::kSparsemax) {
    logitkit::sparsemax<T>(xv, yv, axis, o);
  } else {
    logitkit::entmax15<T>(xv, yv, axis, o);
  }
}

template <class T>
void backward(Forward op, const py::array& y, const py::array& dy, const py::array& out, int axis, double alpha,
              double temperature) {
  auto yv = view_of<const T>(y, "y", false);
  auto dyv = view_of<const T>(dy, "dy", false);
  auto ov = view_of<T>(out, "out", true);
  py::gil_scoped_release release;
  switch (op) {
    case Forward::kSparsemax:
      logitkit::sparsemax_backward<T>(yv, dyv, ov, axis, temperature);
      break;
    case Forward::kEntmax15:
      logitkit::entmax15_backward<T>(yv, dyv, ov, axis, temperature);
      break;
    case Forward::kBisect:
      logitkit::entmax_bisect_backward<T>(yv, dyv, ov, axis, alpha, temperature);
      break;
  }
}

void def_forward(py::module_& m, const char* name, Forward op) {
  m.def(
      name,
      [op](const py::array& x, const py::array& out, int axis, double temperature, double alpha, int n_iter) {
        is_f32(x) ? forward<float>(op, x, out, axis, temperature, alpha, n_iter)
                  : forward<double>(op, x, out, axis, temperature, alpha, n_iter);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"), py::arg("alpha") = 1.5,
      py::arg("n_iter") = 50);
}

void def_backward(py::module_& m, const char* name, Forward op) {
  m.def(
      name,
      [op](const py::array& y, const py::array& dy, const py::array& out, int axis, double alpha, double temperature) {
        is_f32(y) ? backward<float>(op, y, dy, out, axis, alpha, temperature)
                  : backward<double>(op, y, dy, out, axis, alpha, temperature);
      },
      py::arg("y"), py::arg("dy"), py::arg("out"), py::arg("axis"), py::arg("alpha"), py::arg("temperature"));
}

}  // namespace

void bind_sparsemax(py::module_& m) {
  def_forward(m, "sparsemax", Forward::kSparsemax);
  def_forward(m, "entmax15", Forward::kEntmax15);
  def_forward(m, "entmax_bisect", Forward::kBisect);
  def_backward(m, "sparsemax_backward", Forward::kSparsemax);
  def_backward(m, "entmax15_backward", Forward::kEntmax15);
  def_backward(m, "entmax_bisect_backward", Forward::kBisect);
}

}  // namespace logitkit_py
