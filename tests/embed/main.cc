// Embed test: calls the installed logitkit's C++ softmax and checks it against a closed form.
#include <logitkit/logitkit.h>

#include <cmath>
#include <cstdio>
#include <vector>

// x_i = log(i + 1) gives softmax(x)_i = (i + 1) / (n (n + 1) / 2) exactly.
// Written as a user would: size_t extents, a mutable input view, T deduced from the output.
template <class T>
int check(size_t n) {
  std::vector<T> x(n), y(n, T(-1));
  for (size_t i = 0; i < n; ++i) x[i] = std::log(T(i + 1));
  auto xv = logitkit::ArrayView<T>::contiguous(x.data(), {1, n});
  auto yv = logitkit::ArrayView<T>::contiguous(y.data(), {1, n});
  logitkit::softmax(xv, yv, -1);
  int bad = 0;
  const double tol = sizeof(T) == 4 ? 1e-6 : 1e-14;
  for (size_t i = 0; i < n; ++i) {
    const double want = 2.0 * double(i + 1) / (double(n) * double(n + 1));
    if (!(std::fabs(double(y[i]) - want) <= tol * want)) {
      std::printf("softmax<%s>[%zu] = %.17g, expected %.17g\n", sizeof(T) == 4 ? "float" : "double", i,
                  double(y[i]), want);
      ++bad;
    }
  }
  return bad;
}

int main() {
  std::printf("logitkit %s, isa %s\n", LOGITKIT_VERSION, logitkit::isa());
  int bad = check<float>(37) + check<double>(1000);
  // The rows x cols pointer overload.
  float x[4] = {0.0f, std::log(3.0f), 0.0f, 0.0f}, y[4];
  logitkit::softmax(x, y, 2, 2);
  if (std::fabs(y[0] - 0.25f) > 1e-6f || std::fabs(y[1] - 0.75f) > 1e-6f || y[2] != 0.5f || y[3] != 0.5f) {
    std::printf("pointer overload: %g %g %g %g\n", y[0], y[1], y[2], y[3]);
    ++bad;
  }
  // Errors cross the library boundary as logitkit::Error.
  try {
    logitkit::softmax(x, y, 2, 2, logitkit::SoftmaxOptions{-1.0});
    std::printf("temperature -1 was accepted\n");
    ++bad;
  } catch (const logitkit::Error& e) {
    if (e.argument() != "temperature") ++bad;
  }
  std::printf(bad ? "embed: FAILED\n" : "embed: OK\n");
  return bad ? 1 : 0;
}
