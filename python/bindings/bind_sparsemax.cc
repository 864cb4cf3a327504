// Bindings for the sparsemax family (see python/logitkit/sparsemax.py for the public API). Arrays
// arrive validated and allocated by the Python layer; this file wraps pointers and releases the GIL.
// Each binding takes its op's own parameters: alpha and n_iter only where the op has them.
#include "bind_common.h"
#include <type_traits>

#include "logitkit/sparsemax.h"

namespace logitkit_py {
namespace {

// op(x, y, axis, options) for float or double arrays, the GIL released.
template <template <class> class Op, class Options>
void forward(const py::array& x, const py::array& out, int axis, const Options& options) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    auto xv = view_of<const T>(x, "x", false);
    auto yv = view_of<T>(out, "out", true);
    py::gil_scoped_release release;
    Op<T>::run(xv, yv, axis, options);
  };
  is_f32(x) ? run(float{}) : run(double{});
}

template <class T>
struct Sparsemax {
  static void run(logitkit::InputView<T> x, logitkit::ArrayView<T> y, int axis, const logitkit::SparsemaxOptions& o) {
    logitkit::sparsemax<T>(x, y, axis, o);
  }
};
template <class T>
struct Entmax15 {
  static void run(logitkit::InputView<T> x, logitkit::ArrayView<T> y, int axis, const logitkit::SparsemaxOptions& o) {
    logitkit::entmax15<T>(x, y, axis, o);
  }
};
template <class T>
struct EntmaxBisect {
  static void run(logitkit::InputView<T> x, logitkit::ArrayView<T> y, int axis,
                  const logitkit::EntmaxBisectOptions& o) {
    logitkit::entmax_bisect<T>(x, y, axis, o);
  }
};

// backward(y, dy, out, axis) for float or double arrays, the GIL released.
template <class Backward>
void backward(const py::array& y, const py::array& dy, const py::array& out, int axis, Backward&& op) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    auto yv = view_of<const T>(y, "y", false);
    auto dyv = view_of<const T>(dy, "dy", false);
    auto ov = view_of<T>(out, "out", true);
    py::gil_scoped_release release;
    op(yv, dyv, ov);
  };
  is_f32(y) ? run(float{}) : run(double{});
}

}  // namespace

void bind_sparsemax(py::module_& m) {
  m.def(
      "sparsemax",
      [](const py::array& x, const py::array& out, int axis, double temperature) {
        logitkit::SparsemaxOptions o;
        o.temperature = temperature;
        forward<Sparsemax>(x, out, axis, o);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  m.def(
      "entmax15",
      [](const py::array& x, const py::array& out, int axis, double temperature) {
        logitkit::SparsemaxOptions o;
        o.temperature = temperature;
        forward<Entmax15>(x, out, axis, o);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  m.def(
      "entmax_bisect",
      [](const py::array& x, const py::array& out, int axis, double temperature, double alpha, int n_iter) {
        logitkit::EntmaxBisectOptions o;
        o.alpha = alpha;
        o.n_iter = n_iter;
        o.temperature = temperature;
        forward<EntmaxBisect>(x, out, axis, o);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"), py::arg("alpha"), py::arg("n_iter"));
  m.def(
      "sparsemax_backward",
      [](const py::array& y, const py::array& dy, const py::array& out, int axis, double temperature) {
        backward(y, dy, out, axis, [&](auto yv, auto dyv, auto ov) {
          using T = std::remove_pointer_t<decltype(ov.data)>;
          logitkit::sparsemax_backward<T>(yv, dyv, ov, axis, temperature);
        });
      },
      py::arg("y"), py::arg("dy"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  m.def(
      "entmax15_backward",
      [](const py::array& y, const py::array& dy, const py::array& out, int axis, double temperature) {
        backward(y, dy, out, axis, [&](auto yv, auto dyv, auto ov) {
          using T = std::remove_pointer_t<decltype(ov.data)>;
          logitkit::entmax15_backward<T>(yv, dyv, ov, axis, temperature);
        });
      },
      py::arg("y"), py::arg("dy"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  m.def(
      "entmax_bisect_backward",
      [](const py::array& y, const py::array& dy, const py::array& out, int axis, double alpha, double temperature) {
        backward(y, dy, out, axis, [&](auto yv, auto dyv, auto ov) {
          using T = std::remove_pointer_t<decltype(ov.data)>;
          logitkit::entmax_bisect_backward<T>(yv, dyv, ov, axis, alpha, temperature);
        });
      },
      py::arg("y"), py::arg("dy"), py::arg("out"), py::arg("axis"), py::arg("alpha"), py::arg("temperature"));
}

}  // namespace logitkit_py
