// Bindings for cross_entropy (see python/logitkit/cross_entropy.py for the public API). Arrays
// arrive validated, converted and allocated by the Python layer; optional ones are None.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "bind_common.h"
#include "logitkit/cross_entropy.h"

namespace logitkit_py {

namespace {
logitkit::CrossEntropyOptions::Form parse_form(const std::string& name) {
  using Form = logitkit::CrossEntropyOptions::Form;
  if (name == "cross_entropy") return Form::kCrossEntropy;
  if (name == "focal") return Form::kFocal;
  if (name == "poly1") return Form::kPoly1;
  if (name == "comp_sum") return Form::kCompSum;
  throw py::value_error("form: unknown loss form '" + name + "'");
}
}  // namespace

namespace {

// The common call: cross_entropy(logits, target) with at most ignore_index, reduction and
// return_grad given, logits a plain float32/float64 (N, C) ndarray and target a plain int32/int64
// (N,) ndarray. Returns the loss (a NumPy scalar of logits' dtype, or an (N,) array for "none"),
// or (loss, grad) with return_grad; None for any other call, which the general path of
// python/logitkit/cross_entropy.py then takes (the same results, and every error). In C++ because
// the general path's checks cost about 4 us in Python, several times a small call's kernel.
py::object cross_entropy_fast(py::handle logits, py::handle target, py::handle ignore_index, py::handle reduction,
                              bool return_grad) {
  const py::dtype f32 = py::dtype::of<float>(), f64 = py::dtype::of<double>();
  const bool single = plain_array_of(logits, f32);
  if (!single && !plain_array_of(logits, f64)) return py::none();
  const bool i32 = plain_array_of(target, py::dtype::of<int32_t>());
  if (!i32 && !plain_array_of(target, py::dtype::of<int64_t>())) return py::none();
  const auto x = py::reinterpret_borrow<py::array>(logits);
  const auto t = py::reinterpret_borrow<py::array>(target);
  if (x.ndim() != 2 || t.ndim() != 1 || t.shape(0) != x.shape(0)) return py::none();
  if (!PyLong_CheckExact(ignore_index.ptr()) || !PyUnicode_CheckExact(reduction.ptr())) return py::none();
  int overflow = 0;
  const long long ignore = PyLong_AsLongLongAndOverflow(ignore_index.ptr(), &overflow);
  if (overflow) return py::none();
  const std::string name = py::reinterpret_borrow<py::str>(reduction);
  if (name != "mean" && name != "sum" && name != "none") return py::none();
  logitkit::LossOptions options;
  options.reduction = parse_reduction(name);
  options.ignore_index = ignore;
  const py::dtype dt = single ? f32 : f64;
  const py::ssize_t n = x.shape(0), c = x.shape(1);
  py::object rows = py::none(), grad = py::none();
  if (options.reduction == logitkit::Reduction::kNone) rows = new_output(dt, {n});
  if (return_grad) grad = new_output(dt, {n, c});
  auto call = [&](auto tag, auto index) {
    using T = decltype(tag);
    using Index = decltype(index);
    const auto xv = view_of<const T>(x, "logits", false);
    const auto tv = view_of<const Index>(t, "target", false);
    logitkit::LossGrad<T> g;
    if (return_grad) g.grad = view_of<T>(py::reinterpret_borrow<py::array>(grad), "grad", true);
    logitkit::ArrayView<T> loss;
    if (!rows.is_none()) loss = view_of<T>(py::reinterpret_borrow<py::array>(rows), "loss", true);
    py::gil_scoped_release release;
    return logitkit::cross_entropy<T, Index>(xv, tv, options, {}, {}, loss, g);
  };
  const double value = single ? (i32 ? call(float{}, int32_t{}) : call(float{}, int64_t{}))
                              : (i32 ? call(double{}, int32_t{}) : call(double{}, int64_t{}));
  py::object result = rows.is_none() ? dt.attr("type")(value) : rows;
  if (!return_grad) return result;
  return py::make_tuple(result, grad);
}

}  // namespace

void bind_cross_entropy(py::module_& m) {
  m.def("cross_entropy_fast", &cross_entropy_fast, py::arg("logits"), py::arg("target"), py::arg("ignore_index"),
        py::arg("reduction"), py::arg("return_grad"));
  // Returns (loss, z-loss term, accuracy); the last two NaN unless asked for.
  m.def(
      "cross_entropy",
      [](const py::array& logits, const py::array& target, const py::object& weight, const py::object& sample_weight,
         const py::object& loss, const py::object& grad, double grad_output, const py::object& grad_output_rows,
         int axis, int64_t ignore_index, const std::string& reduction, double label_smoothing, double temperature,
         double z_loss, double softcap, const py::object& lse, const py::object& predicted, bool want_z_loss,
         bool want_accuracy, double target_margin, const std::string& form, double form_param) {
        double z_value = std::numeric_limits<double>::quiet_NaN(), accuracy = z_value;
        auto call = [&](auto t, auto i) {
          using T = decltype(t);
          using Index = decltype(i);
          const LossViews<T> v(weight, sample_weight, loss, grad, grad_output, grad_output_rows, axis, ignore_index,
                               reduction);
          logitkit::CrossEntropyOptions ce;
          ce.label_smoothing = label_smoothing;
          ce.temperature = temperature;
          ce.z_loss = z_loss;
          ce.softcap = softcap;
          ce.target_margin = target_margin;
          ce.form = parse_form(form);
          ce.form_param = form_param;
          logitkit::CrossEntropyExtras<T> extras;
          extras.lse = optional_output<T>(lse, "lse");
          extras.predicted = optional_output<int64_t>(predicted, "predicted");
          extras.z_loss = want_z_loss ? &z_value : nullptr;
          extras.accuracy = want_accuracy ? &accuracy : nullptr;
          const auto xv = view_of<const T>(logits, "logits", false);
          const auto tv = view_of<const Index>(target, "target", false);
          py::gil_scoped_release release;
          return logitkit::cross_entropy<T>(xv, tv, v.options, ce, v.weights, v.loss, v.grad, extras);
        };
        double value;
        if (has_dtype<float>(target) || has_dtype<double>(target)) {  // probabilities
          value = is_f32(logits) ? call(float{}, float{}) : call(double{}, double{});
        } else {
          value = with_loss_types(logits, target, call);
        }
        return py::make_tuple(value, z_value, accuracy);
      },
      py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("sample_weight"), py::arg("loss"),
      py::arg("grad"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("axis"), py::arg("ignore_index"),
      py::arg("reduction"), py::arg("label_smoothing"), py::arg("temperature"), py::arg("z_loss"), py::arg("softcap"),
      py::arg("lse"), py::arg("predicted"), py::arg("want_z_loss"), py::arg("want_accuracy"), py::arg("target_margin"),
      py::arg("form"), py::arg("form_param"));
}

}  // namespace logitkit_py
