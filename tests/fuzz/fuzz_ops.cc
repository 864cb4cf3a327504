// libFuzzer target over the C++ entry points of every logitkit family (issue 17).
//
// Input format: byte 0 picks the family (kFamilyNames below, modulo their count); the rest feeds a
// FuzzedDataProvider (integers are taken from the end, so a file's tail holds the ISA, the op,
// shapes, layouts and options, and its middle the element values) which decodes:
//   - the ISA (any of logitkit::available_isas()) and whether to re-run with 2-3 threads,
//   - the op of the family, element type (float, double; bfloat16 bits for
//     linear_cross_entropy_bf16), index type (int32, int64) where the op takes class indices,
//   - rank 1..3 shapes with extents 0..70 (sometimes up to ~1200) capped at 8192 elements,
//   - per view a layout: contiguous, padded, permuted (transposed), negative strides, a non-unit
//     inner step, zero-stride broadcast (inputs only), a misaligned start, and outputs that alias
//     an input exactly, shifted by a few elements, or with another layout in the same buffer,
//   - the axis and every op parameter (temperatures, k, groups, label smoothing, reductions,
//     ignore_index, capacities, alpha, ...; also invalid enum values and extreme numbers),
//   - values: small integers scaled by a power of two, a mix with inf/nan/subnormal/extremes, or
//     raw bit patterns.
// Every buffer is allocated with exactly the bytes its views can reach (ASan sees any overrun).
// Acceptable outcomes: a result, or a logitkit::Error (caught; its argument() must name something).
// Findings abort(): any other exception, a sanitizer report, a write outside the output views
// (every other byte of every buffer is compared with a snapshot: inputs stay untouched, padding
// and gaps are never written), a result that depends on the thread count, or a violated
// invariant (probabilities in [0, 1] summing to 1, excluded or ignored entries exactly 0, route ids
// distinct and in range, dispatch plans consistent, gemm against a float64 reference, ...).
//
// Running: build with -DLOGITKIT_BUILD_FUZZERS=ON (tests/fuzz/CMakeLists.txt), then
//   build/tests/fuzz/fuzz_ops FILE...                 run inputs (a finding exits non-zero)
//   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS        bounded fuzzing from a copy of the corpus
// Environment: LOGITKIT_FUZZ_VERBOSE=1 prints the decoded call (options, each view's shape, strides
// and placement, the input values) before making it; LOGITKIT_FUZZ_FAMILY=<name> and
// LOGITKIT_FUZZ_ISA=<name,...> skip every other input, so a per-family or per-ISA run saves inputs
// that reproduce without the variables.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "logitkit/logitkit.h"

namespace {

namespace lk = logitkit;
using lk::ArrayView;
using Shape = std::vector<int64_t>;

constexpr int kMaxRank = 4;
constexpr int64_t kMaxElements = int64_t{1} << 13;

const char* g_family = "?";
const char* g_op = "?";

// LOGITKIT_FUZZ_VERBOSE=1 (for reproducing a finding): prints the decoded call (options, every
// view's shape, strides and placement, and the input values) before making it.
bool g_verbose = false;
std::string g_notes;
void note(const std::string& s) {
  if (g_verbose) g_notes += s + "\n";
}

[[noreturn]] void fail(const char* file, int line, const char* cond, const std::string& detail) {
  std::fprintf(stderr, "\n==logitkit-fuzz== FINDING in family %s, op %s, isa %s: %s:%d: check `%s` failed%s%s\n",
               g_family, g_op, lk::isa(), file, line, cond, detail.empty() ? "" : ": ", detail.c_str());
  if (!g_verbose) std::fprintf(stderr, "==logitkit-fuzz== rerun with LOGITKIT_FUZZ_VERBOSE=1 for the decoded call\n");
  std::fflush(stderr);
  std::abort();
}
#define FZ_CHECK(cond, detail)                                       \
  do {                                                               \
    if (!(cond)) fail(__FILE__, __LINE__, #cond, std::string(detail)); \
  } while (0)

std::string str(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string shape_str(const int64_t* s, int n) {
  std::string o = "(";
  for (int i = 0; i < n; ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + (n == 1 ? ",)" : ")");
}

template <class V>
std::string to_s(const V& v) {
  if constexpr (std::is_enum_v<V>)
    return std::to_string(static_cast<int64_t>(v));
  else if constexpr (std::is_floating_point_v<V>)
    return str(v);
  else
    return std::to_string(v);
}
#define NOTE(x) note(std::string(#x " = ") + to_s(x))

template <class T>
uint64_t bits_of(T v) {
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}

// ------------------------------------------------------------------------------------------------
// Decoding the input.

const double kParams[] = {0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1.5, 0.1, 10.0, 1e-3, 1e3, 64.0, 65.0, 1e-30,
                          1e30, 1e300, 1e-300, 2.2250738585072014e-308, 4.9406564584124654e-324,
                          INFINITY, -INFINITY, NAN, 3.4028234663852886e38, 7e38, 0.25, 4.0, 1.0 / 3.0,
                          0.9999999999999999, 1.0000000000000002, 0.999, 100.0, -0.5, 1e-20, 8.0, 0.75,
                          1.1754943508222875e-38, 88.0, 710.0, -1e30};
constexpr int kNumParams = sizeof(kParams) / sizeof(kParams[0]);

const int64_t kInts[] = {0, -1, 1, 2, -2, INT64_MAX, INT64_MIN, INT32_MAX, int64_t{INT32_MAX} + 1, INT32_MIN,
                         int64_t{1} << 40, 1000000, 255, 256, -100, 65536};
constexpr int kNumInts = sizeof(kInts) / sizeof(kInts[0]);

class Input {
 public:
  Input(const uint8_t* data, size_t size) : fdp_(data, size) {}
  uint8_t u8() { return fdp_.ConsumeIntegral<uint8_t>(); }
  bool flag() { return fdp_.ConsumeBool(); }
  template <class I>
  I raw() {
    return fdp_.ConsumeIntegral<I>();
  }
  int pick(int n) { return n <= 1 ? 0 : fdp_.ConsumeIntegralInRange<int>(0, n - 1); }
  bool rare() { return u8() >= 240; }  // about 1 in 16 (never once the input is used up)

  // 0..70 mostly (every SIMD width's tails), sometimes up to ~1200.
  int64_t extent() {
    const uint8_t b = u8();
    return b < 200 ? b % 71 : 71 + int64_t(b - 200) * 20;
  }
  int64_t small_extent(int64_t max) { return u8() % (max + 1); }

  Shape shape(int min_rank, int max_rank, int64_t cap = kMaxElements) {
    const int rank = min_rank + pick(max_rank - min_rank + 1);
    Shape s(static_cast<size_t>(rank));
    for (auto& e : s) e = extent();
    for (;;) {
      int64_t n = 1;
      for (auto e : s) n *= std::max<int64_t>(e, 1);
      if (n <= cap) break;
      auto it = std::max_element(s.begin(), s.end());
      *it /= 2;
    }
    return s;
  }

  // Mostly a valid axis (negative ones included), sometimes an invalid one.
  int axis(int rank) {
    const uint8_t b = u8();
    if (rank <= 0) return b < 240 ? -1 : 0;
    if (b < 240) return int(b % (2 * rank)) - rank;
    const int bad[] = {rank, -rank - 1, INT32_MAX, INT32_MIN, 16, -17};
    return bad[b % 6];
  }

  double param(double dflt) {
    const uint8_t b = u8();
    if (b < 112) return dflt;
    if (b < 200) return kParams[b % kNumParams];
    if (b < 248) return std::ldexp(double(raw<int8_t>()), -3);
    const uint64_t r = raw<uint64_t>();
    double v;
    std::memcpy(&v, &r, sizeof v);
    return v;
  }

  int64_t iparam(int64_t dflt, int64_t lo, int64_t hi) {
    const uint8_t b = u8();
    if (b < 96) return dflt;
    if (b < 232) {  // in [lo, hi] (unsigned arithmetic: hi - lo may not fit int64)
      if (hi <= lo) return lo;
      const uint64_t range = uint64_t(hi) - uint64_t(lo) + 1;  // 0: the whole uint64 range
      const uint64_t r = raw<uint16_t>();
      return int64_t(uint64_t(lo) + (range ? r % range : r));
    }
    return kInts[b % kNumInts];
  }

  template <class E>
  E enum_value(int n) {  // a valid enumerator, or rarely a value outside the enumeration
    const uint8_t b = u8();
    if (b >= 250) return static_cast<E>(n + (b - 250) * 37);
    return static_cast<E>(b % n);
  }

  // Usually s itself; rarely a wrong shape for a secondary view.
  Shape perturb(Shape s) {
    const uint8_t b = u8();
    if (b < 250) return s;
    switch (b % 6) {
      case 0:
        if (!s.empty()) s.back() += 1;
        break;
      case 1:
        if (!s.empty()) s[0] = s[0] > 0 ? s[0] - 1 : 1;
        break;
      case 2:
        if (!s.empty()) s.pop_back();
        break;
      case 3:
        s.push_back(1);
        break;
      case 4:
        s.insert(s.begin(), 2);
        break;
      default:
        s.clear();
        break;
    }
    if (s.size() > size_t(kMaxRank)) s.resize(kMaxRank);
    return s;
  }

 private:
  FuzzedDataProvider fdp_;
};

// ------------------------------------------------------------------------------------------------
// Buffers and views.

struct Layout {
  int ndim = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[kMaxRank] = {};
  int64_t base = 0;  // offset of element (0, ..., 0) from the lowest reachable element
  int64_t span = 0;  // elements from the lowest to the highest reachable one (0: empty)
  bool zero_stride = false;
};

int64_t element_count(const Layout& L) {
  int64_t n = 1;
  for (int d = 0; d < L.ndim; ++d) n *= L.shape[d];
  return n;
}

void finish_layout(Layout& L) {
  bool empty = false;
  for (int d = 0; d < L.ndim; ++d) empty |= L.shape[d] == 0;
  L.base = 0;
  L.span = 0;
  if (empty) return;
  int64_t lo = 0, hi = 0;
  for (int d = 0; d < L.ndim; ++d) {
    const int64_t e = (L.shape[d] - 1) * L.strides[d];
    (e < 0 ? lo : hi) += e;
  }
  L.base = -lo;
  L.span = hi - lo + 1;
}

Layout contiguous_layout(const Shape& s) {
  Layout L;
  L.ndim = static_cast<int>(s.size());
  int64_t stride = 1;
  for (int d = L.ndim - 1; d >= 0; --d) {
    L.shape[d] = s[size_t(d)];
    L.strides[d] = stride;
    stride *= std::max<int64_t>(s[size_t(d)], 1);
  }
  finish_layout(L);
  return L;
}

// A fuzzed layout of shape s: dimension order, padding, inner step, negative and zero strides.
Layout make_layout(Input& in, const Shape& s, bool allow_zero) {
  const uint8_t f = in.u8();
  if (f == 0 || s.empty()) return contiguous_layout(s);
  Layout L;
  L.ndim = static_cast<int>(s.size());
  int order[kMaxRank];  // innermost first
  for (int i = 0; i < L.ndim; ++i) order[i] = L.ndim - 1 - i;
  if (L.ndim >= 2) {
    switch (f & 3) {
      case 1:  // Fortran order (a transpose)
        for (int i = 0; i < L.ndim; ++i) order[i] = i;
        break;
      case 2:  // rotated
        std::rotate(order, order + 1, order + L.ndim);
        break;
      case 3:
        std::swap(order[0], order[1]);
        break;
      default:
        break;
    }
  }
  int64_t pad[kMaxRank] = {};
  if (f & 4)
    for (int d = 0; d < L.ndim; ++d) pad[d] = in.u8() % 4;
  const uint8_t neg = (f & 8) ? in.u8() : 0;
  const uint8_t zero = ((f & 16) && allow_zero) ? in.u8() : 0;
  int64_t stride = (f & 32) ? 1 + in.u8() % 3 : 1;
  for (int i = 0; i < L.ndim; ++i) {
    const int d = order[i];
    L.shape[d] = s[size_t(d)];
    if ((zero >> d) & 1) {
      L.strides[d] = 0;
      L.zero_stride |= L.shape[d] > 1;
      continue;
    }
    L.strides[d] = stride;
    stride *= std::max<int64_t>(L.shape[d], 1) + pad[d];
  }
  for (int d = 0; d < L.ndim; ++d)
    if ((neg >> d) & 1) L.strides[d] = -L.strides[d];
  finish_layout(L);
  return L;
}

// f(offset of each element from element (0, ..., 0)), in C order.
template <class F>
void for_each_offset(const Layout& L, F&& f) {
  const int64_t n = element_count(L);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = i, off = 0;
    for (int d = L.ndim - 1; d >= 0; --d) {
      off += (rest % L.shape[d]) * L.strides[d];
      rest /= L.shape[d];
    }
    f(off);
  }
}

struct Region {
  size_t esize = 0, count = 0;
  std::unique_ptr<unsigned char[]> mem;  // exactly count * esize bytes
  std::vector<uint8_t> writable;         // per element: inside some output view
  std::vector<unsigned char> snapshot;   // before the call
};

template <class E>
struct Placed {
  ArrayView<E> v;
  Region* r = nullptr;
  Layout L;
  int64_t start = 0;  // element index in r of the lowest reachable element
  int64_t lead = 0;
  int alias = 0;  // for an input: how an output "like" it is placed (Ctx::output_like)
  int64_t slack = 0;
  bool given() const { return r != nullptr; }
};

// Element values.
template <class T>
T special(int i) {
  using L = std::numeric_limits<T>;
  const T v[16] = {T(0),        -T(0),       L::infinity(), -L::infinity(), L::quiet_NaN(), -L::quiet_NaN(),
                   L::denorm_min(), -L::denorm_min(), L::min(), L::max(), L::lowest(), T(1),
                   T(-1),       T(100),      T(-100),       L::epsilon()};
  return v[i & 15];
}

template <class T>
struct ValueFill {
  Input* in;
  int mode;
  int exp;
  void operator()(T* p, size_t n) const {
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    for (size_t i = 0; i < n; ++i) {
      switch (mode) {
        case 0:
          p[i] = std::ldexp(T(in->raw<int8_t>()), exp);
          break;
        case 1: {
          const uint8_t b = in->u8();
          p[i] = b >= 0xE0 ? special<T>(b) : std::ldexp(T(int8_t(b << 1) >> 1), exp);
          break;
        }
        default: {
          const Bits b = in->raw<Bits>();
          std::memcpy(&p[i], &b, sizeof b);
          break;
        }
      }
    }
  }
};

struct Bf16Fill {
  Input* in;
  int mode;
  int exp;
  void operator()(uint16_t* p, size_t n) const {
    for (size_t i = 0; i < n; ++i) {
      if (mode == 2) {
        p[i] = in->raw<uint16_t>();
      } else {
        const float f = mode == 0 ? std::ldexp(float(in->raw<int8_t>()), exp) : special<float>(in->u8());
        uint32_t b;
        std::memcpy(&b, &f, 4);
        p[i] = uint16_t(b >> 16);
      }
    }
  }
};

template <class Index>
struct IndexFill {  // class indices in [0, C), with ignore_index and out-of-range values now and then
  Input* in;
  int64_t classes;
  int64_t ignore;
  void operator()(Index* p, size_t n) const {
    for (size_t i = 0; i < n; ++i) {
      const uint8_t b = in->u8();
      if (b < 216) {
        p[i] = classes > 0 ? Index(b % classes) : Index(0);
      } else if (b < 240) {
        p[i] = Index(ignore);
      } else {
        const int64_t bad[] = {-1, classes, classes + 1, INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX, -2};
        p[i] = Index(bad[b % 8]);
      }
    }
  }
};

struct MaskFill {  // bytes: mostly `on_value` with density from the input, or raw
  Input* in;
  int mode;  // 0: mostly 1, 1: mostly 0, 2: half, 3: raw bytes
  void operator()(uint8_t* p, size_t n) const {
    for (size_t i = 0; i < n; ++i) {
      const uint8_t b = in->u8();
      switch (mode) {
        case 0: p[i] = b >= 24; break;
        case 1: p[i] = b >= 232; break;
        case 2: p[i] = b & 1; break;
        default: p[i] = b; break;
      }
    }
  }
};

struct BoolFill {
  Input* in;
  void operator()(bool* p, size_t n) const {
    for (size_t i = 0; i < n; ++i) p[i] = in->u8() >= 40;
  }
};

template <class I>
struct IntFill {  // ints in [lo, hi], rarely extremes
  Input* in;
  int64_t lo, hi;
  void operator()(I* p, size_t n) const {
    for (size_t i = 0; i < n; ++i) {
      const uint8_t b = in->u8();
      if (b < 236)
        p[i] = I(hi > lo ? int64_t(uint64_t(lo) + uint64_t(b) % (uint64_t(hi) - uint64_t(lo) + 1)) : lo);
      else
        p[i] = I(kInts[b % kNumInts]);
    }
  }
};

struct NoFill {
  template <class E>
  void operator()(E*, size_t) const {}
};

class Ctx {
 public:
  explicit Ctx(Input& input) : in(input) { canary = in.u8(); }
  Input& in;
  uint8_t canary;
  std::vector<std::unique_ptr<Region>> regions;

  Region* region(size_t esize, size_t count) {
    auto r = std::make_unique<Region>();
    r->esize = esize;
    r->count = count;
    r->mem.reset(new unsigned char[count * esize]);
    std::memset(r->mem.get(), canary, count * esize);
    r->writable.assign(count, 0);
    regions.push_back(std::move(r));
    return regions.back().get();
  }

  template <class T>
  ValueFill<T> values() {
    const uint8_t b = in.u8();
    const int mode = b < 140 ? 0 : b < 210 ? 1 : 2;
    return ValueFill<T>{&in, mode, in.pick(25) - 12};
  }

  // Verbose mode: one line per view and, after the snapshot, its values.
  std::vector<std::function<void()>> dumps;
  template <class E>
  void describe(const Placed<E>& p, const char* kind) {
    if (!g_verbose) return;
    size_t region_index = 0;
    for (size_t k = 0; k < regions.size(); ++k)
      if (regions[k].get() == p.r) region_index = k;
    const int id = int(dumps.size());
    note("view #" + std::to_string(id) + " " + kind + " <" + std::to_string(sizeof(E)) + "-byte elements> shape " +
         shape_str(p.L.shape, p.L.ndim) + " strides " + shape_str(p.L.strides, p.L.ndim) + " buffer " +
         std::to_string(region_index) + " (" + std::to_string(p.r->count) + " elements) at " +
         std::to_string(p.start + p.L.base) + (p.alias ? " alias-mode " + std::to_string(p.alias) : ""));
    dumps.push_back([p, id] {
      if (p.r->snapshot.empty()) return;
      std::string line = "  #" + std::to_string(id) + " values:";
      const E* base = reinterpret_cast<const E*>(p.r->snapshot.data()) + p.start + p.L.base;
      int64_t shown = 0;
      for_each_offset(p.L, [&](int64_t off) {
        if (shown++ >= 256) return;
        const E v = base[off];
        if constexpr (std::is_floating_point_v<E>) {
          char b[48];
          std::snprintf(b, sizeof b, " %.9g", double(v));
          line += b;
        } else {
          line += " " + std::to_string(int64_t(v));
        }
      });
      if (shown > 256) line += " ...";
      std::fprintf(stderr, "%s\n", line.c_str());
    });
  }

  template <class E>
  void set_view(Placed<E>& p) {
    p.v.data = reinterpret_cast<E*>(p.r->mem.get()) + p.start + p.L.base;
    p.v.ndim = p.L.ndim;
    for (int d = 0; d < p.L.ndim; ++d) {
      p.v.shape[d] = p.L.shape[d];
      p.v.strides[d] = p.L.strides[d];
    }
  }

  // An input of shape s, with a fuzzed layout (or L), filled by fill. aliasable: an output may be
  // placed over it later (output_like).
  template <class E, class Fill>
  Placed<E> input(const Shape& s, Fill&& fill, bool allow_zero = true, bool aliasable = false,
                  const Layout* fixed = nullptr) {
    Placed<E> p;
    p.L = fixed ? *fixed : make_layout(in, s, allow_zero);
    if (aliasable) {
      p.alias = in.pick(8);
      if (p.alias == 5 || p.alias == 6) p.slack = 1 + in.pick(3);
    }
    if (in.rare()) p.lead = 1 + in.pick(15);  // a start at another alignment
    const size_t count = size_t(p.lead + p.L.span + p.slack);
    p.r = region(sizeof(E), count);
    p.start = p.lead + (p.alias == 6 ? p.slack : 0);
    fill(reinterpret_cast<E*>(p.r->mem.get()), count);
    set_view(p);
    describe(p, "input");
    return p;
  }

  template <class E>
  void mark(const Placed<E>& p) {
    for_each_offset(p.L, [&](int64_t off) { p.r->writable[size_t(p.start + p.L.base + off)] = 1; });
  }

  // An output of shape s in a buffer of its own (prefilled with the canary byte, or by fill).
  template <class E, class Fill = NoFill>
  Placed<E> output(const Shape& s, Fill&& fill = {}) {
    Placed<E> p;
    p.L = make_layout(in, s, false);
    if (in.rare()) p.lead = 1 + in.pick(15);
    const size_t count = size_t(p.lead + p.L.span);
    p.r = region(sizeof(E), count);
    p.start = p.lead;
    fill(reinterpret_cast<E*>(p.r->mem.get()), count);
    set_view(p);
    mark(p);
    describe(p, "output");
    return p;
  }

  // An output with exactly layout L (for the pointer overloads), in a buffer of its own.
  template <class E>
  Placed<E> output_fixed(const Layout& L) {
    Placed<E> p;
    p.L = L;
    p.r = region(sizeof(E), size_t(L.span));
    set_view(p);
    mark(p);
    describe(p, "output");
    return p;
  }

  // An output of shape s placed as src.alias says: its own buffer (modes 0-3), exactly over src (4),
  // src's layout shifted by src.slack elements either way (5, 6), or its own layout somewhere in
  // src's buffer (7).
  template <class E>
  Placed<E> output_like(const Placed<E>& src, const Shape& s) {
    Shape src_shape(src.L.shape, src.L.shape + src.L.ndim);
    const bool same = src_shape == s && !src.L.zero_stride;
    Placed<E> p;
    p.r = src.r;
    switch (src.alias) {
      case 4:
        if (!same) break;
        p.L = src.L;
        p.start = src.start;
        set_view(p);
        mark(p);
        describe(p, "output (exactly over an input)");
        return p;
      case 5:
      case 6:
        if (!same) break;
        p.L = src.L;
        p.start = src.alias == 5 ? src.lead + src.slack : src.lead;
        set_view(p);
        mark(p);
        describe(p, "output (an input's layout, shifted)");
        return p;
      case 7: {
        p.L = make_layout(in, s, false);
        if (p.L.span > int64_t(src.r->count)) break;
        p.start = in.pick(int(int64_t(src.r->count) - p.L.span + 1));
        set_view(p);
        mark(p);
        describe(p, "output (in an input's buffer)");
        return p;
      }
      default:
        break;
    }
    return output<E>(s);
  }

  // The values a view held before the call (inputs overwritten in place are read from here).
  template <class E>
  ArrayView<const E> pre(const Placed<E>& p) const {
    ArrayView<const E> v;
    v.data = reinterpret_cast<const E*>(p.r->snapshot.data()) + p.start + p.L.base;
    v.ndim = p.L.ndim;
    for (int d = 0; d < p.L.ndim; ++d) {
      v.shape[d] = p.L.shape[d];
      v.strides[d] = p.L.strides[d];
    }
    return v;
  }

  void take_snapshot() {  // never empty: pre() of an empty view still needs a non-null base
    for (auto& r : regions) {
      r->snapshot.assign(r->mem.get(), r->mem.get() + r->count * r->esize);
      r->snapshot.resize(std::max<size_t>(r->snapshot.size(), 16));
    }
  }
  std::vector<std::vector<unsigned char>> contents() const {
    std::vector<std::vector<unsigned char>> c;
    for (auto& r : regions) c.emplace_back(r->mem.get(), r->mem.get() + r->count * r->esize);
    return c;
  }
  void restore() {
    for (auto& r : regions)
      if (r->count) std::memcpy(r->mem.get(), r->snapshot.data(), r->count * r->esize);
  }
  // Nothing outside the output views changed: inputs, padding, gaps, misaligned leads.
  void check_untouched() const {
    for (size_t k = 0; k < regions.size(); ++k) {
      const Region& r = *regions[k];
      for (size_t i = 0; i < r.count; ++i) {
        if (r.writable[i]) continue;
        if (std::memcmp(r.mem.get() + i * r.esize, r.snapshot.data() + i * r.esize, r.esize) != 0)
          fail(__FILE__, __LINE__, "untouched",
               "buffer " + std::to_string(k) + " element " + std::to_string(i) + " of " + std::to_string(r.count) +
                   " (element size " + std::to_string(r.esize) + ") was written but belongs to no output view");
      }
    }
  }
};

// ------------------------------------------------------------------------------------------------
// Reading results.

template <class E>
int64_t count_of(const ArrayView<E>& v) {
  int64_t n = 1;
  for (int d = 0; d < v.ndim; ++d) n *= v.shape[d];
  return n;
}

// Element at C-order index i.
template <class E>
E elem(const ArrayView<E>& v, int64_t i) {
  int64_t off = 0;
  for (int d = v.ndim - 1; d >= 0; --d) {
    off += (i % v.shape[d]) * v.strides[d];
    i /= v.shape[d];
  }
  return v.data[off];
}

template <class E>
struct RowRef {
  const E* p;
  int64_t step;
  int64_t n;
  E operator[](int64_t i) const { return p[i * step]; }
};

int norm_axis(int axis, int ndim) { return axis < 0 ? axis + ndim : axis; }

template <class E>
int64_t row_count(const ArrayView<E>& v, int axis) {
  const int a = norm_axis(axis, v.ndim);
  int64_t n = 1;
  for (int d = 0; d < v.ndim; ++d)
    if (d != a) n *= v.shape[d];
  return n;
}

// Row r (C order over the other axes) along axis.
template <class E>
RowRef<std::remove_const_t<E>> row_of(const ArrayView<E>& v, int axis, int64_t r) {
  const int a = norm_axis(axis, v.ndim);
  int64_t off = 0;
  for (int d = v.ndim - 1; d >= 0; --d) {
    if (d == a) continue;
    off += (r % v.shape[d]) * v.strides[d];
    r /= v.shape[d];
  }
  return {v.data + off, v.ndim ? v.strides[a] : 0, v.ndim ? v.shape[a] : 1};
}

Shape without_axis(const Shape& s, int axis, bool keepdims) {
  const int a = norm_axis(axis, int(s.size()));
  if (a < 0 || a >= int(s.size())) return Shape(s.begin(), s.empty() ? s.end() : s.end() - 1);
  Shape o;
  for (int d = 0; d < int(s.size()); ++d) {
    if (d != a)
      o.push_back(s[size_t(d)]);
    else if (keepdims)
      o.push_back(1);
  }
  return o;
}

bool axis_ok(int axis, int ndim) { return axis >= -ndim && axis < ndim; }

template <class T>
double tol() {
  return sizeof(T) == 4 ? 1e-4 : 1e-10;
}

// Probabilities along axis: each in [0, 1] (or -inf..0 for logs) or NaN; a row without NaN sums to 1.
template <class T>
void check_prob_rows(ArrayView<const T> y, int axis, bool log, const char* what) {
  const int64_t rows = row_count(y, axis);
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = row_of(y, axis, r);
    bool nan = false;
    double sum = 0;
    for (int64_t i = 0; i < row.n; ++i) {
      const T v = row[i];
      if (std::isnan(v)) {
        nan = true;
        continue;
      }
      if (log) {
        FZ_CHECK(v <= 0, std::string(what) + " = " + str(v) + " at row " + std::to_string(r) + " index " + std::to_string(i));
        sum += std::exp(double(v));
      } else {
        FZ_CHECK(v >= 0 && v <= 1, std::string(what) + " = " + str(v) + " at row " + std::to_string(r) + " index " +
                                       std::to_string(i));
        sum += double(v);
      }
    }
    if (!nan && row.n > 0)
      FZ_CHECK(std::abs(sum - 1) <= tol<T>() * (1 + 1e-3 * double(row.n)),
               std::string(what) + " row " + std::to_string(r) + " of " + std::to_string(row.n) + " sums to " + str(sum));
  }
}

template <class T>
bool row_finite(const RowRef<T>& row) {
  for (int64_t i = 0; i < row.n; ++i)
    if (!std::isfinite(row[i])) return false;
  return true;
}

template <class T>
bool row_has_nan(const RowRef<T>& row) {
  for (int64_t i = 0; i < row.n; ++i)
    if (std::isnan(row[i])) return true;
  return false;
}

struct Op {
  std::function<double()> call;
  std::function<void(double)> check;
};

// ------------------------------------------------------------------------------------------------
// Family 0: softmax, log_softmax, logsumexp, the contiguous convenience overload.

template <class T>
void build_softmax(Ctx& c, Op& op) {
  Input& in = c.in;
  const int which = in.pick(4);
  const Shape s = which == 3 ? in.shape(2, 2) : in.shape(1, 3);
  const int rank = int(s.size());
  lk::SoftmaxOptions o;
  o.temperature = in.param(1.0);
  o.algorithm = in.enum_value<lk::SoftmaxAlgorithm>(5);
  const int axis = in.axis(rank);
  NOTE(axis), NOTE(o.temperature), NOTE(o.algorithm);
  if (which <= 1) {
    const bool log = which == 1;
    g_op = log ? "log_softmax" : "softmax";
    auto x = c.input<T>(s, c.values<T>(), true, true);
    auto y = c.output_like(x, in.perturb(s));
    op.call = [=] {
      if (log)
        lk::log_softmax<T>(x.v, y.v, axis, o);
      else
        lk::softmax<T>(x.v, y.v, axis, o);
      return 0.0;
    };
    op.check = [=, &c](double) {
      check_prob_rows<T>(y.v, axis, log, log ? "log_softmax" : "softmax");
      if (o.temperature != 1.0) return;
      const auto xv = c.pre(x);  // a finite row at temperature 1 never gives NaN
      for (int64_t r = 0; r < row_count(xv, axis); ++r)
        if (row_finite(row_of(xv, axis, r)))
          FZ_CHECK(!row_has_nan(row_of(ArrayView<const T>(y.v), axis, r)), "NaN from a finite row " + std::to_string(r));
    };
  } else if (which == 2) {
    g_op = "logsumexp";
    auto x = c.input<T>(s, c.values<T>(), true, false);
    const Shape os = in.perturb(without_axis(s, axis, in.flag()));
    auto out = c.output<T>(os);
    Placed<T> b, sign;
    if (in.flag()) b = c.input<T>(in.perturb(s), c.values<T>(), true);
    if (in.flag()) sign = c.output<T>(in.perturb(os));
    op.call = [=] {
      lk::logsumexp<T>(x.v, out.v, axis, b.given() ? lk::InputView<T>(b.v) : lk::InputView<T>{},
                       sign.given() ? sign.v : ArrayView<T>{});
      return 0.0;
    };
    op.check = [=, &c](double) {
      if (sign.given())
        for (int64_t i = 0; i < count_of(sign.v); ++i) {
          const T v = elem(sign.v, i);
          FZ_CHECK(std::isnan(v) || v == 0 || v == 1 || v == -1, "sign " + str(v));
        }
      if (b.given()) return;
      const auto xv = c.pre(x);
      for (int64_t r = 0; r < row_count(xv, axis); ++r) {
        const auto row = row_of(xv, axis, r);
        const double o_r = double(elem(out.v, r));
        double mx = -INFINITY;
        bool nan = false;
        for (int64_t i = 0; i < row.n; ++i) {
          nan |= std::isnan(row[i]);
          mx = std::max(mx, double(row[i]));
        }
        const std::string where = "logsumexp row " + std::to_string(r) + " = " + str(o_r) + ", max " + str(mx);
        if (nan) {
          FZ_CHECK(std::isnan(o_r), where);
        } else if (row.n == 0 || std::isinf(mx)) {  // log(0), or a row of -inf / with +inf
          FZ_CHECK(o_r == (row.n == 0 ? -INFINITY : mx), where);
        } else {
          const double t = 8 * std::numeric_limits<T>::epsilon() * (std::abs(mx) + 1);
          FZ_CHECK(o_r >= mx - t && o_r <= mx + std::log(double(row.n)) + t, where);
        }
      }
    };
  } else {
    g_op = "softmax(ptr, rows, cols)";
    const Layout L = contiguous_layout(s);
    auto x = c.input<T>(s, c.values<T>(), false, true, &L);
    Placed<T> y;
    if (x.alias == 4) {
      y = x;
      c.mark(y);
    } else {
      y = c.output_fixed<T>(L);  // the overload writes rows * cols contiguous elements
    }
    const size_t rows = size_t(s[0]), cols = size_t(s[1]);
    op.call = [=] {
      lk::softmax(x.v.data, y.v.data, rows, cols, o);
      return 0.0;
    };
    op.check = [=](double) { check_prob_rows<T>(y.v, -1, false, "softmax(ptr)"); };
  }
}

// ------------------------------------------------------------------------------------------------
// Family 1: masked_softmax, masked_log_softmax (uint8 and bool masks).

template <class T>
void build_masked(Ctx& c, Op& op) {
  Input& in = c.in;
  const bool log = in.flag(), as_bool = in.flag();
  g_op = log ? "masked_log_softmax" : "masked_softmax";
  const Shape s = in.shape(1, 3);
  const int axis = in.axis(int(s.size()));
  lk::SoftmaxOptions o;
  o.temperature = in.param(1.0);
  o.algorithm = in.enum_value<lk::SoftmaxAlgorithm>(5);
  NOTE(axis), NOTE(o.temperature), NOTE(as_bool);
  auto x = c.input<T>(s, c.values<T>(), true, true);
  const Shape ms = in.perturb(s);
  Placed<uint8_t> m8;
  Placed<bool> mb;
  if (as_bool)
    mb = c.input<bool>(ms, BoolFill{&in}, true);
  else
    m8 = c.input<uint8_t>(ms, MaskFill{&in, in.pick(4)}, true);
  auto y = c.output_like(x, in.perturb(s));
  op.call = [=] {
    if (as_bool) {
      if (log)
        lk::masked_log_softmax<T>(x.v, ArrayView<const bool>(mb.v), y.v, axis, o);
      else
        lk::masked_softmax<T>(x.v, ArrayView<const bool>(mb.v), y.v, axis, o);
    } else {
      if (log)
        lk::masked_log_softmax<T>(x.v, m8.v, y.v, axis, o);
      else
        lk::masked_softmax<T>(x.v, m8.v, y.v, axis, o);
    }
    return 0.0;
  };
  op.check = [=](double) {
    const ArrayView<const T> yv = y.v;
    for (int64_t r = 0; r < row_count(yv, axis); ++r) {
      const auto yr = row_of(yv, axis, r);
      const auto mr8 = as_bool ? RowRef<uint8_t>{} : row_of(ArrayView<const uint8_t>(m8.v), axis, r);
      const auto mrb = as_bool ? row_of(ArrayView<const bool>(mb.v), axis, r) : RowRef<bool>{};
      bool nan = false, any = false;
      double sum = 0;
      for (int64_t i = 0; i < yr.n; ++i) {
        const bool on = as_bool ? mrb[i] : mr8[i] != 0;
        const T v = yr[i];
        const std::string where = "row " + std::to_string(r) + " index " + std::to_string(i) + " = " + str(v);
        if (!on) {
          FZ_CHECK(log ? v == -std::numeric_limits<T>::infinity() : v == 0, "excluded position " + where);
          continue;
        }
        any = true;
        if (std::isnan(v)) {
          nan = true;
          continue;
        }
        FZ_CHECK(log ? v <= 0 : (v >= 0 && v <= 1), "included position " + where);
        sum += log ? std::exp(double(v)) : double(v);
      }
      if (any && !nan)
        FZ_CHECK(std::abs(sum - 1) <= tol<T>() * (1 + 1e-3 * double(yr.n)), "row " + std::to_string(r) + " sums to " + str(sum));
    }
  };
}

// ------------------------------------------------------------------------------------------------
// Family 2: softmax_backward, log_softmax_backward and their masked forms.

template <class T>
void build_softmax_backward(Ctx& c, Op& op) {
  Input& in = c.in;
  const int which = in.pick(4);
  const char* names[] = {"softmax_backward", "log_softmax_backward", "masked_softmax_backward",
                         "masked_log_softmax_backward"};
  g_op = names[which];
  const Shape s = in.shape(1, 3);
  const int axis = in.axis(int(s.size()));
  lk::SoftmaxOptions o;
  o.temperature = in.param(1.0);
  NOTE(axis), NOTE(o.temperature);
  auto y = c.input<T>(s, c.values<T>(), true, true);
  auto dy = c.input<T>(in.perturb(s), c.values<T>(), true, true);
  const bool masked = which >= 2, as_bool = masked && in.flag();
  Placed<uint8_t> m8;
  Placed<bool> mb;
  if (masked) {
    if (as_bool)
      mb = c.input<bool>(in.perturb(s), BoolFill{&in}, true);
    else
      m8 = c.input<uint8_t>(in.perturb(s), MaskFill{&in, in.pick(4)}, true);
  }
  auto dx = c.output_like(in.flag() ? y : dy, in.perturb(s));
  op.call = [=] {
    switch (which) {
      case 0: lk::softmax_backward<T>(y.v, dy.v, dx.v, axis, o); break;
      case 1: lk::log_softmax_backward<T>(y.v, dy.v, dx.v, axis, o); break;
      case 2:
        if (as_bool)
          lk::masked_softmax_backward<T>(y.v, dy.v, ArrayView<const bool>(mb.v), dx.v, axis, o);
        else
          lk::masked_softmax_backward<T>(y.v, dy.v, m8.v, dx.v, axis, o);
        break;
      default:
        if (as_bool)
          lk::masked_log_softmax_backward<T>(y.v, dy.v, ArrayView<const bool>(mb.v), dx.v, axis, o);
        else
          lk::masked_log_softmax_backward<T>(y.v, dy.v, m8.v, dx.v, axis, o);
        break;
    }
    return 0.0;
  };
  op.check = [=](double) {
    if (!masked) return;
    for (int64_t i = 0; i < count_of(dx.v); ++i) {
      const bool on = as_bool ? elem(mb.v, i) : elem(m8.v, i) != 0;
      if (!on) FZ_CHECK(elem(dx.v, i) == 0, "excluded position " + std::to_string(i) + ": dx = " + str(elem(dx.v, i)));
    }
  };
}

// ------------------------------------------------------------------------------------------------
// Losses on class indices: the shared arguments and checks.

template <class T, class Index>
struct ClassArgs {
  Placed<T> logits;
  Placed<Index> target;
  Placed<T> weight, sample_weight, loss, grad, grad_rows;
  lk::LossOptions o;
  int64_t classes = 0;
  lk::LossWeights<T> weights() const {
    lk::LossWeights<T> w;
    if (weight.given()) w.weight = weight.v;
    if (sample_weight.given()) w.sample_weight = sample_weight.v;
    return w;
  }
  lk::LossGrad<T> g;
  ArrayView<T> loss_view() const { return loss.given() ? loss.v : ArrayView<T>{}; }
};

template <class T, class Index>
ClassArgs<T, Index> class_args(Ctx& c, bool grad_may_alias = true) {
  Input& in = c.in;
  ClassArgs<T, Index> a;
  const Shape s = in.shape(1, 3);
  const int rank = int(s.size());
  a.logits = c.input<T>(s, c.values<T>(), true, grad_may_alias);
  a.o.axis = in.axis(rank);
  a.o.reduction = in.enum_value<lk::Reduction>(3);
  a.o.ignore_index = in.iparam(-100, -2, 3);
  NOTE(a.o.axis), NOTE(a.o.reduction), NOTE(a.o.ignore_index);
  const int ax = axis_ok(a.o.axis, rank) ? norm_axis(a.o.axis, rank) : rank - 1;
  a.classes = s[size_t(ax)];
  const Shape ts = in.perturb(without_axis(s, ax, in.rare()));
  if constexpr (std::is_same_v<Index, T>) {  // soft targets: probabilities of the logits' shape
    a.target = c.input<Index>(in.perturb(s), c.values<T>(), true);
  } else {
    a.target = c.input<Index>(ts, IndexFill<Index>{&in, a.classes, a.o.ignore_index}, true);
  }
  if (in.flag()) a.weight = c.input<T>(in.perturb({a.classes}), c.values<T>(), true);
  if (in.flag()) a.sample_weight = c.input<T>(in.perturb(ts), c.values<T>(), true);
  if (a.o.reduction == lk::Reduction::kNone || in.rare()) a.loss = c.output<T>(in.perturb(ts));
  if (in.flag()) {
    a.grad = c.output_like(a.logits, in.perturb(s));
    a.g.grad = a.grad.v;
  }
  a.g.grad_output = in.param(1.0);
  NOTE(a.g.grad_output);
  if ((a.o.reduction == lk::Reduction::kNone && in.flag()) || in.rare()) {
    a.grad_rows = c.input<T>(in.perturb(ts), c.values<T>(), true);
    a.g.grad_output_rows = a.grad_rows.v;
  }
  return a;
}

// Rows whose target is ignore_index add loss 0 and gradient 0; "none" returns the sum of its rows.
template <class T, class Index>
void check_class_loss(const ClassArgs<T, Index>& a, double value) {
  const int axis = a.o.axis;
  const ArrayView<const T> grad = a.grad.v;
  const int64_t rows = count_of(a.target.v);
  const bool none = a.o.reduction == lk::Reduction::kNone && a.loss.given();  // other reductions may leave it
  double sum = 0, abs_sum = 0;
  bool finite = true;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = int64_t(elem(a.target.v, r));
    if (none) {
      const double l = double(elem(a.loss.v, r));
      finite &= std::isfinite(l);
      sum += l;
      abs_sum += std::abs(l);
    }
    if (t != a.o.ignore_index) continue;
    if (none) FZ_CHECK(elem(a.loss.v, r) == 0, "ignored row " + std::to_string(r) + " has loss " + str(elem(a.loss.v, r)));
    if (a.grad.given()) {
      const auto g = row_of(grad, axis, r);
      for (int64_t i = 0; i < g.n; ++i)
        FZ_CHECK(g[i] == 0, "ignored row " + std::to_string(r) + " has gradient " + str(g[i]) + " at " + std::to_string(i));
    }
  }
  if (none && finite && std::isfinite(value))  // the rows are rounded to T, the returned sum is not
    FZ_CHECK(std::abs(value - sum) <= 1e-5 * abs_sum + double(rows) * double(std::numeric_limits<T>::denorm_min()),
             "reduction none returned " + str(value) + ", its rows sum to " + str(sum));
}

// ------------------------------------------------------------------------------------------------
// Family 3: sparsemax, entmax15, entmax_bisect, their backward passes, fenchel_young_loss.

template <class T, class Index>
void build_fenchel_young(Ctx& c, Op& op) {
  g_op = "fenchel_young_loss";
  auto a = class_args<T, Index>(c);
  const auto kind = c.in.enum_value<lk::FenchelYoung>(2);
  lk::SparsemaxOptions so;
  so.temperature = c.in.param(1.0);
  op.call = [=] {
    return lk::fenchel_young_loss<T, Index>(kind, a.logits.v, a.target.v, a.o, so, a.weights(), a.loss_view(), a.g);
  };
  op.check = [=](double v) { check_class_loss(a, v); };
}

template <class T>
void build_sparsemax(Ctx& c, Op& op) {
  Input& in = c.in;
  const int which = in.pick(7);
  if (which == 6) {
    if (in.flag())
      build_fenchel_young<T, int32_t>(c, op);
    else
      build_fenchel_young<T, int64_t>(c, op);
    return;
  }
  const char* names[] = {"sparsemax", "entmax15", "entmax_bisect", "sparsemax_backward", "entmax15_backward",
                         "entmax_bisect_backward"};
  g_op = names[which];
  const Shape s = in.shape(1, 3);
  const int axis = in.axis(int(s.size()));
  const double temperature = in.param(1.0);
  lk::EntmaxBisectOptions eo;
  eo.alpha = in.param(1.5);
  eo.n_iter = int(in.iparam(50, -1, 60));
  eo.temperature = temperature;
  lk::SparsemaxOptions so;
  so.temperature = temperature;
  NOTE(axis), NOTE(temperature), NOTE(eo.alpha), NOTE(eo.n_iter);
  auto x = c.input<T>(s, c.values<T>(), true, true);
  if (which <= 2) {
    auto y = c.output_like(x, in.perturb(s));
    op.call = [=] {
      if (which == 0) lk::sparsemax<T>(x.v, y.v, axis, so);
      if (which == 1) lk::entmax15<T>(x.v, y.v, axis, so);
      if (which == 2) lk::entmax_bisect<T>(x.v, y.v, axis, eo);
      return 0.0;
    };
    op.check = [=](double) { check_prob_rows<T>(y.v, axis, false, g_op); };
    return;
  }
  auto dy = c.input<T>(in.perturb(s), c.values<T>(), true, true);
  auto dx = c.output_like(in.flag() ? x : dy, in.perturb(s));
  op.call = [=] {
    if (which == 3) lk::sparsemax_backward<T>(x.v, dy.v, dx.v, axis, temperature);
    if (which == 4) lk::entmax15_backward<T>(x.v, dy.v, dx.v, axis, temperature);
    if (which == 5) lk::entmax_bisect_backward<T>(x.v, dy.v, dx.v, axis, eo.alpha, temperature);
    return 0.0;
  };
}

// ------------------------------------------------------------------------------------------------
// Family 4: stablemax, log_stablemax, their backward passes, stablemax_cross_entropy.

template <class T, class Index>
void build_stablemax_ce(Ctx& c, Op& op) {
  g_op = "stablemax_cross_entropy";
  auto a = class_args<T, Index>(c);
  lk::StablemaxOptions so;
  so.temperature = c.in.param(1.0);
  op.call = [=] {
    return lk::stablemax_cross_entropy<T, Index>(a.logits.v, a.target.v, a.o, so, a.weights(), a.loss_view(), a.g);
  };
  op.check = [=](double v) { check_class_loss(a, v); };
}

template <class T>
void build_stablemax(Ctx& c, Op& op) {
  Input& in = c.in;
  const int which = in.pick(5);
  if (which == 4) {
    if (in.flag())
      build_stablemax_ce<T, int32_t>(c, op);
    else
      build_stablemax_ce<T, int64_t>(c, op);
    return;
  }
  const char* names[] = {"stablemax", "log_stablemax", "stablemax_backward", "log_stablemax_backward"};
  g_op = names[which];
  const Shape s = in.shape(1, 3);
  const int axis = in.axis(int(s.size()));
  lk::StablemaxOptions o;
  o.temperature = in.param(1.0);
  NOTE(axis), NOTE(o.temperature);
  auto x = c.input<T>(s, c.values<T>(), true, true);
  if (which <= 1) {
    auto y = c.output_like(x, in.perturb(s));
    const bool log = which == 1;
    op.call = [=] {
      if (log)
        lk::log_stablemax<T>(x.v, y.v, axis, o);
      else
        lk::stablemax<T>(x.v, y.v, axis, o);
      return 0.0;
    };
    op.check = [=, &c](double) {
      check_prob_rows<T>(y.v, axis, log, g_op);
      const auto xv = c.pre(x);  // documented: a finite row never gives NaN, whatever its magnitude
      for (int64_t r = 0; r < row_count(xv, axis); ++r)
        if (row_finite(row_of(xv, axis, r)) && row_of(xv, axis, r).n > 0)
          FZ_CHECK(!row_has_nan(row_of(ArrayView<const T>(y.v), axis, r)), "NaN from the finite row " + std::to_string(r));
    };
    return;
  }
  auto dy = c.input<T>(in.perturb(s), c.values<T>(), true, true);
  auto dx = c.output_like(in.flag() ? x : dy, in.perturb(s));
  op.call = [=] {
    if (which == 2)
      lk::stablemax_backward<T>(x.v, dy.v, dx.v, axis, o);
    else
      lk::log_stablemax_backward<T>(x.v, dy.v, dx.v, axis, o);
    return 0.0;
  };
}

// ------------------------------------------------------------------------------------------------
// Family 5: entropy, collapse_fraction.

template <class T>
void build_entropy(Ctx& c, Op& op) {
  Input& in = c.in;
  const Shape s = in.shape(1, 3);
  const int axis = in.axis(int(s.size()));
  auto x = c.input<T>(s, c.values<T>(), true, true);
  if (in.flag()) {
    g_op = "entropy";
    lk::EntropyOptions o;
    o.temperature = in.param(1.0);
    const Shape os = without_axis(s, axis, in.flag());
    auto out = c.output_like(x, in.perturb(os));
    op.call = [=] {
      lk::entropy<T>(x.v, out.v, axis, o);
      return 0.0;
    };
    op.check = [=, &c](double) {
      const auto xv = c.pre(x);
      for (int64_t r = 0; r < row_count(xv, axis); ++r) {
        const auto row = row_of(xv, axis, r);
        const double h = double(elem(out.v, r));
        bool bad = row.n == 0, all_neg_inf = true;
        for (int64_t i = 0; i < row.n; ++i) {
          bad |= std::isnan(row[i]) || row[i] == std::numeric_limits<T>::infinity();
          all_neg_inf &= row[i] == -std::numeric_limits<T>::infinity();
        }
        const std::string where = "entropy row " + std::to_string(r) + " of " + std::to_string(row.n) + " = " + str(h);
        if (bad || all_neg_inf) {
          FZ_CHECK(std::isnan(h), where + " (documented NaN)");
          continue;
        }
        if (o.temperature == 1.0 && row_finite(row)) FZ_CHECK(!std::isnan(h), where);
        if (!std::isnan(h))
          FZ_CHECK(h >= -tol<T>() && h <= std::log(double(row.n)) * (1 + tol<T>()) + tol<T>(), where);
      }
    };
  } else {
    g_op = "collapse_fraction";
    const auto dtype = in.enum_value<lk::CollapseDtype>(4);
    op.call = [=] { return lk::collapse_fraction<T>(ArrayView<const T>(x.v), axis, dtype); };
    op.check = [=, &c](double f) {
      const auto xv = c.pre(x);
      const int64_t rows = row_count(xv, axis);
      FZ_CHECK(rows == 0 ? std::isnan(f) : (f >= 0 && f <= 1), "fraction " + str(f) + " of " + std::to_string(rows) + " rows");
      const bool native = sizeof(T) == 8 ? dtype == lk::CollapseDtype::kFloat64 : dtype == lk::CollapseDtype::kFloat32;
      if (!native || rows == 0) return;
      // By construction: the rows where softmax<T>(x) (default options) has a largest entry of exactly 1.
      std::vector<T> xc(size_t(std::max<int64_t>(count_of(xv), 1))), y(xc.size());
      for (int64_t i = 0; i < count_of(xv); ++i) xc[size_t(i)] = elem(xv, i);
      Shape sh(xv.shape, xv.shape + xv.ndim);
      const Layout L = contiguous_layout(sh);
      ArrayView<const T> xa;
      ArrayView<T> ya;
      xa.data = xc.data();
      ya.data = y.data();
      xa.ndim = ya.ndim = L.ndim;
      for (int d = 0; d < L.ndim; ++d) {
        xa.shape[d] = ya.shape[d] = L.shape[d];
        xa.strides[d] = ya.strides[d] = L.strides[d];
      }
      lk::softmax<T>(xa, ya, axis);
      int64_t collapsed = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const auto row = row_of(ArrayView<const T>(ya), axis, r);
        T mx = 0;
        for (int64_t i = 0; i < row.n; ++i) mx = std::max(mx, row[i]);
        collapsed += mx == T(1);
      }
      FZ_CHECK(f == double(collapsed) / double(rows),
               "collapse_fraction " + str(f) + " but softmax has " + std::to_string(collapsed) + " of " +
                   std::to_string(rows) + " rows with a largest entry of 1");
    };
  }
}

// ------------------------------------------------------------------------------------------------
// Family 6: cross_entropy (int32 / int64 class indices, soft targets) with every option and extra.

template <class T, class Index>
void build_cross_entropy_t(Ctx& c, Op& op, bool forms_only) {
  Input& in = c.in;
  g_op = "cross_entropy";
  constexpr bool soft = std::is_same_v<Index, T>;
  auto a = class_args<T, Index>(c);
  lk::CrossEntropyOptions ce;
  ce.label_smoothing = forms_only ? 0.0 : in.param(0.0);
  ce.temperature = in.param(1.0);
  ce.z_loss = forms_only ? 0.0 : in.param(0.0);
  ce.softcap = forms_only ? 0.0 : in.param(0.0);
  ce.target_margin = in.param(0.0);
  ce.form = in.enum_value<lk::CrossEntropyOptions::Form>(4);
  if (forms_only && ce.form == lk::CrossEntropyOptions::Form::kCrossEntropy) ce.form = lk::CrossEntropyOptions::Form::kFocal;
  ce.form_param = in.param(forms_only ? 2.0 : 0.0);
  NOTE(ce.label_smoothing), NOTE(ce.temperature), NOTE(ce.z_loss), NOTE(ce.softcap), NOTE(ce.target_margin), NOTE(ce.form),
      NOTE(ce.form_param);
  const int rank = a.logits.L.ndim;
  const int ax = axis_ok(a.o.axis, rank) ? norm_axis(a.o.axis, rank) : rank - 1;
  const Shape batch = without_axis(Shape(a.logits.L.shape, a.logits.L.shape + rank), ax, false);
  Placed<T> lse;
  Placed<int64_t> predicted;
  if (in.flag()) lse = c.output<T>(in.perturb(batch));
  if (in.flag()) predicted = c.output<int64_t>(in.perturb(batch));
  auto z = std::make_shared<double>(-1.0), acc = std::make_shared<double>(-1.0);
  const bool want_z = in.flag(), want_acc = in.flag();
  op.call = [=] {
    lk::CrossEntropyExtras<T> ex;
    if (lse.given()) ex.lse = lse.v;
    if (predicted.given()) ex.predicted = predicted.v;
    ex.z_loss = want_z ? z.get() : nullptr;
    ex.accuracy = want_acc ? acc.get() : nullptr;
    return lk::cross_entropy<T, Index>(a.logits.v, a.target.v, a.o, ce, a.weights(), a.loss_view(), a.g, ex);
  };
  op.check = [=, &c](double v) {
    if constexpr (!soft) check_class_loss(a, v);
    if (want_acc) FZ_CHECK(std::isnan(*acc) || (*acc >= 0 && *acc <= 1), "accuracy " + str(*acc));
    const auto xv = c.pre(a.logits);
    const int axis = a.o.axis;
    for (int64_t r = 0; r < row_count(xv, axis); ++r) {
      const auto row = row_of(xv, axis, r);
      if constexpr (!soft) {
        if (lse.given() && int64_t(elem(a.target.v, r)) == a.o.ignore_index)
          FZ_CHECK(elem(lse.v, r) == 0, "lse of ignored row " + std::to_string(r) + " = " + str(elem(lse.v, r)));
      }
      if (!predicted.given() || row.n == 0) continue;
      const int64_t p = elem(predicted.v, r);
      FZ_CHECK(p >= 0 && p < row.n, "predicted " + std::to_string(p) + " in row " + std::to_string(r));
      if (ce.temperature != 1.0 || ce.softcap != 0.0 || ce.target_margin != 0.0) continue;
      int64_t best = 0;  // argmax, ties to the lowest index, NaN first
      for (int64_t i = 1; i < row.n; ++i) {
        if (std::isnan(row[best])) break;
        if (std::isnan(row[i]) || row[i] > row[best]) best = i;
      }
      FZ_CHECK(p == best, "predicted " + std::to_string(p) + " but the argmax of row " + std::to_string(r) + " is " +
                              std::to_string(best));
    }
  };
}

template <class T>
void build_cross_entropy(Ctx& c, Op& op) {
  switch (c.in.pick(3)) {
    case 0: build_cross_entropy_t<T, int32_t>(c, op, false); break;
    case 1: build_cross_entropy_t<T, int64_t>(c, op, false); break;
    default: build_cross_entropy_t<T, T>(c, op, false); break;
  }
}

// ------------------------------------------------------------------------------------------------
// Family 7: nll_loss.

template <class T, class Index>
void build_nll_t(Ctx& c, Op& op) {
  g_op = "nll_loss";
  auto a = class_args<T, Index>(c);
  op.call = [=] { return lk::nll_loss<T, Index>(a.logits.v, a.target.v, a.o, a.weights(), a.loss_view(), a.g); };
  op.check = [=, &c](double v) {
    check_class_loss(a, v);
    const auto lp = c.pre(a.logits);
    const int axis = a.o.axis;
    for (int64_t r = 0; r < count_of(a.target.v); ++r) {
      const int64_t t = int64_t(elem(a.target.v, r));
      if (a.grad.given()) {  // the gradient is 0 off the target entry
        const auto g = row_of(ArrayView<const T>(a.grad.v), axis, r);
        for (int64_t i = 0; i < g.n; ++i)
          if (i != t) FZ_CHECK(g[i] == 0, "gradient " + str(g[i]) + " at row " + std::to_string(r) + " class " + std::to_string(i));
      }
      if (a.o.reduction == lk::Reduction::kNone && a.loss.given() && !a.weight.given() && !a.sample_weight.given() && t != a.o.ignore_index) {
        const T want = -row_of(lp, axis, r)[t], got = elem(a.loss.v, r);
        FZ_CHECK(bits_of(want) == bits_of(got) || (std::isnan(want) && std::isnan(got)),
                 "row " + std::to_string(r) + " loss " + str(got) + ", -log_probs[target] " + str(want));
      }
    }
  };
}

template <class T>
void build_nll(Ctx& c, Op& op) {
  if (c.in.flag())
    build_nll_t<T, int32_t>(c, op);
  else
    build_nll_t<T, int64_t>(c, op);
}

// ------------------------------------------------------------------------------------------------
// Family 8: the other class-index losses: spherical_z_loss, fenchel_young_loss,
// stablemax_cross_entropy, cross_entropy's forms (focal, poly1, comp-sum) with a target margin.

template <class T, class Index>
void build_class_losses_t(Ctx& c, Op& op) {
  switch (c.in.pick(4)) {
    case 0: {
      g_op = "spherical_z_loss";
      auto a = class_args<T, Index>(c);
      lk::SphericalZLossOptions z;
      z.a = c.in.param(0.1);
      z.b = c.in.param(10.0);
      op.call = [=] { return lk::spherical_z_loss<T, Index>(a.logits.v, a.target.v, a.o, z, a.weights(), a.loss_view(), a.g); };
      op.check = [=](double v) { check_class_loss(a, v); };
      break;
    }
    case 1: build_fenchel_young<T, Index>(c, op); break;
    case 2: build_stablemax_ce<T, Index>(c, op); break;
    default: build_cross_entropy_t<T, Index>(c, op, true); break;
  }
}

template <class T>
void build_class_losses(Ctx& c, Op& op) {
  if (c.in.flag())
    build_class_losses_t<T, int32_t>(c, op);
  else
    build_class_losses_t<T, int64_t>(c, op);
}

// ------------------------------------------------------------------------------------------------
// Family 9: distill_loss, distill_topk_loss, distill_target_loss.

template <class T>
void check_divergence_rows(const Placed<T>& loss, lk::Reduction reduction, double scale) {
  if (!loss.given() || reduction != lk::Reduction::kNone) return;
  for (int64_t r = 0; r < count_of(loss.v); ++r) {
    const double l = double(elem(loss.v, r));
    FZ_CHECK(std::isnan(l) || l >= -tol<T>() * scale, "divergence row " + std::to_string(r) + " = " + str(l));
  }
}

template <class T, class Index>
void build_distill_t(Ctx& c, Op& op) {
  Input& in = c.in;
  const int which = in.pick(3);
  if (which == 2) {
    g_op = "distill_target_loss";
    auto a = class_args<T, Index>(c);
    auto teacher = c.input<T>(in.perturb(Shape(a.logits.L.shape, a.logits.L.shape + a.logits.L.ndim)), c.values<T>(), true);
    lk::TargetDistillOptions o;
    o.kind = in.enum_value<lk::TargetDistill>(2);
    o.temperature = in.param(4.0);
    o.alpha = in.param(1.0);
    o.beta = in.param(8.0);
    o.gamma = in.param(1.5);
    NOTE(o.kind), NOTE(o.temperature), NOTE(o.alpha), NOTE(o.beta), NOTE(o.gamma);
    op.call = [=] {
      return lk::distill_target_loss<T, Index>(a.logits.v, teacher.v, a.target.v, a.o, o,
                                               a.sample_weight.given() ? ArrayView<const T>(a.sample_weight.v) : ArrayView<const T>{},
                                               a.loss_view(), a.g);
    };
    op.check = [=](double v) { check_class_loss(a, v); };
    return;
  }
  const Shape s = in.shape(1, 3);
  const int rank = int(s.size());
  lk::LossOptions o;
  o.axis = in.axis(rank);
  o.reduction = in.enum_value<lk::Reduction>(3);
  const int ax = axis_ok(o.axis, rank) ? norm_axis(o.axis, rank) : rank - 1;
  const Shape batch = without_axis(s, ax, in.rare());
  lk::DistillOptions d;
  d.divergence = in.enum_value<lk::Divergence>(4);
  d.temperature = in.param(1.0);
  d.temperature_squared = in.flag();
  d.beta = in.param(0.5);
  NOTE(o.axis), NOTE(o.reduction), NOTE(d.divergence), NOTE(d.temperature), NOTE(d.temperature_squared), NOTE(d.beta);
  auto student = c.input<T>(s, c.values<T>(), true, true);
  Placed<T> sw, loss, grad, grad_rows;
  if (in.flag()) sw = c.input<T>(in.perturb(batch), c.values<T>(), true);
  if (o.reduction == lk::Reduction::kNone || in.rare()) loss = c.output<T>(in.perturb(batch));
  lk::LossGrad<T> g;
  if (in.flag()) {
    grad = c.output_like(student, in.perturb(s));
    g.grad = grad.v;
  }
  g.grad_output = in.param(1.0);
  if ((o.reduction == lk::Reduction::kNone && in.flag()) || in.rare()) {
    grad_rows = c.input<T>(in.perturb(batch), c.values<T>(), true);
    g.grad_output_rows = grad_rows.v;
  }
  const ArrayView<const T> swv = sw.given() ? ArrayView<const T>(sw.v) : ArrayView<const T>{};
  const double scale = d.temperature_squared && std::isfinite(d.temperature) ? std::max(1.0, d.temperature * d.temperature) : 1.0;
  if (which == 0) {
    g_op = "distill_loss";
    auto teacher = c.input<T>(in.perturb(s), c.values<T>(), true);
    op.call = [=] {
      return lk::distill_loss<T>(student.v, teacher.v, o, d, swv, loss.given() ? loss.v : ArrayView<T>{}, g);
    };
    op.check = [=](double) {
      if (!sw.given()) check_divergence_rows(loss, o.reduction, scale);
    };
    return;
  }
  g_op = "distill_topk_loss";
  const int64_t C = s[size_t(ax)];
  const int64_t k = in.iparam(std::min<int64_t>(C, 4), 0, C + 1);
  Shape ks = s;
  ks[size_t(ax)] = std::clamp<int64_t>(k, 0, 2000);
  auto lp = c.input<T>(in.perturb(ks), c.values<T>(), true);
  auto ids = c.input<Index>(in.perturb(ks), NoFill{}, true);
  {  // distinct ids in [0, C) per row, now and then a repeated or out-of-range one
    const ArrayView<Index> iv = ids.v;
    const int64_t rows = axis_ok(o.axis, iv.ndim) ? row_count(iv, o.axis) : 0;
    std::vector<int64_t> perm(size_t(std::max<int64_t>(C, 0)));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < C; ++i) perm[size_t(i)] = i;
      auto row = row_of(iv, o.axis, r);
      for (int64_t j = 0; j < row.n; ++j) {
        Index v = 0;
        if (j < C) {
          std::swap(perm[size_t(j)], perm[size_t(j + in.u8() % (C - j))]);
          v = Index(perm[size_t(j)]);
        }
        if (in.rare()) v = Index(in.iparam(0, -1, C));
        const_cast<Index*>(row.p)[j * row.step] = v;
      }
    }
  }
  op.call = [=] {
    return lk::distill_topk_loss<T, Index>(student.v, lp.v, ids.v, o, d, swv, loss.given() ? loss.v : ArrayView<T>{}, g);
  };
  op.check = [=](double) {
    if (!sw.given()) check_divergence_rows(loss, o.reduction, scale);
  };
}

template <class T>
void build_distill(Ctx& c, Op& op) {
  if (c.in.flag())
    build_distill_t<T, int32_t>(c, op);
  else
    build_distill_t<T, int64_t>(c, op);
}

// ------------------------------------------------------------------------------------------------
// Family 10: route (every option and optional view), expert_choice.

template <class T>
void build_route(Ctx& c, Op& op) {
  Input& in = c.in;
  if (in.pick(4) == 3) {
    g_op = "expert_choice";
    const Shape s = in.shape(2, 2);
    const int64_t tokens = s[0], experts = s[1];
    auto x = c.input<T>(s, c.values<T>(), true);
    const int64_t cap = in.iparam(std::min<int64_t>(tokens, 2), 0, tokens + 1);
    NOTE(cap);
    const Shape ws = {experts, std::clamp<int64_t>(cap, 0, 2000)};
    auto w = c.output<T>(in.perturb(ws));
    auto t = c.output<int32_t>(in.perturb(ws));
    op.call = [=] {
      lk::expert_choice<T>(x.v, w.v, t.v, cap);
      return 0.0;
    };
    op.check = [=](double) {
      for (int64_t e = 0; e < experts; ++e) {
        const auto tr = row_of(ArrayView<const int32_t>(t.v), -1, e);
        const auto wr = row_of(ArrayView<const T>(w.v), -1, e);
        std::vector<bool> seen(static_cast<size_t>(tokens));
        for (int64_t j = 0; j < tr.n; ++j) {
          const int32_t tok = tr[j];
          FZ_CHECK(tok >= 0 && tok < tokens && !seen[size_t(tok)],
                   "expert " + std::to_string(e) + " slot " + std::to_string(j) + " token " + std::to_string(tok));
          seen[size_t(tok)] = true;
          FZ_CHECK(std::isnan(wr[j]) || (wr[j] >= 0 && wr[j] <= 1), "weight " + str(wr[j]));
        }
      }
    };
    return;
  }
  g_op = "route";
  const Shape s = in.shape(1, 3);
  const int64_t experts = s.back();
  auto x = c.input<T>(s, c.values<T>(), true);
  const int64_t k = in.iparam(std::min<int64_t>(experts, 2), 0, experts + 1);
  lk::RouteOptions o;
  o.scoring = in.enum_value<lk::RouteScoring>(4);
  o.softcap = in.param(0.0);
  o.activation = in.enum_value<lk::RouteActivation>(4);
  o.temperature = in.param(1.0);
  o.weights_from = in.enum_value<lk::RouteWeights>(2);
  o.renormalize = in.flag();
  o.renormalize_eps = in.param(0.0);
  o.scaling_factor = in.param(1.0);
  {
    std::vector<int64_t> divisors;
    for (int64_t d = 1; d <= experts; ++d)
      if (experts % d == 0) divisors.push_back(d);
    const uint8_t b = in.u8();
    if (b >= 128 && !divisors.empty()) o.n_group = divisors[b % divisors.size()];
    if (b >= 248) o.n_group = in.iparam(1, -1, experts + 1);
    o.topk_group = in.flag() ? 0 : in.iparam(0, 0, o.n_group);
  }
  o.group_score = in.enum_value<lk::GroupScore>(2);
  o.noise = in.enum_value<lk::RouteNoise>(4);
  o.noise_std = in.param(1.0);
  o.seed = in.raw<uint64_t>();
  NOTE(k), NOTE(o.scoring), NOTE(o.softcap), NOTE(o.activation), NOTE(o.temperature), NOTE(o.weights_from),
      NOTE(o.renormalize), NOTE(o.renormalize_eps), NOTE(o.scaling_factor), NOTE(o.n_group), NOTE(o.topk_group),
      NOTE(o.group_score), NOTE(o.noise), NOTE(o.noise_std), NOTE(o.seed);
  Shape ks = s;
  ks.back() = std::clamp<int64_t>(k, 0, 2000);
  auto w = c.output<T>(in.perturb(ks));
  auto ids = c.output<int32_t>(in.perturb(ks));
  Placed<T> bias, nstd;
  Placed<uint8_t> mask, force;
  if (in.flag()) bias = c.input<T>(in.perturb({experts}), c.values<T>(), true);
  switch (in.pick(3)) {
    case 1: mask = c.input<uint8_t>(in.perturb({experts}), MaskFill{&in, in.pick(4)}, true); break;
    case 2: mask = c.input<uint8_t>(in.perturb(s), MaskFill{&in, in.pick(4)}, true); break;
    default: break;
  }
  switch (in.pick(3)) {
    case 1: force = c.input<uint8_t>(in.perturb({experts}), MaskFill{&in, 1}, true); break;
    case 2: force = c.input<uint8_t>(in.perturb(s), MaskFill{&in, 1}, true); break;
    default: break;
  }
  switch (in.pick(3)) {
    case 1: nstd = c.input<T>(in.perturb({experts}), c.values<T>(), true); break;
    case 2: nstd = c.input<T>(in.perturb(s), c.values<T>(), true); break;
    default: break;
  }
  op.call = [=] {
    lk::route<T>(x.v, w.v, ids.v, k, o, bias.given() ? ArrayView<const T>(bias.v) : ArrayView<const T>{},
                 mask.given() ? ArrayView<const uint8_t>(mask.v) : ArrayView<const uint8_t>{},
                 force.given() ? ArrayView<const uint8_t>(force.v) : ArrayView<const uint8_t>{},
                 nstd.given() ? ArrayView<const T>(nstd.v) : ArrayView<const T>{});
    return 0.0;
  };
  op.check = [=, &c](double) {
    const ArrayView<const int32_t> iv = ids.v;
    const ArrayView<const T> wv = w.v;
    const int64_t tokens = row_count(iv, -1);
    const bool plain = o.temperature == 1.0 && o.noise == lk::RouteNoise::kNone;
    const auto xv = c.pre(x);
    for (int64_t r = 0; r < tokens; ++r) {
      const auto xr = row_of(xv, -1, r);
      bool row_has_inf = false;
      for (int64_t e = 0; e < xr.n; ++e) row_has_inf |= std::isinf(xr[e]);
      const auto ir = row_of(iv, -1, r);
      const auto wr = row_of(wv, -1, r);
      std::vector<bool> seen(static_cast<size_t>(experts));
      for (int64_t j = 0; j < ir.n; ++j) {
        const int32_t e = ir[j];
        FZ_CHECK(e >= 0 && e < experts && !seen[size_t(e)],
                 "token " + std::to_string(r) + " slot " + std::to_string(j) + " expert " + std::to_string(e) + " of " +
                     std::to_string(experts));
        seen[size_t(e)] = true;
        // Documented: a NaN logit gets weight 0, and so does -inf. (+inf gives NaN, as torch's softmax.)
        if (plain && !row_has_inf)
          FZ_CHECK(!std::isnan(wr[j]), "token " + std::to_string(r) + " slot " + std::to_string(j) + " weight NaN");
      }
      if (!force.given()) continue;
      // forced experts come first
      const ArrayView<const uint8_t> fv = force.v;
      const auto fr = fv.ndim == 1 ? RowRef<uint8_t>{fv.data, fv.strides[0], fv.shape[0]} : row_of(fv, -1, r);
      int64_t forced = 0;
      for (int64_t e = 0; e < fr.n; ++e) forced += fr[e] != 0;
      for (int64_t j = 0; j < std::min(forced, ir.n); ++j)
        FZ_CHECK(fr[ir[j]] != 0, "token " + std::to_string(r) + ": slot " + std::to_string(j) + " holds unforced expert " +
                                     std::to_string(ir[j]) + " while " + std::to_string(forced) + " are forced");
    }
  };
}

// ------------------------------------------------------------------------------------------------
// Family 11: MoE data movement and losses.

struct PlanViews {
  Placed<int64_t> counts, kept, offsets;
  Placed<int32_t> position, slot_token, slot_pair, block_expert;
  lk::DispatchPlanView view() const {
    return {counts.v, kept.v, offsets.v, position.v, slot_token.v, slot_pair.v, block_expert.v};
  }
};

template <class T>
void check_plan(const PlanViews& p, const ArrayView<const int32_t>& experts, int64_t E, int64_t capacity, int64_t block,
                int64_t bound, int64_t P) {
  if (experts.ndim != 2) return;
  const int64_t tokens = experts.shape[0], k = experts.shape[1];  // as accepted
  FZ_CHECK(P >= 0 && P <= bound, "P " + std::to_string(P) + " bound " + std::to_string(bound));
  FZ_CHECK(elem(p.offsets.v, 0) == 0 && elem(p.offsets.v, E) == P, "offsets ends");
  std::vector<int64_t> hist(static_cast<size_t>(E)), kept_seen(static_cast<size_t>(E));
  for (int64_t i = 0; i < tokens * k; ++i) hist[size_t(elem(experts, i))]++;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = elem(p.counts.v, e), kept = elem(p.kept.v, e);
    const int64_t lo = elem(p.offsets.v, e), hi = elem(p.offsets.v, e + 1);
    const std::string where = "expert " + std::to_string(e);
    FZ_CHECK(n == hist[size_t(e)], where + " count " + std::to_string(n) + " != " + std::to_string(hist[size_t(e)]));
    FZ_CHECK(kept == (capacity < 0 ? n : std::min(n, capacity)), where + " kept " + std::to_string(kept));
    FZ_CHECK(__int128(hi) - lo == (__int128(kept) + block - 1) / block * block, where + " segment [" + std::to_string(lo) + ", " + std::to_string(hi) + ")");
    for (int64_t s = lo + kept; s < hi; ++s)
      FZ_CHECK(elem(p.slot_token.v, s) == -1 && elem(p.slot_pair.v, s) == -1, where + " padding slot " + std::to_string(s));
    for (int64_t s = lo; s < hi; s += block) FZ_CHECK(elem(p.block_expert.v, s / block) == e, where + " block");
  }
  for (int64_t i = 0; i < tokens * k; ++i) {
    const int32_t pos = elem(p.position.v, i);
    const int64_t e = elem(experts, i);
    if (pos == -1) continue;
    kept_seen[size_t(e)]++;
    FZ_CHECK(pos >= elem(p.offsets.v, e) && pos < elem(p.offsets.v, e) + elem(p.kept.v, e),
             "pair " + std::to_string(i) + " slot " + std::to_string(pos));
    FZ_CHECK(elem(p.slot_pair.v, pos) == i && elem(p.slot_token.v, pos) == i / k, "slot " + std::to_string(pos));
  }
  for (int64_t e = 0; e < E; ++e) FZ_CHECK(kept_seen[size_t(e)] == elem(p.kept.v, e), "expert " + std::to_string(e) + " positions");
}

template <class T>
void build_moe(Ctx& c, Op& op) {
  Input& in = c.in;
  const int which = in.pick(11);
  switch (which) {
    case 0:
    case 1: {  // dispatch, then (1) permute and unpermute of its plan
      g_op = which == 0 ? "dispatch" : "dispatch+permute+unpermute";
      const int64_t tokens = in.small_extent(90), k = in.small_extent(5), E = in.iparam(4, 0, 17);
      const int64_t hidden = in.small_extent(40);
      auto experts = c.input<int32_t>(in.perturb({tokens, k}), IntFill<int32_t>{&in, 0, (E > 0 ? E - 1 : 0)}, true);
      lk::DispatchOptions d;
      d.capacity = in.iparam(-1, -2, 24);
      d.capacity_factor = in.param(0.0);
      d.min_capacity = in.iparam(4, -1, 10);
      d.drop_policy = in.enum_value<lk::DropPolicy>(2);
      d.block_size = in.iparam(1, 0, 9);
      NOTE(E), NOTE(d.capacity), NOTE(d.capacity_factor), NOTE(d.min_capacity), NOTE(d.drop_policy), NOTE(d.block_size);
      int64_t bound = 0;
      try {
        bound = lk::dispatch_slot_bound(tokens * k, E, d.block_size);
      } catch (const lk::Error&) {
        bound = tokens * k;
      }
      if (bound < 0 || bound > (int64_t{1} << 16)) bound = tokens * k;
      const int64_t nblocks = d.block_size > 0 ? bound / d.block_size : bound;
      const int64_t Es = std::clamp<int64_t>(E, 0, 1 << 16);
      PlanViews p;
      p.counts = c.output<int64_t>(in.perturb({Es}));
      p.kept = c.output<int64_t>(in.perturb({Es}));
      p.offsets = c.output<int64_t>(in.perturb({Es + 1}));
      p.position = c.output<int32_t>(in.perturb({tokens, k}));
      p.slot_token = c.output<int32_t>(in.perturb({bound}));
      p.slot_pair = c.output<int32_t>(in.perturb({bound}));
      p.block_expert = c.output<int32_t>(in.perturb({nblocks}));
      Placed<T> w;
      if (d.drop_policy == lk::DropPolicy::kProbs || in.flag()) w = c.input<T>(in.perturb({tokens, k}), c.values<T>(), true);
      const ArrayView<const T> wv = w.given() ? ArrayView<const T>(w.v) : ArrayView<const T>{};
      if (which == 0) {
        op.call = [=] { return double(lk::dispatch<T>(experts.v, E, d, p.view(), wv)); };
        op.check = [=](double P) {
          const int64_t cap = lk::dispatch_capacity(tokens, k, E, d);
          check_plan<T>(p, experts.v, E, cap, std::max<int64_t>(d.block_size, 1), bound, int64_t(P));
        };
        return;
      }
      // Run the dispatch now: the permuted buffers are sized by its P.
      int64_t P = 0;
      c.take_snapshot();
      try {
        P = lk::dispatch<T>(experts.v, E, d, p.view(), wv);
      } catch (const lk::Error&) {
        return;
      }
      c.check_untouched();
      if (!w.given()) return;
      const int64_t pad = in.small_extent(3);
      Layout hl = contiguous_layout({tokens, hidden});
      if (tokens > 0) hl.strides[0] = hidden + pad;
      finish_layout(hl);
      auto h = c.input<T>({tokens, hidden}, c.values<T>(), false, false, &hl);
      std::vector<int32_t> st(static_cast<size_t>(P));
      for (int64_t s = 0; s < P; ++s) st[size_t(s)] = elem(p.slot_token.v, s);
      const Layout sl = contiguous_layout({P});
      auto slot_token = c.input<int32_t>({P}, NoFill{}, false, false, &sl);
      std::copy(st.begin(), st.end(), slot_token.v.data);
      auto pe = c.output_fixed<T>(contiguous_layout({P, hidden}));
      auto out = c.output<T>(in.perturb({tokens, hidden}));
      const int64_t es = int64_t(sizeof(T));
      op.call = [=] {
        lk::permute(h.v.data, tokens, (hidden + pad) * es, slot_token.v, pe.v.data, hidden * es, hidden * es);
        lk::unpermute<T>(pe.v, p.position.v, w.v, out.v);
        return 0.0;
      };
      op.check = [=, &c](double) {
        const auto hv = c.pre(h);
        for (int64_t s = 0; s < P; ++s) {
          const int32_t t = st[size_t(s)];
          for (int64_t i = 0; i < hidden; ++i) {
            const T want = t < 0 ? T(0) : hv.data[t * hv.strides[0] + i];
            FZ_CHECK(bits_of(pe.v.data[s * hidden + i]) == bits_of(want), "permuted slot " + std::to_string(s));
          }
        }
      };
      return;
    }
    case 2: {
      g_op = "expert_counts";
      const int64_t E = in.iparam(4, 0, 17);
      auto experts = c.input<int32_t>(in.shape(1, 3), IntFill<int32_t>{&in, 0, (E > 0 ? E - 1 : 0)}, true);
      auto counts = c.output<int64_t>(in.perturb({std::clamp<int64_t>(E, 0, 1 << 16)}));
      op.call = [=] {
        lk::expert_counts(experts.v, E, counts.v);
        return 0.0;
      };
      op.check = [=](double) {
        std::vector<int64_t> hist(static_cast<size_t>(E));
        for (int64_t i = 0; i < count_of(experts.v); ++i) hist[size_t(elem(experts.v, i))]++;
        for (int64_t e = 0; e < E; ++e) FZ_CHECK(elem(counts.v, e) == hist[size_t(e)], "expert " + std::to_string(e));
      };
      return;
    }
    case 3: {
      g_op = "permute";
      const int64_t tokens = in.small_extent(40), slots = in.small_extent(60);
      const int64_t row_bytes = in.rare() ? -1 : in.small_extent(70);
      const int64_t rs = std::max<int64_t>(row_bytes, 0) + in.small_extent(9), ors = std::max<int64_t>(row_bytes, 0) + in.small_extent(9);
      const int64_t rb = std::max<int64_t>(row_bytes, 0);
      auto st = c.input<int32_t>({slots}, IntFill<int32_t>{&in, -1, tokens - 1}, true);
      Layout hl = contiguous_layout({tokens == 0 ? 0 : (tokens - 1) * rs + rb});
      auto h = c.input<uint8_t>({hl.shape[0]}, MaskFill{&in, 3}, false, false, &hl);
      Layout ol = contiguous_layout({slots == 0 ? 0 : (slots - 1) * ors + rb});
      Placed<uint8_t> out;
      out.L = ol;
      out.r = c.region(1, size_t(ol.span));
      c.set_view(out);
      for (int64_t s = 0; s < slots; ++s)
        for (int64_t b = 0; b < rb; ++b) out.r->writable[size_t(s * ors + b)] = 1;
      op.call = [=] {
        lk::permute(h.v.data, tokens, rs, st.v, out.v.data, ors, row_bytes);
        return 0.0;
      };
      op.check = [=](double) {
        for (int64_t s = 0; s < slots; ++s) {
          const int32_t t = elem(st.v, s);
          for (int64_t b = 0; b < rb; ++b)
            FZ_CHECK(out.v.data[s * ors + b] == (t < 0 ? 0 : h.v.data[t * rs + b]), "slot " + std::to_string(s));
        }
      };
      return;
    }
    case 4: {
      g_op = "unpermute";
      const int64_t slots = in.small_extent(60), hidden = in.small_extent(40), tokens = in.small_extent(40), k = in.small_extent(4);
      auto eo = c.input<T>(in.perturb({slots, hidden}), c.values<T>(), true);
      auto pos = c.input<int32_t>(in.perturb({tokens, k}), IntFill<int32_t>{&in, -1, slots - 1}, true);
      auto w = c.input<T>(in.perturb({tokens, k}), c.values<T>(), true);
      auto out = c.output<T>(in.perturb({tokens, hidden}));
      op.call = [=] {
        lk::unpermute<T>(eo.v, pos.v, w.v, out.v);
        return 0.0;
      };
      op.check = [=](double) {
        if (out.v.ndim != 2 || pos.v.ndim != 2) return;
        const int64_t tokens = out.v.shape[0], hidden = out.v.shape[1], k = pos.v.shape[1];  // as accepted
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t i = 0; i < hidden; ++i) {
            double ref = 0, mag = 0;
            for (int64_t j = 0; j < k; ++j) {
              const int32_t s = elem(pos.v, t * k + j);
              if (s < 0) continue;
              const double term = double(elem(w.v, t * k + j)) * double(elem(eo.v, s * hidden + i));
              ref += term;
              mag += std::abs(term);
            }
            const double got = double(elem(out.v, t * hidden + i));
            if (std::isfinite(mag) && std::isfinite(got))
              FZ_CHECK(std::abs(got - ref) <= 8 * std::numeric_limits<T>::epsilon() * mag + 1e-300 ||
                           std::abs(got - ref) <= 4 * double(std::numeric_limits<T>::denorm_min()) * double(k),
                       "token " + std::to_string(t) + " element " + std::to_string(i) + ": " + str(got) + " vs " + str(ref));
          }
      };
      return;
    }
    case 5:
    case 6:
    case 7: {
      const Shape s = in.shape(2, 2);
      const int64_t tokens = s[0], E = s[1], k = in.small_extent(4);
      auto x = c.input<T>(s, c.values<T>(), true, true);
      auto ids = c.input<int32_t>(in.perturb({tokens, k}), IntFill<int32_t>{&in, 0, (E > 0 ? E - 1 : 0)}, true);
      Placed<T> grad;
      if (in.flag()) grad = c.output_like(x, in.perturb(s));
      const ArrayView<T> gv = grad.given() ? grad.v : ArrayView<T>{};
      const double go = in.param(1.0), alpha = in.param(0.01);
      if (which == 5) {
        g_op = "load_balancing_loss";
        const auto norm = in.enum_value<lk::BalanceNormalization>(2);
        op.call = [=] { return lk::load_balancing_loss<T>(x.v, ids.v, norm, alpha, gv, go); };
      } else if (which == 6) {
        g_op = "sequence_balance_loss";
        const int64_t seq = in.iparam(std::max<int64_t>(tokens, 1), 0, tokens + 1);
        op.call = [=] { return lk::sequence_balance_loss<T>(x.v, ids.v, seq, alpha, gv, go); };
      } else {
        g_op = "router_z_loss";
        op.call = [=] { return lk::router_z_loss<T>(x.v, gv, go); };
        op.check = [=](double v) { FZ_CHECK(std::isnan(v) || v >= 0, "router_z_loss " + str(v)); };
      }
      return;
    }
    case 8: {
      g_op = "contrastive_logits";
      const Shape s = in.shape(1, 3);
      auto strong = c.input<T>(s, c.values<T>(), true, true);
      auto weak = c.input<T>(in.perturb(s), c.values<T>(), true, true);
      auto out = c.output_like(in.flag() ? strong : weak, in.perturb(s));
      const double beta = in.param(0.5), alpha = in.param(0.1);
      op.call = [=] {
        lk::contrastive_logits<T>(strong.v, weak.v, out.v, beta, alpha);
        return 0.0;
      };
      return;
    }
    case 9: {
      g_op = "update_bias";
      const int64_t E = in.extent();
      auto bias = c.input<T>({E}, c.values<T>(), false);
      c.mark(bias);
      auto counts = c.input<int64_t>(in.perturb({E}), IntFill<int64_t>{&in, 0, 200}, true);
      const double rate = in.param(1e-3);
      op.call = [=] {
        lk::update_bias<T>(bias.v, counts.v, rate);
        return 0.0;
      };
      return;
    }
    default: {
      g_op = "dispatch_capacity/dispatch_slot_bound";
      const int64_t tokens = in.iparam(64, 0, 100), k = in.iparam(2, 0, 8), E = in.iparam(8, 0, 64);
      lk::DispatchOptions d;
      d.capacity = in.iparam(-1, -2, 100);
      d.capacity_factor = in.param(1.25);
      d.min_capacity = in.iparam(4, -1, 10);
      d.block_size = in.iparam(1, 0, 64);
      int64_t tk = 0;
      if (__builtin_mul_overflow(tokens, k, &tk)) tk = INT64_MAX;
      const int64_t pairs = in.iparam(tk, 0, 1000);
      op.call = [=] {
        const int64_t cap = lk::dispatch_capacity(tokens, k, E, d);
        FZ_CHECK(cap >= -1, "capacity " + std::to_string(cap));
        const int64_t bound = lk::dispatch_slot_bound(pairs, E, d.block_size);
        if (pairs >= 0 && E >= 0) FZ_CHECK(bound >= pairs, "bound " + std::to_string(bound) + " < pairs " + std::to_string(pairs));
        return double(cap);
      };
      return;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Family 12: gemm against a float64 reference.

template <class E, class F>
bool views_overlap(const Placed<E>& a, const Placed<F>& b) {
  if (a.r != b.r) return false;
  std::vector<uint8_t> in_a(a.r->count);
  for_each_offset(a.L, [&](int64_t off) { in_a[size_t(a.start + a.L.base + off)] = 1; });
  bool hit = false;
  for_each_offset(b.L, [&](int64_t off) { hit |= in_a[size_t(b.start + b.L.base + off)] != 0; });
  return hit;
}

template <class T>
void build_gemm(Ctx& c, Op& op) {
  Input& in = c.in;
  g_op = "gemm";
  const int64_t M = in.small_extent(80), N = in.small_extent(80), K = in.small_extent(80);
  auto a = c.input<T>(in.perturb({M, K}), c.values<T>(), true, true);
  auto b = c.input<T>(in.perturb({K, N}), c.values<T>(), true, true);
  lk::GemmOptions g;
  g.alpha = in.param(1.0);
  g.accumulate = in.flag();
  NOTE(g.alpha), NOTE(g.accumulate);
  Placed<T> cc;
  const Shape cs = in.perturb({M, N});
  switch (in.pick(4)) {
    case 0: cc = c.output_like(a, cs); break;
    case 1: cc = c.output_like(b, cs); break;
    default: cc = g.accumulate ? c.output<T>(cs, c.values<T>()) : c.output<T>(cs); break;
  }
  op.call = [=] {
    lk::gemm<T>(a.v, b.v, cc.v, g);
    return 0.0;
  };
  op.check = [=, &c](double) {
    FZ_CHECK(!views_overlap(a, cc) && !views_overlap(b, cc), "gemm accepted a c that overlaps a or b");
    const auto av = c.pre(a), bv = c.pre(b), c0 = c.pre(cc);
    if (av.ndim != 2 || cc.v.ndim != 2) return;
    const int64_t M = cc.v.shape[0], N = cc.v.shape[1], K = av.shape[1];  // the accepted shapes
    if (!std::isfinite(g.alpha)) return;
    const double eps = std::numeric_limits<T>::epsilon();
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double ref = 0, mag = 0;
        for (int64_t l = 0; l < K; ++l) {
          const double p = double(av.data[i * av.strides[0] + l * av.strides[1]]) * double(bv.data[l * bv.strides[0] + j * bv.strides[1]]);
          ref += p;
          mag += std::abs(p);
        }
        // A B itself must fit in T: alpha 0 times an overflowed A B is NaN, as in any gemm that forms A B.
        if (!std::isfinite(mag) || mag > double(std::numeric_limits<T>::max()) / 4) continue;
        ref *= g.alpha;
        mag *= std::abs(g.alpha);
        if (g.accumulate) {
          const double c_old = double(c0.data[i * c0.strides[0] + j * c0.strides[1]]);
          ref += c_old;
          mag += std::abs(c_old);
        }
        const double got = double(cc.v.data[i * cc.v.strides[0] + j * cc.v.strides[1]]);
        if (!std::isfinite(mag) || mag > double(std::numeric_limits<T>::max()) / 4) continue;
        const double tiny = 8 * double(std::numeric_limits<T>::denorm_min()) * double(K + 1) * std::max(1.0, std::abs(g.alpha));
        FZ_CHECK(std::abs(got - ref) <= 2 * eps * double(K + 3) * mag + tiny,
                 "c[" + std::to_string(i) + ", " + std::to_string(j) + "] = " + str(got) + ", reference " + str(ref) +
                     " (M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K) + ")");
      }
  };
}

// ------------------------------------------------------------------------------------------------
// Family 13: linear_cross_entropy (float, double) and linear_cross_entropy_bf16.

template <class T, class Index, bool kBf16>
void build_lce_t(Ctx& c, Op& op) {
  Input& in = c.in;
  g_op = kBf16 ? "linear_cross_entropy_bf16" : "linear_cross_entropy";
  using In = std::conditional_t<kBf16, uint16_t, T>;
  const int64_t N = in.small_extent(40), D = in.small_extent(70);
  int64_t V = in.extent();
  while (V * std::max<int64_t>(D, 1) > 16384) V /= 2;
  Placed<In> x, w;
  if constexpr (kBf16) {
    x = c.input<In>(in.perturb({N, D}), Bf16Fill{&in, in.pick(3), in.pick(13) - 6}, true);
    w = c.input<In>(in.perturb({V, D}), Bf16Fill{&in, in.pick(3), in.pick(13) - 6}, true);
  } else {
    x = c.input<In>(in.perturb({N, D}), c.values<T>(), true);
    w = c.input<In>(in.perturb({V, D}), c.values<T>(), true);
  }
  lk::LossOptions o;
  o.reduction = in.enum_value<lk::Reduction>(3);
  o.ignore_index = in.iparam(-100, -2, 3);
  if (in.rare()) o.axis = in.axis(1);
  auto target = c.input<Index>(in.perturb({N}), IndexFill<Index>{&in, V, o.ignore_index}, true);
  Placed<T> bias, weight, sw, loss, gx, gw, gb, grows;
  if (in.flag()) bias = c.input<T>(in.perturb({V}), c.values<T>(), true);
  lk::LinearCrossEntropyOptions lo;
  lo.label_smoothing = in.param(0.0);
  lo.z_loss = in.param(0.0);
  lo.softcap = in.param(0.0);
  lo.filter_eps = in.param(0.0);
  lo.accumulate = in.flag();
  lo.chunk_rows = in.iparam(0, 0, N + 2);
  NOTE(o.reduction), NOTE(o.ignore_index), NOTE(o.axis), NOTE(lo.label_smoothing), NOTE(lo.z_loss), NOTE(lo.softcap),
      NOTE(lo.filter_eps), NOTE(lo.accumulate), NOTE(lo.chunk_rows);
  if (in.flag()) weight = c.input<T>(in.perturb({V}), c.values<T>(), true);
  if (in.flag()) sw = c.input<T>(in.perturb({N}), c.values<T>(), true);
  if (o.reduction == lk::Reduction::kNone || in.rare()) loss = c.output<T>(in.perturb({N}));
  auto grad_out = [&](const Shape& s) { return lo.accumulate ? c.output<T>(s, c.values<T>()) : c.output<T>(s); };
  if (in.flag()) gx = grad_out(in.perturb({N, D}));
  if (in.flag()) gw = grad_out(in.perturb({V, D}));
  if (in.flag()) gb = grad_out(in.perturb({V}));
  lk::LinearCrossEntropyGrads<T> grads;
  if (gx.given()) grads.input = gx.v;
  if (gw.given()) grads.linear_weight = gw.v;
  if (gb.given()) grads.linear_bias = gb.v;
  grads.grad_output = in.param(1.0);
  if ((o.reduction == lk::Reduction::kNone && in.flag()) || in.rare()) {
    grows = c.input<T>(in.perturb({N}), c.values<T>(), true);
    grads.grad_output_rows = grows.v;
  }
  lk::LossWeights<T> lw;
  if (weight.given()) lw.weight = weight.v;
  if (sw.given()) lw.sample_weight = sw.v;
  auto stats = std::make_shared<lk::LinearCrossEntropyStats>();
  const bool want_stats = in.flag();
  op.call = [=] {
    *stats = {};
    const lk::InputView<T> bv = bias.given() ? lk::InputView<T>(bias.v) : lk::InputView<T>{};
    const ArrayView<T> lv = loss.given() ? loss.v : ArrayView<T>{};
    if constexpr (kBf16)
      return lk::linear_cross_entropy_bf16<Index>(x.v, w.v, target.v, bv, o, lo, lw, lv, grads, want_stats ? stats.get() : nullptr);
    else
      return lk::linear_cross_entropy<T, Index>(x.v, w.v, target.v, bv, o, lo, lw, lv, grads, want_stats ? stats.get() : nullptr);
  };
  op.check = [=, &c](double v) {
    bool w_finite = true;  // d_input = d_logits @ linear_weight: an ignored row's zeros times inf are NaN
    const auto wv = c.pre(w);
    for (int64_t i = 0; i < count_of(wv); ++i) {
      const In e = elem(wv, i);
      if constexpr (kBf16)
        w_finite &= (e & 0x7F80) != 0x7F80;
      else
        w_finite &= std::isfinite(e);
    }
    if (want_stats) {
      FZ_CHECK(stats->skipped >= 0 && stats->skipped <= stats->blocks,
               "stats " + std::to_string(stats->skipped) + " of " + std::to_string(stats->blocks));
      if (lo.filter_eps == 0) FZ_CHECK(stats->skipped == 0, "filter_eps 0 skipped " + std::to_string(stats->skipped));
    }
    double sum = 0, abs_sum = 0;
    bool finite = true;
    const int64_t N = count_of(target.v), D = x.v.ndim == 2 ? x.v.shape[1] : 0;  // as accepted
    for (int64_t r = 0; r < N; ++r) {
      const bool ignored = int64_t(elem(target.v, r)) == o.ignore_index;
      if (loss.given() && o.reduction == lk::Reduction::kNone) {
        const double l = double(elem(loss.v, r));
        finite &= std::isfinite(l);
        sum += l;
        abs_sum += std::abs(l);
        if (ignored) FZ_CHECK(l == 0, "ignored row " + std::to_string(r) + " loss " + str(l));
      }
      if (ignored && gx.given() && !lo.accumulate && w_finite)  // else 0 * inf: NaN, as torch
        for (int64_t i = 0; i < D; ++i)
          FZ_CHECK(elem(gx.v, r * D + i) == 0, "ignored row " + std::to_string(r) + " d_input " + str(elem(gx.v, r * D + i)));
    }
    if (o.reduction == lk::Reduction::kNone && finite && std::isfinite(v))
      FZ_CHECK(std::abs(v - sum) <= 1e-5 * abs_sum + double(N) * double(std::numeric_limits<T>::denorm_min()),
               "none returned " + str(v) + ", rows sum to " + str(sum));
  };
}

template <class T>
void build_lce(Ctx& c, Op& op) {
  const int which = c.in.pick(3);
  const bool i32 = c.in.flag();
  if (which == 2 && std::is_same_v<T, float>) {
    if (i32)
      build_lce_t<float, int32_t, true>(c, op);
    else
      build_lce_t<float, int64_t, true>(c, op);
  } else if (i32) {
    build_lce_t<T, int32_t, false>(c, op);
  } else {
    build_lce_t<T, int64_t, false>(c, op);
  }
}

// ------------------------------------------------------------------------------------------------
// Family 14: vexp, vlog, vlog1p.

template <class T>
void build_math(Ctx& c, Op& op) {
  Input& in = c.in;
  const int which = in.pick(3);
  const char* names[] = {"vexp", "vlog", "vlog1p"};
  g_op = names[which];
  const int64_t n = in.extent();
  const Layout L = contiguous_layout({n});
  auto x = c.input<T>({n}, c.values<T>(), false, true, &L);
  Placed<T> y;
  if (x.alias == 4) {
    y = x;
    c.mark(y);
  } else {
    y = c.output_fixed<T>(L);
  }
  op.call = [=] {
    if (which == 0) lk::vexp(x.v.data, y.v.data, size_t(n));
    if (which == 1) lk::vlog(x.v.data, y.v.data, size_t(n));
    if (which == 2) lk::vlog1p(x.v.data, y.v.data, size_t(n));
    return 0.0;
  };
  op.check = [=, &c](double) {
    const auto xv = c.pre(x);
    const T inf = std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      const T a = xv.data[i], r = y.v.data[i];
      const std::string where = std::string(names[which]) + "(" + str(a) + ") = " + str(r);
      if (std::isnan(a)) {
        FZ_CHECK(std::isnan(r), where);
        continue;
      }
      if (which == 0) {
        FZ_CHECK(!std::isnan(r) && r >= 0, where);
        if (a == inf) FZ_CHECK(r == inf, where);
        if (a == -inf) FZ_CHECK(r == 0, where);
        const double ref = std::exp(double(a));
        if (std::isfinite(ref) && ref >= double(std::numeric_limits<T>::min()) && ref <= double(std::numeric_limits<T>::max()) / 2)
          FZ_CHECK(std::abs(double(r) - ref) <= 4 * std::numeric_limits<T>::epsilon() * ref, where);
      } else {
        const T lo = which == 1 ? T(0) : T(-1);
        if (a < lo) FZ_CHECK(std::isnan(r), where);
        if (a == lo) FZ_CHECK(r == -inf, where);
        if (a > lo) FZ_CHECK(!std::isnan(r), where);
        if (a == inf) FZ_CHECK(r == inf, where);
      }
    }
  };
}

// ------------------------------------------------------------------------------------------------

using Builder = void (*)(Ctx&, Op&);
struct Family {
  const char* name;
  Builder f32, f64;
};
#define LK_FAMILY(name, fn) {name, &fn<float>, &fn<double>}
const Family kFamilies[] = {
    LK_FAMILY("softmax", build_softmax),
    LK_FAMILY("masked_softmax", build_masked),
    LK_FAMILY("softmax_backward", build_softmax_backward),
    LK_FAMILY("sparsemax", build_sparsemax),
    LK_FAMILY("stablemax", build_stablemax),
    LK_FAMILY("entropy", build_entropy),
    LK_FAMILY("cross_entropy", build_cross_entropy),
    LK_FAMILY("nll_loss", build_nll),
    LK_FAMILY("class_losses", build_class_losses),
    LK_FAMILY("distill", build_distill),
    LK_FAMILY("route", build_route),
    LK_FAMILY("moe", build_moe),
    LK_FAMILY("gemm", build_gemm),
    LK_FAMILY("linear_cross_entropy", build_lce),
    LK_FAMILY("math", build_math),
};
#undef LK_FAMILY
constexpr int kNumFamilies = sizeof(kFamilies) / sizeof(kFamilies[0]);

struct Outcome {
  bool threw = false;
  std::string argument;
  double value = 0;
};

Outcome invoke(const Op& op) {
  Outcome o;
  try {
    o.value = op.call();
  } catch (const lk::Error& e) {
    o.threw = true;
    o.argument = e.argument();
    FZ_CHECK(!e.argument().empty(), std::string("an Error that names no argument: ") + e.what());
  } catch (const std::exception& e) {
    fail(__FILE__, __LINE__, "only logitkit::Error", std::string("unexpected exception: ") + e.what());
  }
  return o;
}

// Filters for focused runs; an input outside them returns at once, so that every input (crash
// files included) decodes the same with or without them and reproduces without the variables.
//   LOGITKIT_FUZZ_FAMILY=name|number  only inputs whose byte 0 picks that family
//   LOGITKIT_FUZZ_ISA=name[,name...]  only inputs that draw one of these ISAs
int g_only_family = -1;
std::vector<bool> g_isa_allowed;

const std::vector<std::string>& isa_list() {
  static const std::vector<std::string> isas = lk::available_isas();
  return isas;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_verbose = std::getenv("LOGITKIT_FUZZ_VERBOSE") != nullptr;
  if (const char* f = std::getenv("LOGITKIT_FUZZ_FAMILY")) {
    for (int i = 0; i < kNumFamilies; ++i)
      if (std::strcmp(f, kFamilies[i].name) == 0) g_only_family = i;
    if (g_only_family < 0 && *f >= '0' && *f <= '9') g_only_family = std::atoi(f) % kNumFamilies;
    if (g_only_family < 0) {
      std::fprintf(stderr, "LOGITKIT_FUZZ_FAMILY=%s: no such family; one of:", f);
      for (const auto& fam : kFamilies) std::fprintf(stderr, " %s", fam.name);
      std::fprintf(stderr, "\n");
      std::exit(2);
    }
  }
  const auto& isas = isa_list();
  g_isa_allowed.assign(isas.size(), true);
  if (const char* env = std::getenv("LOGITKIT_FUZZ_ISA")) {
    const std::string list = "," + std::string(env) + ",";
    bool any = false;
    for (size_t i = 0; i < isas.size(); ++i) {
      g_isa_allowed[i] = list.find("," + isas[i] + ",") != std::string::npos;
      any |= g_isa_allowed[i];
    }
    if (!any) {
      std::fprintf(stderr, "LOGITKIT_FUZZ_ISA=%s names none of the available ISAs\n", env);
      std::exit(2);
    }
  }
  lk::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int family = data[0] % kNumFamilies;
  if (g_only_family >= 0 && family != g_only_family) return 0;
  Input in(data + 1, size - 1);
  const auto& isas = isa_list();
  const size_t isa_index = size_t(in.pick(int(isas.size())));
  if (!g_isa_allowed[isa_index]) return 0;
  lk::set_isa(isas[isa_index]);
  const uint8_t run = in.u8();
  const bool dbl = in.flag();
  g_family = kFamilies[family].name;
  g_op = "?";
  g_notes.clear();
  Ctx ctx(in);
  Op op;
  (dbl ? kFamilies[family].f64 : kFamilies[family].f32)(ctx, op);
  if (!op.call) return 0;
  ctx.take_snapshot();
  if (g_verbose) {
    std::fprintf(stderr, "==logitkit-fuzz== %s / %s<%s> on %s, threads 1%s\n%s", g_family, g_op, dbl ? "double" : "float",
                 lk::isa(), (run & 3) == 3 ? ((run >> 2) & 1 ? " then 3" : " then 2") : "", g_notes.c_str());
    for (auto& d : ctx.dumps) d();
  }
  const Outcome first = invoke(op);
  ctx.check_untouched();
  if (!first.threw && op.check) op.check(first.value);
  if ((run & 3) == 3) {  // the same call on 2 or 3 threads gives the same bits
    const auto after = ctx.contents();
    ctx.restore();
    lk::set_num_threads(2 + ((run >> 2) & 1));
    const Outcome second = invoke(op);
    lk::set_num_threads(1);
    FZ_CHECK(first.threw == second.threw && first.argument == second.argument,
             "1 thread: " + (first.threw ? "Error(" + first.argument + ")" : std::string("ok")) + ", more threads: " +
                 (second.threw ? "Error(" + second.argument + ")" : std::string("ok")));
    if (!first.threw) {
      FZ_CHECK(bits_of(first.value) == bits_of(second.value), "returned " + str(first.value) + " vs " + str(second.value));
      const auto again = ctx.contents();
      for (size_t k = 0; k < after.size(); ++k)
        FZ_CHECK(after[k] == again[k], "buffer " + std::to_string(k) + " differs between thread counts");
    }
  }
  return 0;
}
