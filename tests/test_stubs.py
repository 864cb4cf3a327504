"""The type stubs of logitkit._core list exactly the extension's functions, with its parameter names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import logitkit
from logitkit import _core

STUB = Path(logitkit.__file__).with_name("_core.pyi")


def stub_signatures() -> dict[str, list[str]]:
    tree = ast.parse(STUB.read_text())
    return {f.name: [a.arg for a in f.args.args] for f in tree.body if isinstance(f, ast.FunctionDef)}


def runtime_signatures() -> dict[str, list[str]]:
    out = {}
    for name in dir(_core):
        if name.startswith("__") or not callable(getattr(_core, name)) or isinstance(getattr(_core, name), type):
            continue  # classes (opaque handles such as RouteOptions) are listed as stub classes
        first = getattr(_core, name).__doc__.strip().splitlines()[0]  # pybind11: "f(a: T, b: U) -> R"
        params = re.match(r"\w+\((.*)\) ->", first).group(1)
        out[name] = [p.split(":")[0].strip() for p in params.split(",") if p.strip()]
    return out


def test_stub_matches_extension():
    assert stub_signatures() == runtime_signatures()


def test_stub_lists_the_extension_classes():
    tree = ast.parse(STUB.read_text())
    stub = {c.name for c in tree.body if isinstance(c, ast.ClassDef)}
    assert stub == {n for n in dir(_core) if isinstance(getattr(_core, n), type)}


def test_stub_lists_the_extension_constants():
    tree = ast.parse(STUB.read_text())
    stub = {a.target.id for a in tree.body if isinstance(a, ast.AnnAssign)}
    runtime = {n for n in dir(_core) if not n.startswith("_") and not callable(getattr(_core, n))}
    assert stub - {"__version__"} == runtime
    assert isinstance(_core.MAX_DIMS, int) and _core.MAX_DIMS >= 8


def test_package_is_typed():
    assert STUB.with_name("py.typed").exists()


def test_public_functions_are_annotated():
    """py.typed promises annotations: every public function annotates each parameter and its
    return, and the annotations resolve (typing.get_type_hints evaluates the strings)."""
    import inspect
    import typing

    public = [getattr(logitkit, n) for n in logitkit.__all__]
    functions = [f for f in public if callable(f) and not isinstance(f, type)]  # classes: DispatchPlan
    assert len(functions) >= 25
    for fn in functions:
        fn = inspect.unwrap(fn)  # use_isa is wrapped by contextlib.contextmanager
        hints = typing.get_type_hints(fn)
        params = set(inspect.signature(fn).parameters)
        assert params | {"return"} <= set(hints), (fn.__name__, sorted(params | {"return"} - set(hints)))
