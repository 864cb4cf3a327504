// The C++ API called as a user writes it, compiled with -Wall -Wextra -Wconversion -Wsign-conversion
// -pedantic-errors -Werror (tests/cpp/CMakeLists.txt): size_t extents in ArrayView::contiguous,
// mutable ArrayView<T> inputs, T deduced from the output, for every op header. Each such call must
// give the bits of the same op called with explicit ArrayView<const T> inputs, softmax and
// logsumexp also match their closed forms, on every ISA. No GoogleTest: its headers are not built
// for these flags.
#include <logitkit/logitkit.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

int failures = 0;

void fail(const std::string& isa, const char* type, const char* what) {
  std::printf("FAILED [%s, %s]: %s\n", isa.c_str(), type, what);
  ++failures;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
void check_type(const std::string& isa, const char* type) {
  using logitkit::ArrayView;
  // x[r][i] = log(i + 1) + r: every row's softmax is (i + 1) / (vocab (vocab + 1) / 2).
  const size_t rows = 3, vocab = 37;
  std::vector<T> x(rows * vocab), y(rows * vocab), dy(rows * vocab), dx(rows * vocab), ref(rows * vocab);
  std::vector<T> out(rows), out_ref(rows);
  std::vector<uint8_t> mask(rows * vocab);
  for (size_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < vocab; ++i) {
      x[r * vocab + i] = std::log(T(i + 1)) + T(r);
      dy[r * vocab + i] = T(0.25) * T(i % 5) - T(0.5);
      mask[r * vocab + i] = uint8_t(i % 3 != 1);
    }

  // The natural spellings: size_t extents, mutable inputs.
  auto xv = ArrayView<T>::contiguous(x.data(), {rows, vocab});
  auto dyv = ArrayView<T>::contiguous(dy.data(), {rows, vocab});
  auto yv = ArrayView<T>::contiguous(y.data(), {rows, vocab});
  auto dxv = ArrayView<T>::contiguous(dx.data(), {rows, vocab});
  auto refv = ArrayView<T>::contiguous(ref.data(), {rows, vocab});
  auto outv = ArrayView<T>::contiguous(out.data(), {rows});
  auto out_refv = ArrayView<T>::contiguous(out_ref.data(), {rows});
  auto maskv = ArrayView<uint8_t>::contiguous(mask.data(), {rows, vocab});
  // The explicit spellings the natural ones must agree with.
  const ArrayView<const T> cx = xv, cdy = dyv;
  const ArrayView<const uint8_t> cmask = maskv;
  if (xv.ndim != 2 || xv.shape[0] != 3 || xv.shape[1] != 37 || xv.strides[0] != 37 || xv.strides[1] != 1)
    fail(isa, type, "contiguous with size_t extents");

  // forward(x, y) ops: natural call into y, explicit call into ref.
  auto forward = [&](const char* name, auto natural, auto explicit_call) {
    natural();
    explicit_call();
    if (!same_bits(y, ref)) fail(isa, type, name);
  };
  // softmax.h
  // Closed forms within 16 ulp: a few for the kernel, the rest for x's own rounding to T.
  const double tol = 16.0 * double(std::numeric_limits<T>::epsilon());
  forward("softmax", [&] { logitkit::softmax(xv, yv, -1); }, [&] { logitkit::softmax<T>(cx, refv, -1); });
  for (size_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < vocab; ++i) {
      const double want = 2.0 * double(i + 1) / double(vocab * (vocab + 1));
      if (!(std::fabs(double(y[r * vocab + i]) - want) <= tol * want)) fail(isa, type, "softmax closed form");
    }
  forward("log_softmax", [&] { logitkit::log_softmax(xv, yv, -1); }, [&] { logitkit::log_softmax<T>(cx, refv, -1); });
  logitkit::logsumexp(xv, outv, -1, dyv);  // mutable x and b
  logitkit::logsumexp<T>(cx, out_refv, -1, cdy);
  if (!same_bits(out, out_ref)) fail(isa, type, "logsumexp with b");
  logitkit::logsumexp(xv, outv, 1);
  for (size_t r = 0; r < rows; ++r) {
    const double want = std::log(double(vocab * (vocab + 1)) / 2.0) + double(r);
    if (!(std::fabs(double(out[r]) - want) <= tol * want)) fail(isa, type, "logsumexp closed form");
  }
  // masked_softmax.h: mutable uint8_t and bool masks.
  forward("masked_softmax", [&] { logitkit::masked_softmax(xv, maskv, yv, -1); },
          [&] { logitkit::masked_softmax<T>(cx, cmask, refv, -1); });
  std::unique_ptr<bool[]> bools(new bool[rows * vocab]);
  for (size_t i = 0; i < rows * vocab; ++i) bools[i] = mask[i] != 0;
  auto bool_maskv = ArrayView<bool>::contiguous(bools.get(), {rows, vocab});
  forward("masked_log_softmax (bool mask)", [&] { logitkit::masked_log_softmax(xv, bool_maskv, yv, -1); },
          [&] { logitkit::masked_log_softmax<T>(cx, cmask, refv, -1); });
  // softmax_backward.h: y and dy mutable, also mixed with const.
  logitkit::softmax(xv, yv, -1);
  const ArrayView<const T> cy = yv;
  auto backward = [&](const char* name, auto natural, auto explicit_call) {
    natural();
    explicit_call();
    if (!same_bits(dx, ref)) fail(isa, type, name);
  };
  backward("softmax_backward", [&] { logitkit::softmax_backward(yv, dyv, dxv, -1); },
           [&] { logitkit::softmax_backward<T>(cy, cdy, refv, -1); });
  backward("log_softmax_backward (const y)", [&] { logitkit::log_softmax_backward(cy, dyv, dxv, -1); },
           [&] { logitkit::log_softmax_backward<T>(cy, cdy, refv, -1); });
  backward("masked_softmax_backward", [&] { logitkit::masked_softmax_backward(yv, dyv, maskv, dxv, -1); },
           [&] { logitkit::masked_softmax_backward<T>(cy, cdy, cmask, refv, -1); });
  backward("masked_log_softmax_backward (bool mask)",
           [&] { logitkit::masked_log_softmax_backward(yv, dyv, bool_maskv, dxv, -1); },
           [&] { logitkit::masked_log_softmax_backward<T>(cy, cdy, cmask, refv, -1); });
  // entropy.h
  logitkit::entropy(xv, outv, -1);
  logitkit::entropy<T>(cx, out_refv, -1);
  if (!same_bits(out, out_ref)) fail(isa, type, "entropy");
  const auto dtype = sizeof(T) == 8 ? logitkit::CollapseDtype::kFloat64 : logitkit::CollapseDtype::kFloat32;
  const double natural_fraction = logitkit::collapse_fraction(xv, -1, dtype);
  if (!(natural_fraction == logitkit::collapse_fraction<T>(cx, -1, dtype) && natural_fraction == 0.0))
    fail(isa, type, "collapse_fraction");
  // sparsemax.h
  forward("sparsemax", [&] { logitkit::sparsemax(xv, yv, -1); }, [&] { logitkit::sparsemax<T>(cx, refv, -1); });
  forward("entmax15", [&] { logitkit::entmax15(xv, yv, -1); }, [&] { logitkit::entmax15<T>(cx, refv, -1); });
  forward("entmax_bisect", [&] { logitkit::entmax_bisect(xv, yv, -1); },
          [&] { logitkit::entmax_bisect<T>(cx, refv, -1); });
  logitkit::sparsemax(xv, yv, -1);
  backward("sparsemax_backward", [&] { logitkit::sparsemax_backward(yv, dyv, dxv, -1); },
           [&] { logitkit::sparsemax_backward<T>(cy, cdy, refv, -1); });
  backward("entmax15_backward", [&] { logitkit::entmax15_backward(yv, dyv, dxv, -1); },
           [&] { logitkit::entmax15_backward<T>(cy, cdy, refv, -1); });
  backward("entmax_bisect_backward", [&] { logitkit::entmax_bisect_backward(yv, dyv, dxv, -1); },
           [&] { logitkit::entmax_bisect_backward<T>(cy, cdy, refv, -1); });
  // stablemax.h
  forward("stablemax", [&] { logitkit::stablemax(xv, yv, -1); }, [&] { logitkit::stablemax<T>(cx, refv, -1); });
  forward("log_stablemax", [&] { logitkit::log_stablemax(xv, yv, -1); },
          [&] { logitkit::log_stablemax<T>(cx, refv, -1); });
  backward("stablemax_backward", [&] { logitkit::stablemax_backward(xv, dyv, dxv, -1); },
           [&] { logitkit::stablemax_backward<T>(cx, cdy, refv, -1); });
  backward("log_stablemax_backward", [&] { logitkit::log_stablemax_backward(xv, dyv, dxv, -1); },
           [&] { logitkit::log_stablemax_backward<T>(cx, cdy, refv, -1); });
}

// Extents of mixed integer types, and one beyond int64, which must be an Error naming "shape".
void check_extents() {
  float buf[24] = {};
  const size_t rows = 2;
  const int64_t mid = 3;
  auto v = logitkit::ArrayView<float>::contiguous(buf, {rows, mid, 4});
  if (v.ndim != 3 || v.shape[0] != 2 || v.shape[1] != 3 || v.shape[2] != 4 || v.strides[0] != 12 ||
      v.strides[1] != 4 || v.strides[2] != 1)
    fail("-", "-", "contiguous with mixed integer extents");
  try {
    (void)logitkit::ArrayView<float>::contiguous(buf, {rows, std::numeric_limits<uint64_t>::max()});
    fail("-", "-", "an extent beyond int64 was accepted");
  } catch (const logitkit::Error& e) {
    if (e.argument() != "shape" || std::string(e.what()).find("extent 1 is 18446744073709551615") == std::string::npos)
      fail("-", "-", e.what());
  }
}

}  // namespace

int main() {
  check_extents();
  const std::string previous = logitkit::isa();
  for (const std::string& isa : logitkit::available_isas()) {
    logitkit::set_isa(isa);
    check_type<float>(isa, "float");
    check_type<double>(isa, "double");
  }
  logitkit::set_isa(previous);
  if (failures) {
    std::printf("natural calls: %d FAILED\n", failures);
    return 1;
  }
  std::printf("natural calls: OK on every ISA\n");
  return 0;
}
