// Bindings for the class-index losses with their own drivers: stablemax_cross_entropy,
// sparsemax_loss / entmax15_loss (fenchel_young_loss) and spherical_z_loss (see
// python/logitkit/class_losses.py). Each takes the loss bindings' shared arguments, then its own.
#include <cstdint>
#include <string>

#include "bind_common.h"
#include "logitkit/sparsemax.h"
#include "logitkit/spherical_z_loss.h"
#include "logitkit/stablemax.h"

namespace logitkit_py {

namespace {
// Defines `name(logits, target, <shared loss arguments>, <extra...>)` calling
// call(T{}, Index{}, views, logits view, target view, extra...).
template <class Call, class... Extra>
void def_class_loss(py::module_& m, const char* name, Call call, std::initializer_list<const char*> extra_names) {
  auto fn = [call](const py::array& logits, const py::array& target, const py::object& weight,
                   const py::object& sample_weight, const py::object& loss, const py::object& grad, double grad_output,
                   const py::object& grad_output_rows, int axis, int64_t ignore_index, const std::string& reduction,
                   double p1, double p2) {
    return with_loss_types(logits, target, [&](auto t, auto i) {
      using T = decltype(t);
      using Index = decltype(i);
      const LossViews<T> v(weight, sample_weight, loss, grad, grad_output, grad_output_rows, axis, ignore_index,
                           reduction);
      const auto xv = view_of<const T>(logits, "logits", false);
      const auto tv = view_of<const Index>(target, "target", false);
      py::gil_scoped_release release;
      return call(v, xv, tv, p1, p2);
    });
  };
  auto names = extra_names.begin();
  m.def(name, fn, py::arg("logits"), py::arg("target"), py::arg("weight"), py::arg("sample_weight"), py::arg("loss"),
        py::arg("grad"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("axis"), py::arg("ignore_index"),
        py::arg("reduction"), py::arg(names[0]), py::arg(names[1]));
}
}  // namespace

void bind_class_losses(py::module_& m) {
  def_class_loss(
      m, "stablemax_cross_entropy",
      [](const auto& v, const auto& x, const auto& t, double temperature, double) {
        logitkit::StablemaxOptions o;
        o.temperature = temperature;
        return logitkit::stablemax_cross_entropy(x, t, v.options, o, v.weights, v.loss, v.grad);
      },
      {"temperature", "unused"});
  def_class_loss(
      m, "fenchel_young_loss",
      [](const auto& v, const auto& x, const auto& t, double entmax15, double temperature) {
        logitkit::SparsemaxOptions o;
        o.temperature = temperature;
        const auto kind = entmax15 != 0.0 ? logitkit::FenchelYoung::kEntmax15 : logitkit::FenchelYoung::kSparsemax;
        return logitkit::fenchel_young_loss(kind, x, t, v.options, o, v.weights, v.loss, v.grad);
      },
      {"entmax15", "temperature"});
  def_class_loss(
      m, "spherical_z_loss",
      [](const auto& v, const auto& x, const auto& t, double a, double b) {
        logitkit::SphericalZLossOptions o;
        o.a = a;
        o.b = b;
        return logitkit::spherical_z_loss(x, t, v.options, o, v.weights, v.loss, v.grad);
      },
      {"a", "b"});
}

}  // namespace logitkit_py
