// Bindings for the route family (see python/logitkit/route.py for the public API). Arrays arrive
// validated, converted and allocated by the Python layer; this layer wraps pointers and drops the GIL.
#include <string>

#include "bind_common.h"
#include "logitkit/route.h"

namespace logitkit_py {
namespace {

template <class E>
E parse(const std::string& name, const char* argument, std::initializer_list<std::pair<const char*, E>> values) {
  for (const auto& [n, v] : values)
    if (name == n) return v;
  throw py::value_error(std::string(argument) + ": unknown value '" + name + "'");
}

logitkit::RouteOptions parse_options(const py::dict& d) {
  using namespace logitkit;
  RouteOptions o;
  o.scoring = parse<RouteScoring>(d["scoring"].cast<std::string>(), "scoring",
                                  {{"softmax", RouteScoring::kSoftmax},
                                   {"sigmoid", RouteScoring::kSigmoid},
                                   {"sqrtsoftplus", RouteScoring::kSqrtSoftplus},
                                   {"none", RouteScoring::kNone}});
  o.softcap = d["softcap"].cast<double>();
  o.activation = parse<RouteActivation>(d["activation"].cast<std::string>(), "activation",
                                        {{"none", RouteActivation::kNone},
                                         {"tanh", RouteActivation::kTanh},
                                         {"sigmoid", RouteActivation::kSigmoid},
                                         {"relu", RouteActivation::kRelu}});
  o.temperature = d["temperature"].cast<double>();
  o.weights_from = parse<RouteWeights>(d["weights_from"].cast<std::string>(), "weights_from",
                                       {{"scores", RouteWeights::kScores}, {"selected", RouteWeights::kSelected}});
  o.renormalize = d["renormalize"].cast<bool>();
  o.renormalize_eps = d["renormalize_eps"].cast<double>();
  o.scaling_factor = d["scaling_factor"].cast<double>();
  o.n_group = d["n_group"].cast<int64_t>();
  o.topk_group = d["topk_group"].cast<int64_t>();
  o.group_score = parse<GroupScore>(d["group_score"].cast<std::string>(), "group_score",
                                    {{"max", GroupScore::kMax}, {"top2_sum", GroupScore::kTop2Sum}});
  o.noise = parse<RouteNoise>(d["noise"].cast<std::string>(), "noise",
                              {{"none", RouteNoise::kNone},
                               {"gaussian", RouteNoise::kGaussian},
                               {"gumbel", RouteNoise::kGumbel},
                               {"jitter", RouteNoise::kJitter}});
  o.noise_std = d["noise_std"].cast<double>();
  o.seed = d["seed"].cast<uint64_t>();
  return o;
}

logitkit::ArrayView<const uint8_t> optional_bytes(const py::object& a, const char* name) {
  if (a.is_none()) return {};
  const auto arr = py::reinterpret_borrow<py::array>(a);
  if (!has_dtype<bool>(arr) && !has_dtype<uint8_t>(arr))
    throw py::type_error(std::string(name) + ": expected a boolean array, got dtype " + std::string(py::str(arr.dtype())));
  logitkit::ArrayView<const uint8_t> v;
  v.data = static_cast<const uint8_t*>(arr.data());
  v.ndim = static_cast<int>(arr.ndim());
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = arr.shape(d);
    v.strides[d] = arr.strides(d);  // itemsize 1
  }
  return v;
}

template <class T>
void route_impl(const py::array& logits, const py::array& weights, const py::array& ids, int64_t k,
                const logitkit::RouteOptions& o, const py::object& bias, const py::object& mask,
                const py::object& force, const py::object& noise_std) {
  auto xv = view_of<const T>(logits, "logits", false);
  auto wv = view_of<T>(weights, "weights", true);
  auto iv = view_of<int32_t>(ids, "ids", true);
  auto bv = optional_input<T>(bias, "bias");
  auto mv = optional_bytes(mask, "expert_mask");
  auto fv = optional_bytes(force, "force");
  auto sv = optional_input<T>(noise_std, "noise_std");
  py::gil_scoped_release release;
  logitkit::route<T>(xv, wv, iv, k, o, bv, mv, fv, sv);
}

// route(logits, k) with every keyword at its default, logits a plain float32/float64 ndarray of at
// most kMaxDims dimensions and 1 <= k <= E: (weights, ids) with the outputs allocated here, or None
// for any other call (the general path of python/logitkit/route.py: the same results, and every
// error). For a decode step's small-call latency: the general path's argument handling costs
// about twice the routing of one token.
py::object route_fast(py::handle logits, py::handle k) {
  const py::dtype f32 = py::dtype::of<float>(), f64 = py::dtype::of<double>();
  const bool single = plain_array_of(logits, f32);
  if ((!single && !plain_array_of(logits, f64)) || !PyLong_CheckExact(k.ptr())) return py::none();
  const auto x = py::reinterpret_borrow<py::array>(logits);
  if (x.ndim() < 1 || x.ndim() > logitkit::kMaxDims) return py::none();
  int overflow = 0;
  const long long kk = PyLong_AsLongLongAndOverflow(k.ptr(), &overflow);
  const py::ssize_t experts = x.shape(x.ndim() - 1);
  if (overflow || kk < 1 || kk > experts) return py::none();
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  shape.back() = static_cast<py::ssize_t>(kk);
  py::array weights = new_output(single ? f32 : f64, shape), ids = new_output(py::dtype::of<int32_t>(), shape);
  static const logitkit::RouteOptions defaults;
  if (single) {
    route_impl<float>(x, weights, ids, kk, defaults, py::none(), py::none(), py::none(), py::none());
  } else {
    route_impl<double>(x, weights, ids, kk, defaults, py::none(), py::none(), py::none(), py::none());
  }
  return py::make_tuple(weights, ids);
}

}  // namespace

void bind_route(py::module_& m) {
  m.def("route_fast", &route_fast, py::arg("logits"), py::arg("k"));
  // The options dict parsed once into C++'s struct (route.py caches it per set of arguments):
  // parsing it on every call cost more than routing a decode token.
  py::class_<logitkit::RouteOptions>(m, "RouteOptions");
  m.def("route_options", &parse_options, py::arg("options"));
  m.def(
      "route",
      [](const py::array& logits, const py::array& weights, const py::array& ids, int64_t k,
         const logitkit::RouteOptions& o, const py::object& bias, const py::object& mask, const py::object& force,
         const py::object& noise_std) {
        if (is_f32(logits)) {
          route_impl<float>(logits, weights, ids, k, o, bias, mask, force, noise_std);
        } else {
          route_impl<double>(logits, weights, ids, k, o, bias, mask, force, noise_std);
        }
      },
      py::arg("logits"), py::arg("weights"), py::arg("ids"), py::arg("k"), py::arg("options"), py::arg("bias"),
      py::arg("expert_mask"), py::arg("force"), py::arg("noise_std"));
}

}  // namespace logitkit_py
