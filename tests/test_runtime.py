"""Runtime controls: ISA selection (set_isa, use_isa, LOGITKIT_ISA), thread count
(set_num_threads, LOGITKIT_NUM_THREADS), and kernels called from several Python threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import logitkit
import numpy as np
import pytest

KNOWN = {"scalar", "avx2", "avx512", "avx512bf16", "neon"}


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (the same one running the tests) with `env` added to
    the environment, and the LOGITKIT_* variables of this process removed unless given."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("LOGITKIT_")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# ISA selection


def test_available_isas():
    isas = logitkit.available_isas()
    assert isinstance(isas, list) and all(isinstance(n, str) for n in isas)
    assert isas[0] == "scalar"
    assert set(isas) <= KNOWN
    assert len(set(isas)) == len(isas)
    assert logitkit.isa() in isas


def test_default_isa_is_the_best_available():
    r = run_python("import logitkit; print(logitkit.isa(), logitkit.available_isas()[-1])")
    assert r.returncode == 0, r.stderr
    active, best = r.stdout.split()
    assert active == best


def test_set_isa_switches_and_use_isa_restores(isa):
    start = logitkit.isa()
    for name in logitkit.available_isas():
        with logitkit.use_isa(name):
            assert logitkit.isa() == name
            logitkit.softmax(np.ones(3))
        assert logitkit.isa() == start
    other = logitkit.available_isas()[0]
    with pytest.raises(RuntimeError, match="boom"), logitkit.use_isa(other):
        raise RuntimeError("boom")
    assert logitkit.isa() == start  # restored after an exception too
    logitkit.set_isa(other)
    assert logitkit.isa() == other
    logitkit.set_isa(start)


def test_isa_results_differ_only_within_rounding():
    # Every backend computes the same function: results agree to a few ulp (not bitwise, since
    # the vector width changes the order of the sums).
    x = np.random.default_rng(3).standard_normal((8, 300)).astype(np.float32)
    results = {}
    for name in logitkit.available_isas():
        with logitkit.use_isa(name):
            results[name] = logitkit.softmax(x)
    for y in results.values():
        np.testing.assert_allclose(y, results["scalar"], rtol=2e-6)


@pytest.mark.parametrize("name", ["bogus", "", "AVX2", "avx512 "])
def test_set_isa_unknown_name(name):
    before = logitkit.isa()
    with pytest.raises(ValueError, match=f"^name: unknown ISA '{name}'.*available: scalar"):
        logitkit.set_isa(name)
    assert logitkit.isa() == before  # a failed switch changes nothing


def test_set_isa_uncompiled_or_unsupported():
    missing = sorted(KNOWN - set(logitkit.available_isas()))
    if not missing:
        pytest.skip("every backend is available here")
    with pytest.raises(ValueError, match=f"^name: .*{missing[0]}"):
        logitkit.set_isa(missing[0])
    with pytest.raises(ValueError), logitkit.use_isa(missing[0]):
        pass


def test_set_isa_bad_type():
    for name in (None, 1, b"scalar", ["scalar"]):
        with pytest.raises(TypeError, match="name"):
            logitkit.set_isa(name)


def test_env_isa_scalar_forces_scalar_kernels():
    code = (
        "import hashlib, numpy as np, logitkit\n"
        "x = np.random.default_rng(5).standard_normal((4, 333)).astype(np.float32)\n"
        "print(logitkit.isa(), hashlib.sha256(logitkit.softmax(x).tobytes()).hexdigest())\n"
    )
    r = run_python(code, LOGITKIT_ISA="scalar")
    assert r.returncode == 0, r.stderr
    name, digest = r.stdout.split()
    assert name == "scalar"
    # The forced process produces exactly what this process produces on the scalar backend.
    import hashlib

    x = np.random.default_rng(5).standard_normal((4, 333)).astype(np.float32)
    with logitkit.use_isa("scalar"):
        assert digest == hashlib.sha256(logitkit.softmax(x).tobytes()).hexdigest()


@pytest.mark.parametrize("value", ["bogus", "neon" if "neon" not in logitkit.available_isas() else "avx512"])
def test_env_isa_invalid_raises_on_first_call(value):
    if value in logitkit.available_isas():
        pytest.skip(f"{value} is available here")
    code = (
        "import numpy as np, logitkit\n"  # importing must work
        "calls = (logitkit.isa, lambda: logitkit.softmax(np.ones(3)), lambda: logitkit.logsumexp(np.ones(3)))\n"
        "for f in calls:\n"
        "    try:\n"
        "        f()\n"
        "        print('NO ERROR')\n"
        "    except ValueError as e:\n"
        "        print('ValueError:', e)\n"
        "logitkit.set_isa('scalar')\n"  # an explicit choice repairs it
        "print('after set_isa:', logitkit.isa(), logitkit.softmax(np.zeros(2)).tolist())\n"
    )
    r = run_python(code, LOGITKIT_ISA=value)
    assert r.returncode == 0, r.stderr  # a Python exception, never a crash
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout
    for line in lines[:3]:
        assert line.startswith("ValueError:") and "LOGITKIT_ISA" in line and repr(value) in line, line
        assert "available: scalar" in line
    assert lines[3] == "after set_isa: scalar [0.5, 0.5]"


# ---------------------------------------------------------------------------------------------
# Threads


def test_set_num_threads(threads):
    for n in (1, 2, 3, 1):
        logitkit.set_num_threads(n)
        assert logitkit.get_num_threads() == n
        y = logitkit.softmax(np.zeros((1000, 40)))
        assert (y == 1 / 40).all()


@pytest.mark.parametrize("n", [0, -1, 1025])
def test_set_num_threads_out_of_range(threads, n):
    before = logitkit.get_num_threads()
    with pytest.raises(ValueError, match="n:.*threads"):
        logitkit.set_num_threads(n)
    assert logitkit.get_num_threads() == before


@pytest.mark.parametrize("n", [2.0, "2", None, True])
def test_set_num_threads_bad_type(threads, n):
    with pytest.raises(TypeError, match="n"):
        logitkit.set_num_threads(n)


def test_num_threads_numpy_int(threads):
    logitkit.set_num_threads(np.int64(2))
    assert logitkit.get_num_threads() == 2


def test_env_num_threads():
    code = "import logitkit; print(logitkit.get_num_threads())"
    for value in ("1", "3"):
        r = run_python(code, LOGITKIT_NUM_THREADS=value)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == value
    default = run_python(code)
    assert int(default.stdout) == os.cpu_count()  # unset: the hardware concurrency
    for bad in ("lots", "0", "-2", "2.5"):  # an invalid value is an error naming the variable
        invalid = run_python(code, LOGITKIT_NUM_THREADS=bad)
        assert invalid.returncode != 0
        assert "ValueError" in invalid.stderr and "LOGITKIT_NUM_THREADS" in invalid.stderr
    recovered = run_python(
        "import logitkit, numpy as np; logitkit.set_num_threads(2); "
        "print(logitkit.get_num_threads(), logitkit.softmax(np.zeros((64, 4096))).sum())",
        LOGITKIT_NUM_THREADS="lots",
    )
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.split() == ["2", "64.0"]


def test_env_num_threads_invalid_fails_every_call_alike():
    # An invalid LOGITKIT_NUM_THREADS used to fail only once an input was large enough to use the
    # pool: a small softmax succeeded, a large one raised. Now every op call fails the same way
    # (as with LOGITKIT_ISA=bogus), whatever its size, until set_num_threads() replaces the value;
    # isa() and available_isas() keep working.
    code = (
        "import logitkit, numpy as np\n"
        "calls = {\n"
        "  'small softmax': lambda: logitkit.softmax(np.zeros(3)),\n"
        "  'large softmax': lambda: logitkit.softmax(np.zeros((256, 4096))),\n"
        "  'logsumexp': lambda: logitkit.logsumexp(np.zeros(3)),\n"
        "  'sparsemax': lambda: logitkit.sparsemax(np.zeros(3)),\n"
        "  'stablemax': lambda: logitkit.stablemax(np.zeros(3)),\n"
        "  'entropy': lambda: logitkit.entropy(np.zeros(3)),\n"
        "  'masked': lambda: logitkit.masked_softmax(np.zeros(3), np.ones(3, bool)),\n"
        "  'backward': lambda: logitkit.softmax_backward(np.ones(3) / 3, np.zeros(3)),\n"
        "  'get_num_threads': logitkit.get_num_threads,\n"
        "}\n"
        "for name, call in calls.items():\n"
        "    for attempt in range(2):\n"
        "        try:\n"
        "            call()\n"
        "            print(name, 'ok')\n"
        "        except ValueError as e:\n"
        "            print(name, 'ValueError', 'LOGITKIT_NUM_THREADS' in str(e))\n"
        "print('isa', logitkit.isa() in logitkit.available_isas())\n"
        "logitkit.set_num_threads(2)\n"
        "print('fixed', logitkit.get_num_threads(), logitkit.softmax(np.zeros((256, 4096))).sum())\n"
    )
    for bad in ("0", "lots", "99999999999999999999"):
        r = run_python(code, LOGITKIT_NUM_THREADS=bad)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[-2:] == ["isa True", "fixed 2 256.0"], r.stdout
        assert lines[:-2] and all(line.endswith("ValueError True") for line in lines[:-2]), r.stdout


def test_env_num_threads_one_is_used():
    # With LOGITKIT_NUM_THREADS=1 the kernels run on the caller's thread only: a multi-task
    # problem still works and gives exactly this process's result on the same backend.
    code = (
        "import hashlib, numpy as np, logitkit\n"
        "x = np.random.default_rng(9).standard_normal((4000, 50))\n"
        "digest = hashlib.sha256(logitkit.log_softmax(x).tobytes()).hexdigest()\n"
        "print(logitkit.get_num_threads(), logitkit.isa(), digest)\n"
    )
    r = run_python(code, LOGITKIT_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    n, name, digest = r.stdout.split()
    assert n == "1"
    import hashlib

    x = np.random.default_rng(9).standard_normal((4000, 50))
    with logitkit.use_isa(name):
        assert digest == hashlib.sha256(logitkit.log_softmax(x).tobytes()).hexdigest()


def test_concurrent_python_threads(isa, threads):
    # Several Python threads calling kernels at once (the pool runs one job at a time; the others
    # run inline) must each get their own correct, deterministic result.
    logitkit.set_num_threads(2)
    rng = np.random.default_rng(11)
    inputs = [rng.standard_normal((500, 129)).astype(np.float32) for _ in range(6)]
    expected = [logitkit.softmax(x) for x in inputs]
    results = [None] * len(inputs)
    errors = []

    def work(i):
        try:
            for _ in range(5):
                results[i] = logitkit.softmax(inputs[i])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    for r, e in zip(results, expected, strict=True):
        np.testing.assert_array_equal(r, e)


def test_fork_after_threads_used(threads):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    logitkit.set_num_threads(2)
    x = np.random.default_rng(2).standard_normal((2000, 64))
    expected = logitkit.softmax(x)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the pool is recreated lazily
        signal.alarm(60)  # never hang the test run
        try:
            ok = np.array_equal(logitkit.softmax(x), expected)
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"1"
