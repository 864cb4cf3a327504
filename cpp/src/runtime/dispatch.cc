// CPU feature detection and the dispatch table: every compiled backend's table is filled once;
// the best one the CPU supports is active unless LOGITKIT_ISA or set_isa() says otherwise.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "runtime/kernel_table.h"
#include "runtime/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#endif

namespace logitkit {
namespace {

// Indexed by Isa; the best usable one (the last, scalar aside) is the default.
constexpr int kNumIsas = 5;
constexpr const char* kIsaNames[kNumIsas] = {"scalar", "avx2", "avx512", "neon", "avx512bf16"};

#if defined(__x86_64__) || defined(__i386__)
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

// Whether the CPU and the OS (saved register state) support each backend.
bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
#if defined(__x86_64__) || defined(__i386__)
    case Isa::kAvx2:
    case Isa::kAvx512:
    case Isa::kAvx512Bf16: {
      unsigned a, b, c, d;
      if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
      const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12),
                 f16c = c & (1u << 29), popcnt = c & (1u << 23);
      if (!(osxsave && avx && fma && f16c && popcnt)) return false;
      const uint64_t xcr0 = read_xcr0();
      if ((xcr0 & 0x6) != 0x6) return false;  // XMM and YMM state
      if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
      const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
      if (isa == Isa::kAvx2) return avx2 && bmi2;
      const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
      const bool avx512 = avx2 && bmi2 && f && dq && bw && vl && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM state
      if (isa == Isa::kAvx512 || !avx512) return avx512;
      return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));  // AVX512_BF16
    }
#endif
#if defined(__aarch64__)
    case Isa::kNeon:
#if defined(__linux__)
      return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#else
      return true;  // ASIMD is mandatory on AArch64
#endif
#endif
    default:
      return false;
  }
}

bool compiled(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
#ifdef LOGITKIT_HAVE_AVX2
    case Isa::kAvx2: return true;
#endif
#ifdef LOGITKIT_HAVE_AVX512
    case Isa::kAvx512: return true;
#endif
#ifdef LOGITKIT_HAVE_NEON
    case Isa::kNeon: return true;
#endif
#ifdef LOGITKIT_HAVE_AVX512BF16
    case Isa::kAvx512Bf16: return true;
#endif
    default: return false;
  }
}

void fill(Isa isa, KernelTable& table) {
  table.isa = isa;
  table.name = kIsaNames[static_cast<int>(isa)];
  switch (isa) {
#ifdef LOGITKIT_HAVE_AVX2
    case Isa::kAvx2: avx2::fill_kernel_table(table); break;
#endif
#ifdef LOGITKIT_HAVE_AVX512
    case Isa::kAvx512: avx512::fill_kernel_table(table); break;
#endif
#ifdef LOGITKIT_HAVE_NEON
    case Isa::kNeon: neon::fill_kernel_table(table); break;
#endif
#ifdef LOGITKIT_HAVE_AVX512BF16
    case Isa::kAvx512Bf16: avx512bf16::fill_kernel_table(table); break;
#endif
    default: scalar::fill_kernel_table(table); break;
  }
}

struct Registry {
  KernelTable tables[kNumIsas];
  bool usable[kNumIsas] = {};
  std::atomic<const KernelTable*> active{nullptr};
  std::mutex mutex;
  std::string env_error;  // set when LOGITKIT_ISA is invalid and no set_isa() has fixed it

  Registry() {
    const KernelTable* best = nullptr;
    for (int i = 0; i < kNumIsas; ++i) {
      Isa isa = static_cast<Isa>(i);
      usable[i] = compiled(isa) && cpu_supports(isa);
      if (!usable[i]) continue;
      fill(isa, tables[i]);
      if (isa != Isa::kScalar || best == nullptr) best = &tables[i];
    }
    active.store(best);
    if (const char* env = std::getenv("LOGITKIT_ISA")) {
      if (*env != '\0') {
        std::string error;
        const KernelTable* chosen = find(env, &error);
        if (chosen) {
          active.store(chosen);
        } else {
          active.store(nullptr);
          env_error = error;
        }
      }
    }
  }

  const KernelTable* find(const std::string& name, std::string* error) {
    for (int i = 0; i < kNumIsas; ++i) {
      if (name != kIsaNames[i]) continue;
      if (usable[i]) return &tables[i];
      *error = "ISA '" + name + "' is " +
               (compiled(static_cast<Isa>(i)) ? "not supported by this CPU" : "not compiled into this build") +
               "; available: " + available();
      return nullptr;
    }
    *error = "unknown ISA '" + name + "'; expected one of scalar, avx2, avx512, avx512bf16, neon (available: " +
             available() + ")";
    return nullptr;
  }

  std::string available() const {
    std::string out;
    for (int i = 0; i < kNumIsas; ++i)
      if (usable[i]) out += (out.empty() ? "" : ", ") + std::string(kIsaNames[i]);
    return out;
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

const KernelTable& active_table() {
  Registry& r = registry();
  const KernelTable* t = r.active.load(std::memory_order_acquire);
  if (t == nullptr) {
    std::lock_guard<std::mutex> lock(r.mutex);  // set_isa may be clearing env_error
    t = r.active.load(std::memory_order_acquire);
    if (t == nullptr) throw Error(Error::Kind::kUnsupportedIsa, "LOGITKIT_ISA", r.env_error);
  }
  return *t;
}

}  // namespace

// Every op starts here, so an invalid LOGITKIT_ISA or LOGITKIT_NUM_THREADS fails every call alike.
const KernelTable& kernels() {
  const KernelTable& t = active_table();
  check_thread_env();
  return t;
}

const char* isa() { return active_table().name; }

std::vector<std::string> available_isas() {
  Registry& r = registry();
  std::vector<std::string> out;
  for (int i = 0; i < kNumIsas; ++i)
    if (r.usable[i]) out.emplace_back(kIsaNames[i]);
  return out;
}

void set_isa(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::string error;
  const KernelTable* t = r.find(name, &error);
  if (t == nullptr) throw Error(Error::Kind::kUnsupportedIsa, "isa", error);
  r.env_error.clear();
  r.active.store(t, std::memory_order_release);
}

}  // namespace logitkit
