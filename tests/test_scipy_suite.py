"""SciPy's own tests of softmax, log_softmax and logsumexp (scipy/special/tests/test_logsumexp.py of
the installed SciPy), run against logitkit on every ISA: the test module's names are
monkeypatched to logitkit's ops, called with SciPy's signatures (SciPy's default axis is None;
logitkit's is -1, so the adapters pass axis explicitly). xp is NumPy, as in SciPy's default run.

Cases skipped, each for a SciPy feature outside logitkit's API (see SKIPPED):
complex input (logitkit computes real logits only and raises TypeError), array-API devices, and
SciPy's private helper _wrap_radians (complex phases)."""

from __future__ import annotations

import inspect
import itertools
import warnings

import logitkit
import numpy as np
import pytest

suite = pytest.importorskip("scipy.special.tests.test_logsumexp")

COMPLEX = "complex input: logitkit computes real logits only (it raises TypeError)"
SKIPPED = {  # test name -> reason, for tests skipped whatever their parameters
    "test_wrap_radians": "SciPy's private helper _wrap_radians (complex phases), not an op",
    "test_device": "array-API device propagation: logitkit takes NumPy arrays only",
    "test_logsumexp_complex_sign": COMPLEX,
    "test_gh21610": COMPLEX,
    "test_gh21709_small_imaginary": COMPLEX,
}


def _skip_reason(name, params):
    """Why the case is skipped, or None. Besides SKIPPED: any case with a complex parameter."""
    if name in SKIPPED:
        return SKIPPED[name]
    if any(isinstance(v, complex) or (isinstance(v, str) and v.startswith("complex")) for v in params.values()):
        return COMPLEX
    return None


def softmax(x, axis=None):
    return logitkit.softmax(x, axis=axis)


def log_softmax(x, axis=None):
    return logitkit.log_softmax(x, axis=axis)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    return logitkit.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign)


def _expand(fn):
    """Every combination of the function's pytest.mark.parametrize values, as kwargs dicts."""
    axes = []
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for v in values:
            v = getattr(v, "values", v)  # pytest.param(...)
            rows.append(dict(zip(names, v if len(names) > 1 else (v,))))
        axes.append(rows)
    for combo in itertools.product(*axes):
        yield {k: v for d in combo for k, v in d.items()}


def _cases():
    for cls_name, cls in inspect.getmembers(suite, inspect.isclass):
        if not cls_name.startswith("Test"):
            continue
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("test"):
                for i, params in enumerate(_expand(fn)):
                    yield pytest.param(cls, name, params, id=f"{cls_name}.{name}[{i}]")
    for name, fn in inspect.getmembers(suite, inspect.isfunction):
        if name.startswith("test"):
            yield pytest.param(None, name, {}, id=name)


CASES = list(_cases())


def test_the_suite_was_found():
    names = {c.values[1] for c in CASES}
    assert {"test_logsumexp", "test_softmax_fixtures", "test_log_softmax_basic"} <= names
    assert len(CASES) > 100
    run = [c for c in CASES if _skip_reason(c.values[1], c.values[2]) is None]
    assert len(run) > 50  # the skipped ones are complex (most of test_gh22601) or device cases


@pytest.mark.parametrize("cls,name,params", CASES)
def test_scipy_case(cls, name, params, isa, monkeypatch):
    reason = _skip_reason(name, params)
    if reason:
        pytest.skip(reason)
    for op in (softmax, log_softmax, logsumexp):
        monkeypatch.setattr(suite, op.__name__, op)
    fn = getattr(cls(), name)
    kwargs = dict(params)
    if "xp" in inspect.signature(fn).parameters:
        kwargs["xp"] = np
    with warnings.catch_warnings():  # the module's filterwarnings marks: NumPy references warn
        warnings.simplefilter("ignore", RuntimeWarning)
        fn(**kwargs)
