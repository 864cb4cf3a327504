"""`python -m logitkit bench`: runs from the installed package, reports every requested group with
the machine and the roofs, writes JSON whose figures are consistent with each other, and skips
peers that are not installed instead of failing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import logitkit
from logitkit import _core, bench


def test_roof_probes_are_plausible(isa):
    copy = _core._measure_copy_bandwidth(16 << 20, 2)
    fma = _core._measure_fma_peak(0.02)
    # Any machine this runs on copies faster than 100 MB/s and slower than 10 TB/s; one FMA per
    # cycle of a 100 MHz core is 0.2 GFLOP/s.
    assert 1e8 < copy < 1e13
    assert 1e8 < fma < 1e14


@pytest.mark.parametrize("bad", [dict(seconds=0.0), dict(seconds=float("nan")), dict(seconds=61.0)])
def test_fma_probe_rejects_bad_seconds(bad):
    with pytest.raises(ValueError, match="seconds"):
        _core._measure_fma_peak(**bad)


def test_copy_probe_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bytes"):
        _core._measure_copy_bandwidth(100, 1)
    with pytest.raises(ValueError, match="repeats"):
        _core._measure_copy_bandwidth(1 << 20, 0)


def test_bench_json_is_consistent(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bench.main(["--quick", "--ops", "latency,moe", "--rounds", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    text = capsys.readouterr().out
    assert report["machine"]["isa"] == logitkit.isa() and report["machine"]["threads"] == logitkit.get_num_threads()
    assert f"isa      {logitkit.isa()}" in text and "roofs" in text
    assert {c["op"] for c in report["cases"]} == {"latency", "moe"}
    for case in report["cases"]:
        ours = case["results"]["logitkit"]
        assert ours["median_s"] > 0 and ours["samples"] == 2
        peers = {k: v["median_s"] for k, v in case["results"].items() if k != "logitkit"}
        if peers:  # the ratio is the best peer's time over ours
            assert ours["vs_best_peer"] == pytest.approx(min(peers.values()) / ours["median_s"])
        if case["bytes"]:
            assert ours["gbs"] == pytest.approx(case["bytes"] / ours["median_s"] / 1e9)
            assert ours["roof_fraction"] == pytest.approx(ours["gbs"] / report["roofs"]["copy_gbs"])


def test_missing_peers_are_skipped_with_a_note(monkeypatch, capsys):
    monkeypatch.setattr(bench, "_peers", lambda: {})
    assert bench.main(["--quick", "--ops", "softmax,routing", "--rounds", "1"]) == 0
    text = capsys.readouterr().out
    assert "torch is not installed" in text and "scipy is not installed" in text
    table = text.split("roofs")[1]
    assert "vs torch" not in table and "vs scipy" not in table and "route softmax top-8" in table


def test_unknown_op_group_is_an_error():
    with pytest.raises(SystemExit):
        bench.main(["--ops", "softmax,nonsense"])


def test_runs_as_module_command():
    proc = subprocess.run([sys.executable, "-m", "logitkit", "bench", "--ops", "latency", "--rounds", "1", "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "route 1x8" in proc.stdout and "cases in" in proc.stdout
