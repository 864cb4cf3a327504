"""Hardening (issue 17): many Python threads calling every family at once, with the pool resized
under them, give exactly the serial results; the pool survives fork() (the child can use
logitkit), also when the fork lands while other threads are inside logitkit calls; kernel calls
release the GIL.

logitkit promises bitwise-identical results for every thread count, so every comparison here is
bitwise (same dtype, shape and bytes), never a tolerance."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import random
import select
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import logitkit
import numpy as np
import pytest

import reference

# ---------------------------------------------------------------------------------------------
# One representative call per family, on inputs large enough that the row driver splits them
# into several tasks (and one row long enough, >= 2^18, to be split into chunks itself).


def _inputs():
    rng = np.random.default_rng(1717)
    n, v = 192, 2500
    x32 = (3 * rng.standard_normal((n, v))).astype(np.float32)
    x64 = 2 * rng.standard_normal((96, 3000))
    long_row = rng.standard_normal((2, 300_000)).astype(np.float32)
    target = rng.integers(0, v, n)
    target[::17] = -100  # some ignored rows
    teacher = (2 * rng.standard_normal((n, v))).astype(np.float32)
    router = rng.standard_normal((512, 256)).astype(np.float32)
    router_bias = (0.1 * rng.standard_normal(256)).astype(np.float32)
    hidden = rng.standard_normal((256, 64)).astype(np.float32)
    lce_in = rng.standard_normal((128, 64)).astype(np.float32)
    lce_w = (0.2 * rng.standard_normal((2000, 64))).astype(np.float32)
    lce_t = rng.integers(0, 2000, 128)
    return {
        "x32": x32,
        "x64": x64,
        "long_row": long_row,
        "mask": rng.random((n, v)) < 0.7,
        "dy": rng.standard_normal((n, v)).astype(np.float32),
        "target": target,
        "teacher": teacher,
        "router": router,
        "router_bias": router_bias,
        "hidden": hidden,
        "lce": (lce_in, lce_w, lce_t),
    }


D = _inputs()


def _moe_round_trip(d):
    # route -> dispatch -> permute -> (expert "compute": identity) -> unpermute: the whole MoE path.
    w, ids = logitkit.route(d["router"][:256], 4)
    plan = logitkit.dispatch(ids, 256, weights=w, capacity_factor=1.25, drop_policy="probs", block_size=8)
    permuted = logitkit.permute(d["hidden"], plan)
    return plan, permuted, logitkit.unpermute(permuted, plan, w)


CALLS = {
    "softmax": lambda d: logitkit.softmax(d["x32"], temperature=0.7),
    "softmax_long_row": lambda d: logitkit.softmax(d["long_row"]),
    "softmax_two_pass": lambda d: logitkit.softmax(d["x64"], algorithm="two_pass"),
    "log_softmax_axis0": lambda d: logitkit.log_softmax(d["x64"], axis=0),  # strided rows
    "logsumexp": lambda d: logitkit.logsumexp(d["x32"], b=d["mask"].astype(np.float32), return_sign=True),
    "masked_softmax": lambda d: logitkit.masked_softmax(d["x32"], d["mask"]),
    "softmax_backward": lambda d: logitkit.softmax_backward(logitkit.softmax(d["x32"]), d["dy"]),
    "sparsemax": lambda d: logitkit.sparsemax(d["x32"]),
    "entmax15": lambda d: logitkit.entmax15(d["x64"]),
    "entmax_bisect": lambda d: logitkit.entmax_bisect(d["x32"], 1.3),
    "log_stablemax": lambda d: logitkit.log_stablemax(d["x32"]),
    "entropy": lambda d: logitkit.entropy(d["x32"], temperature=2.0),
    "cross_entropy": lambda d: logitkit.cross_entropy(
        d["x32"], d["target"], label_smoothing=0.1, z_loss=1e-4, return_grad=True, extras=("lse", "accuracy")
    ),
    "nll_loss": lambda d: logitkit.nll_loss(d["x64"], d["target"][:96] % 3000, reduction="none", return_grad=True),
    "focal_loss": lambda d: logitkit.focal_loss(d["x32"], d["target"], return_grad=True),
    "kl_div": lambda d: logitkit.kl_div(d["x32"], d["teacher"], temperature=2.0, return_grad=True),
    "jsd": lambda d: logitkit.jsd(d["x32"], d["teacher"], beta=0.3, return_grad=True),
    "route_deepseek_v3": lambda d: logitkit.route(d["router"], preset="deepseek-v3", bias=d["router_bias"]),
    "route_k": lambda d: logitkit.route(d["router"], 8, noise="gaussian", seed=5),
    "moe_round_trip": _moe_round_trip,
    "linear_cross_entropy": lambda d: logitkit.linear_cross_entropy(*d["lce"], return_grad=True, chunk_rows=32),
}


def _flat(result) -> tuple[np.ndarray, ...]:
    """Every array of a result (tuples, extras dicts, DispatchPlan fields, Python floats)."""
    if isinstance(result, tuple | list):
        return tuple(a for r in result for a in _flat(r))
    if isinstance(result, dict):
        return tuple(a for k in sorted(result) for a in _flat(result[k]))
    if dataclasses.is_dataclass(result):
        return _flat(dataclasses.astuple(result))
    return (np.asarray(result),)


def _bitwise_equal(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
        and x.tobytes() == y.tobytes()  # bitwise: also -0.0 vs 0.0 and NaN payloads
        for x, y in zip(a, b)
    )


def _serial(names=CALLS) -> dict[str, tuple[np.ndarray, ...]]:
    return {name: _flat(CALLS[name](D)) for name in names}


# ---------------------------------------------------------------------------------------------
# The serial baseline itself is right (checked against float64 NumPy), so the bitwise comparisons
# below compare against correct numbers.


def test_serial_baseline_matches_float64_reference(threads):
    logitkit.set_num_threads(1)
    x32, x64 = D["x32"].astype(np.float64), D["x64"]
    reference.assert_softmax_close(CALLS["softmax"](D), D["x32"], temperature=0.7)
    reference.assert_softmax_close(CALLS["softmax_long_row"](D), D["long_row"])
    reference.assert_log_softmax_close(CALLS["log_softmax_axis0"](D), x64, axis=0)
    lse, sign = CALLS["logsumexp"](D)
    m = D["mask"]
    ref = np.log(np.where(m, np.exp(x32 - x32.max(-1, keepdims=True)), 0).sum(-1)) + x32.max(-1)
    np.testing.assert_allclose(lse, ref, rtol=1e-6)
    assert (sign == 1).all()

    t = D["target"]
    loss, grad, extras = CALLS["cross_entropy"](D)
    keep = t != -100
    logp = np.log(reference.softmax(x32).astype(np.float64))
    nll = -logp[keep, t[keep]]
    smooth = -logp[keep].mean(-1)
    lse64 = np.log(np.exp(x32 - x32.max(-1, keepdims=True)).sum(-1)) + x32.max(-1)
    ref_loss = (0.9 * nll + 0.1 * smooth + 1e-4 * lse64[keep] ** 2).mean()
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(extras["lse"], np.where(keep, lse64, 0), rtol=1e-6)  # documented: 0 if ignored
    acc = (x32[keep].argmax(-1) == t[keep]).mean()
    np.testing.assert_allclose(extras["accuracy"], acc, rtol=1e-12)
    # d/dx of the mean over kept rows: p - (0.9 onehot + 0.1 / V) + 2 z lse p; ignored rows 0.
    p = np.exp(logp)
    ref_grad = p - 0.1 / x32.shape[1] + 2e-4 * lse64[:, None] * p
    ref_grad[np.arange(len(t)), t] -= 0.9
    ref_grad = np.where(keep[:, None], ref_grad, 0) / keep.sum()
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-9)

    w, ids = CALLS["route_k"](D)
    assert ids.dtype == np.int32 and ((ids >= 0) & (ids < 256)).all()
    assert all(len(set(row)) == 8 for row in ids.tolist())

    plan, permuted, combined = CALLS["moe_round_trip"](D)
    w4, ids4 = logitkit.route(D["router"][:256], 4)
    expect = np.zeros_like(D["hidden"], dtype=np.float64)
    for tok in range(256):
        for j in range(4):
            if plan.position[tok, j] >= 0:
                expect[tok] += w4[tok, j] * D["hidden"][tok]
    np.testing.assert_allclose(combined, expect, rtol=1e-5, atol=1e-6)

    h, W, tl = D["lce"]
    logits = h.astype(np.float64) @ W.T.astype(np.float64)
    lse_l = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    loss_l = CALLS["linear_cross_entropy"](D)[0]
    np.testing.assert_allclose(loss_l, (lse_l - logits[np.arange(128), tl]).mean(), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Many Python threads at once, pool resized mid-stream


def _hammer(n_workers: int, rounds: int, expected, resize_counts=(1, 2, 3, 4)):
    """n_workers threads each call every family `rounds` times in its own shuffled order while one
    more thread keeps resizing the pool; returns the mismatches and exceptions seen."""
    mismatches: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    barrier = threading.Barrier(n_workers + 1)

    def resizer():
        barrier.wait()
        i = 0
        while not stop.is_set():
            logitkit.set_num_threads(resize_counts[i % len(resize_counts)])
            i += 1
            time.sleep(0.002)  # a resize between (and during) most calls, not a busy loop

    def worker(seed: int):
        order = list(expected) * rounds
        random.Random(seed).shuffle(order)
        barrier.wait()
        for name in order:
            try:
                got = _flat(CALLS[name](D))
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
                return
            if not _bitwise_equal(got, expected[name]):
                mismatches.append(f"worker {seed}: {name}")

    resize_thread = threading.Thread(target=resizer)
    resize_thread.start()
    try:
        with ThreadPoolExecutor(n_workers) as ex:
            futures = [ex.submit(worker, s) for s in range(n_workers)]
            for f in futures:
                f.result(timeout=120)
    finally:
        stop.set()
        resize_thread.join(timeout=30)
    assert not resize_thread.is_alive()
    return mismatches, errors


def test_threads_with_resizes_match_serial_bitwise(threads):
    # Serial results at one thread count; 8 threads then race on every family with a resizer
    # thread cycling 1..4 pool threads. Only one caller owns the pool at a time (the others run
    # inline), a resize waits for the running job: every result must still be the serial one.
    logitkit.set_num_threads(3)
    expected = _serial()
    mismatches, errors = _hammer(8, 3, expected)
    assert not errors, errors
    assert not mismatches, mismatches
    for n in (1, 4):  # the pool still works, with every thread count, after the storm
        logitkit.set_num_threads(n)
        assert logitkit.get_num_threads() == n
        assert _bitwise_equal(_serial(["softmax_long_row"])["softmax_long_row"], expected["softmax_long_row"])


def test_threads_on_every_isa(isa, threads):
    # The same race, lighter, on each backend (each has its own kernels and thus its own bits).
    names = ["softmax", "softmax_long_row", "log_softmax_axis0", "sparsemax", "cross_entropy", "route_deepseek_v3",
             "linear_cross_entropy"]
    logitkit.set_num_threads(2)
    expected = _serial(names)
    mismatches, errors = _hammer(4, 1, expected, resize_counts=(2, 1, 3))
    assert not errors, errors
    assert not mismatches, mismatches


def test_thread_count_does_not_change_bits(threads):
    # The bitwise guarantee the races rely on, for each family on its own.
    logitkit.set_num_threads(1)
    one = _serial()
    for n in (2, 3, 5):
        logitkit.set_num_threads(n)
        for name, got in _serial().items():
            assert _bitwise_equal(got, one[name]), (name, n)


# ---------------------------------------------------------------------------------------------
# fork()

FORK_NAMES = ["softmax", "softmax_long_row", "log_softmax_axis0", "masked_softmax", "sparsemax", "entropy",
              "cross_entropy", "kl_div", "route_deepseek_v3", "moe_round_trip", "linear_cross_entropy"]


def _child_results(conn, names, threads_in_child):
    try:
        if threads_in_child:
            logitkit.set_num_threads(threads_in_child)
        conn.send(("ok", {name: _flat(CALLS[name](D)) for name in names}))
    except BaseException as exc:  # noqa: BLE001 (sent to the parent)
        conn.send(("error", repr(exc)))
    finally:
        conn.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: "multi-threaded, use of fork()"
@pytest.mark.parametrize("threads_in_child", [None, 1, 3])
def test_multiprocessing_fork_child_matches_parent(threads, threads_in_child):
    # The parent's pool has run jobs on 3 threads (its workers are alive, possibly spinning);
    # a forked child has none of them: it must build its own pool (or resize it) and give the
    # parent's bits, with the inherited thread count or a new one.
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method")
    logitkit.set_num_threads(3)
    expected = _serial(FORK_NAMES)
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_results, args=(child_conn, FORK_NAMES, threads_in_child))
    proc.start()
    child_conn.close()
    try:
        assert parent_conn.poll(60), "forked child produced nothing in 60 s (hung?)"
        status, payload = parent_conn.recv()
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == 0
    assert status == "ok", payload
    assert logitkit.get_num_threads() == 3  # the child's resize is its own
    for name in FORK_NAMES:
        assert _bitwise_equal(payload[name], expected[name]), name


def _wait_child(pid: int, deadline_s: float) -> int | None:
    """The child's exit code, or None (after killing it) if it is still running at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= end:
            break
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _fork_and_collect(names, deadline_s=60.0):
    """os.fork(); the child computes `names` and pickles them down a pipe. Returns (exit code or
    None if it hung, results or None)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            signal.alarm(int(deadline_s) + 5)  # a hung child dies even if the parent is gone
            os.close(r)
            data = pickle.dumps({name: _flat(CALLS[name](D)) for name in names})
            with os.fdopen(w, "wb") as f:
                f.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    end = time.monotonic() + deadline_s
    with os.fdopen(r, "rb") as f:
        while time.monotonic() < end:
            ready, _, _ = select.select([f], [], [], 0.1)
            if ready:
                chunk = os.read(f.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    code = _wait_child(pid, max(0.0, end - time.monotonic()) + 1.0)
    results = pickle.loads(b"".join(chunks)) if code == 0 else None
    return code, results


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: "multi-threaded, use of fork()"
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_os_fork_after_threads_used(threads):
    # Directly with os.fork, after the pool ran on 4 threads and was resized.
    logitkit.set_num_threads(4)
    expected = _serial(FORK_NAMES)
    logitkit.set_num_threads(2)
    code, results = _fork_and_collect(FORK_NAMES)
    assert code == 0, "forked child hung or failed"
    for name in FORK_NAMES:
        assert _bitwise_equal(results[name], expected[name]), name
    # The parent's pool is untouched by the child.
    assert _bitwise_equal(_serial(["softmax_long_row"])["softmax_long_row"], expected["softmax_long_row"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_while_other_threads_are_inside_logitkit_calls(threads):
    # Regression test (fails until fixed): fork() while other Python threads are in the middle of
    # multi-task logitkit calls (they released the GIL, so fork does not wait for them). A child
    # must not inherit a lock one of them held: the pool lookup (thread_pool.cc, pool()) locks a
    # global mutex around getpid() on every multi-task call, and a child forked while another
    # thread held it deadlocked in its first multi-task call (about 5% of forks here). The
    # spinners make many short multi-task calls (linear_cross_entropy in chunks of 2 rows: a
    # few parallel_for per chunk); each child makes one multi-task call, and a child that does
    # not finish in 10 s is a hang. Up to 160 forks, 8 at a time, stopping at the first hang.
    logitkit.set_num_threads(2)
    small_lce = (D["lce"][0][:16], D["lce"][1][:128], D["lce"][2][:16] % 128)
    x = np.ascontiguousarray(D["x32"][:64, :1000])  # several tasks: the child's call takes the pool
    expected = logitkit.softmax(x)
    stop = threading.Event()
    started = threading.Barrier(3)

    def spin():
        started.wait()
        while not stop.is_set():
            logitkit.linear_cross_entropy(*small_lce, return_grad=True, chunk_rows=2)

    spinners = [threading.Thread(target=spin) for _ in range(2)]
    for t in spinners:
        t.start()
    started.wait()
    codes: list[int | None] = []
    try:
        while len(codes) < 160 and all(c == 0 for c in codes):
            pids = []
            for _ in range(8):
                pid = os.fork()
                if pid == 0:  # child: never return into pytest
                    code = 1
                    try:
                        signal.alarm(30)
                        code = 0 if np.array_equal(logitkit.softmax(x), expected) else 3
                    finally:
                        os._exit(code)
                pids.append(pid)
            end = time.monotonic() + 10.0  # the children need milliseconds
            codes += [_wait_child(pid, max(0.0, end - time.monotonic())) for pid in pids]
    finally:
        stop.set()
        for t in spinners:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in spinners)
    hung = codes.count(None)
    assert hung == 0, f"{hung} of {len(codes)} children forked while other threads were in logitkit calls hung"
    assert all(c == 0 for c in codes), f"a forked child got a wrong result or crashed: exit codes {codes}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_in_child_of_child(threads):
    # A forked child's own pool (created lazily there) survives another fork.
    logitkit.set_num_threads(2)
    expected = _serial(["softmax_long_row", "cross_entropy"])
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)

    def grandchild(conn):
        _child_results(conn, ["softmax_long_row", "cross_entropy"], 3)

    def child(conn):
        logitkit.softmax(D["long_row"])  # the child's own pool now exists and has run a job
        ctx.Process(target=grandchild, args=(conn,)).start()  # joined at the child's exit

    proc = ctx.Process(target=child, args=(child_conn,))
    proc.start()
    child_conn.close()
    try:  # read before joining: the child waits for the grandchild, which waits for the pipe
        assert parent_conn.poll(60), "grandchild produced nothing in 60 s (hung?)"
        status, payload = parent_conn.recv()
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert proc.exitcode == 0
    assert status == "ok", payload
    for name, got in payload.items():
        assert _bitwise_equal(got, expected[name]), name


# ---------------------------------------------------------------------------------------------
# The GIL is released inside kernel calls


@pytest.mark.parametrize(
    "name", ["softmax_long_row", "cross_entropy", "sparsemax", "route_deepseek_v3", "linear_cross_entropy"]
)
def test_kernel_calls_release_the_gil(threads, name):
    # With a huge switch interval the interpreter never takes the GIL from a running thread: a
    # second thread (which itself gives the GIL up at each time.sleep(0)) can only run while this
    # thread releases the GIL voluntarily, i.e. inside the C++ call. So its counter moves during
    # the call iff the binding released the GIL. No timing is asserted: the call is retried until
    # the counter thread got scheduled during one (a GIL-holding binding never lets it).
    logitkit.set_num_threads(1)
    CALLS[name](D)  # warm: lazily created pool, first-touch allocations
    count = [0]
    stop = False

    def counter():
        while not stop:
            count[0] += 1
            time.sleep(0)  # releases the GIL

    old = sys.getswitchinterval()
    t = threading.Thread(target=counter)
    moved = False
    try:
        sys.setswitchinterval(1000.0)
        t.start()
        for _ in range(50):
            before = count[0]
            CALLS[name](D)
            if count[0] != before:
                moved = True
                break
    finally:
        stop = True
        sys.setswitchinterval(old)
        t.join(timeout=30)
    assert moved, f"{name}: no other Python thread ran during 50 calls: the GIL is held in C++"
