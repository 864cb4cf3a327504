"""Bad inputs (issue 17): every case of tests/bad_input_cases.py raises exactly the expected
exception type (not a subclass or a parent: AxisError where an axis is out of range, ValueError
for other bad values, TypeError for bad types) with a message that starts with the argument's
name, the project's convention ("name: what is wrong"; README: bad input raises ValueError/TypeError
naming the argument). tests/bad_inputs.md (tests/tools/bad_input_table.py) lists each message.
"""

from __future__ import annotations

import pytest

import logitkit
from bad_input_cases import CASES, FAMILIES

# Public families (python/logitkit/*.py modules, plus the runtime controls) the cases must cover.
EXPECTED_FAMILIES = {
    "softmax", "masked_softmax", "softmax_backward", "sparsemax", "stablemax", "entropy", "cross_entropy",
    "nll_loss", "class_losses", "distill", "route", "moe", "linear_cross_entropy", "runtime",
}


def test_every_family_has_at_least_eight_cases():
    assert set(FAMILIES) == EXPECTED_FAMILIES
    counts = {f: sum(c.family == f for c in CASES) for f in FAMILIES}
    assert min(counts.values()) >= 8, counts


def test_every_public_name_is_in_a_family_module():
    """A new public op lands in one of the families above (its module), so it is not forgotten here."""
    modules = {getattr(logitkit, name).__module__.rsplit(".", 1)[-1] for name in logitkit.__all__
               if callable(getattr(logitkit, name))}
    assert modules <= EXPECTED_FAMILIES, modules - EXPECTED_FAMILIES


@pytest.mark.parametrize("case", CASES, ids=[f"{c.family}-{c.description}" for c in CASES])
def test_bad_input_raises_naming_the_argument(case):
    isa, threads = logitkit.isa(), logitkit.get_num_threads()
    try:
        with pytest.raises(Exception) as info:
            case.call()
    finally:  # the runtime cases must not leave a changed backend or thread count behind
        assert (logitkit.isa(), logitkit.get_num_threads()) == (isa, threads)
    err = info.value
    assert type(err) is case.exc, f"expected {case.exc.__name__}, got {type(err).__name__}: {err}"
    assert str(err).startswith(f"{case.arg}:"), f"message does not start with '{case.arg}:': {err}"
