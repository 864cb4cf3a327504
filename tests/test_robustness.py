"""Numerical robustness over a fixed adversarial corpus (issue 17): on every ISA, each op's error
against its independent longdouble reference stays within the bound recorded in
tests/robustness_bounds.json, and its output is NaN / +-inf exactly where the reference is.

The corpus, the references and the error measures are in tests/robustness_corpus.py; the
recorded bounds come from tests/tools/robustness_report.py --update, which only lowers them, so
a change can keep or improve the accuracy on this corpus but not lose it. tests/robustness.md is
the generated table (op, case, dtype, error per ISA, bound).
"""

from __future__ import annotations

import json
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import robustness_corpus as rc

BOUNDS = json.loads((Path(__file__).parent / "robustness_bounds.json").read_text())["bounds"]
COMBOS = list(rc.combos())
# One test per (op, case) and ISA, the dtypes inside it: every dtype's problems are reported together.
OP_CASES = sorted({(op, case) for op, case, _ in COMBOS}, key=lambda oc: ([o.name for o in rc.OPS].index(oc[0]),
                                                                          list(rc.CASES).index(oc[1])))


def test_bounds_cover_the_corpus():
    """Every (op, case, dtype) has a recorded bound and no bound is left over from an old corpus
    (regenerate with tests/tools/robustness_report.py --update)."""
    keys = {rc.key(*c) for c in COMBOS}
    assert sorted(keys - BOUNDS.keys()) == []
    assert sorted(BOUNDS.keys() - keys) == []
    assert all(math.isfinite(b) and b >= 0 for b in BOUNDS.values())


def test_corpus_is_deterministic():
    """The bounds only mean something for fixed inputs: rebuilding a case gives the same bits."""
    for case in rc.CASES:
        for dt in rc.DTYPES:
            a = rc.case_input(case, dt)
            b = rc.CASES[case](rc.DTYPES[dt], np.random.default_rng(zlib.crc32(case.encode())))
            assert (a is None) == (b is None)
            if a is not None:
                assert a.tobytes() == b.tobytes(), (case, dt)


def _op_case_params():
    for op, case in OP_CASES:
        reason = rc.KNOWN_LIMITATIONS.get((op, case))
        marks = [pytest.mark.xfail(strict=True, reason=f"known limitation: {reason}")] if reason else []
        yield pytest.param(op, case, id=f"{op}-{case}", marks=marks)


@pytest.mark.parametrize("op,case", list(_op_case_params()))
def test_error_within_recorded_bound(isa, op, case):
    problems = []
    for dt in rc.DTYPES:
        if rc.case_input(case, dt) is None:
            continue
        k = rc.key(op, case, dt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflowing casts of the extreme cases
            m = rc.measure(op, case, dt)
        problems += [f"{k} [{isa}]: {f}" for f in m.failures]
        if not m.error <= BOUNDS[k]:
            problems.append(f"{k} [{isa}]: error {m.error:.4g} u > recorded bound {BOUNDS[k]:g} u ({m.worst})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "op,case,dtype",
    [("softmax", "normal", "float32"), ("log_softmax", "collapse", "float64"), ("cross_entropy_grad", "tiny", "float16")],
)
def test_measure_detects_an_error(monkeypatch, op, case, dtype):
    """The harness itself can fail: an output with its largest element moved by 1e-3 (1 + |y|) is
    measured above the recorded bound, and a NaN planted in it is reported."""
    spec = rc.OPS_BY_NAME[op]
    real = spec.call

    def perturbed(inputs):
        y = np.array(real(inputs), dtype=np.float64)
        i = np.argmax(np.abs(np.where(np.isfinite(y), y, 0)))
        y.flat[i] += 1e-3 * (1 + abs(y.flat[i]))
        return y.astype(np.asarray(real(inputs)).dtype)

    monkeypatch.setattr(spec, "call", perturbed)
    m = rc.measure(op, case, dtype)
    assert m.error > BOUNDS[rc.key(op, case, dtype)]

    def with_nan(inputs):
        y = np.array(real(inputs))
        y.flat[0] = np.nan
        return y

    monkeypatch.setattr(spec, "call", with_nan)
    assert rc.measure(op, case, dtype).failures
