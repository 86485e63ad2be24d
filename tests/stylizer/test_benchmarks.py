"""The benchmark scripts run end to end on the CPU at toy sizes, so that a session with
a GPU never finds them broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMP_NUM_THREADS": "1"} | (env or {})
    proc = subprocess.run([sys.executable, f"benchmarks/{script}", "--device", "cpu", *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_the_iso_quality_report_runs_on_the_cpu(tmp_path: Path, styles_dir: Path) -> None:
    shared = styles_dir.parent
    if not (shared / "content" / "city-beach-skyline.jpg").is_file():
        pytest.skip(f"no test photographs beside the style pack at {shared}")
    _run("iso_quality.py", "--size", "32", "--pastiche-steps", "5", "--quick", "--no-pool",
         "--step-sizes", "32", "--out", str(tmp_path), env={"STYLEBOT_SHARED_DIR": str(shared)})
    res = json.loads((tmp_path / "results.json").read_text())
    assert not (tmp_path / "results.partial.json").exists()  # kept only if cut short
    assert res["pastiche"]["saved"]["total"] > 0
    assert res["tutorial"]["points"]
    variants = {"defaults", "photo start", "pixel canvas", "2 scales", "default job"}
    assert variants <= set(res["ours"])
    assert set(res["step_cost_ms"]) == {"32"}
    report = (tmp_path / "report.md").read_text()
    assert "| stylebot, defaults" in report
    assert "| plain fp32 loop (tutorial) |" in report
    assert "nan" not in report  # a figure this run did not take is left blank
    assert (tmp_path / "grid.png").stat().st_size > 0


@pytest.mark.slow
def test_the_start_up_and_pool_throughput_tables_run_on_the_cpu(tmp_path: Path) -> None:
    _run("startup.py", "--size", "32", "--json", str(tmp_path / "startup.json"))
    startup = json.loads((tmp_path / "startup.json").read_text())
    assert {"breakdown", "pool"} <= set(startup)
    proc = _run("pool_throughput.py", "--size", "32", "--steps", "4", "--concurrency", "1", "4",
                "--json", str(tmp_path / "pool.json"))
    pool = json.loads((tmp_path / "pool.json").read_text())
    row = pool["4 concurrent"]
    assert row["jobs"] == 12
    assert min(row["jobs_per_min"], row["first_pass_jobs_per_min"]) > 0
    assert "| jobs in flight | jobs | first pass | steady |" in proc.stdout
    # A queue of five photo shapes, two jobs of each in flight at the start.
    proc = _run("pool_throughput.py", "--size", "32", "--steps", "2", "--concurrency", "10",
                "--jobs", "10", "--mix", "--no-autotune", "--max-batch", "4",
                "--json", str(tmp_path / "mix.json"))
    mix = json.loads((tmp_path / "mix.json").read_text())
    assert (mix["shapes"], mix["autotune"]) == (5, False)
    assert 1 < mix["10 concurrent"]["mean_batch"] <= mix["10 concurrent"]["largest_batch"] <= 4
    assert "5 photo shapes, cuDNN autotuning off" in proc.stdout


@pytest.mark.slow
def test_the_compile_table_runs_on_the_cpu(tmp_path: Path) -> None:
    # aot_eager traces and runs the step through torch.compile without generating code,
    # which takes the inductor backend half a minute on a CPU.
    proc = _run("compile_step.py", "--sizes", "32", "--backend", "aot_eager",
                "--json", str(tmp_path / "compile.json"))
    row = json.loads((tmp_path / "compile.json").read_text())["sizes"]["32"]
    assert min(row["eager_ms"], row["compiled_ms"], row["compile_s"]) > 0
    assert "| photo long side |" in proc.stdout


@pytest.mark.slow
def test_the_quality_report_runs_on_the_cpu(tmp_path: Path, styles_dir: Path) -> None:
    shared = styles_dir.parent
    if not (shared / "content").is_dir():
        pytest.skip(f"no test photographs beside the style pack at {shared}")
    proc = _run("quality.py", "--sizes", "32", "--steps", "4", "--quick", "--pairs", "1",
                "--pastiche-pairs", "1", "--pastiche-steps", "3", "--pastiche-sizes", "32",
                "--plain-pairs", "1", "--plain-size", "32", "--out", str(tmp_path),
                env={"STYLEBOT_SHARED_DIR": str(shared)})
    res = json.loads((tmp_path / "results.json").read_text())
    (row,) = res["sizes"]["32"]["rows"]
    assert -1.0 < row["gain"] <= 1.0
    assert row["keep"] <= 1.0
    assert set(row["trajectory"]) == {"4"}
    assert (tmp_path / "grid-32.png").is_file()
    (reference,) = res["pastiche"]
    assert reference["size"] == 32
    assert "median" in proc.stdout
    (race,) = res["plain"]
    assert race["ours_steps"] <= 4
    assert race["ours_s"] > 0
    # The plain loop ran until it reached our scores, or its 16 steps.
    assert race["plain_final"][2] > 0
    assert race["plain_steps"] is None or race["plain_steps"] <= 16
    assert "plain fp32 Adam loop" in proc.stdout


def test_the_decode_table_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/decode.py", "--side", "64", "--repeats",
                           "1", "--json", str(tmp_path / "d.json")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "d.json").read_text())
    assert "probe" in proc.stdout


@pytest.mark.slow
def test_the_flicker_report_runs_on_the_cpu(tmp_path: Path, styles_dir: Path) -> None:
    shared = styles_dir.parent
    if not (shared / "content" / "city-beach-skyline.jpg").is_file():
        pytest.skip(f"no test photographs beside the style pack at {shared}")
    proc = _run("flicker.py", "--size", "40", "--frames", "4", "--steps", "4",
                "--follow-steps", "2", "--batch", "2", "--variants", "--out", str(tmp_path),
                env={"STYLEBOT_SHARED_DIR": str(shared)})
    res = json.loads((tmp_path / "flicker.json").read_text())
    assert set(res["clips"]) == {"shape", "pan"}
    for clip in res["clips"].values():
        rows = clip["rows"]
        assert {"independent stills", "animation", "animation, 1 frame a batch",
                "animation, no temporal loss"} <= set(rows)
        assert rows["animation"]["moved"] >= 0
        assert -1.0 < rows["animation"]["gain"] <= 1.0
        assert -1.0 < rows["animation"]["keep_off_grid"] <= 1.0
        assert clip["ratio"]["moved"] > 0
    assert (tmp_path / "shape.png").is_file()
    assert (tmp_path / "pan.png").is_file()
    assert "flicker ratio" in proc.stdout
