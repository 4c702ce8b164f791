import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_latency_script_measures_served_eager_and_network_alone(tmp_path: Path) -> None:
    # The script a session with a lent GPU runs in one call; here on the CPU, with this
    # interpreter standing in for the GPU machine's python3 and no wheels to install.
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "PYTHON": sys.executable,
        "REPEATS": "2",
        "OUT": str(tmp_path / "out"),
        "WHEELS": str(tmp_path / "no-wheels"),
    }
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "device_latency.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for section in ("== served ==", "== eager ==", "== network ==", "== edge refinement, 256 -> 512 px =="):
        assert section in done.stdout
    assert "largest difference from OpenCV's" in done.stdout
    served = json.loads((tmp_path / "out" / "served" / "model_latency.json").read_text())
    network = json.loads((tmp_path / "out" / "network" / "model_latency.json").read_text())
    assert (tmp_path / "out" / "eager" / "model_latency.json").exists()
    assert "boundary refiner" in served["device"] and "boundary refiner" not in network["device"]
    for figures in (served, network):
        click = figures["warm boundary click"]
        assert 0 < click["p50"] <= click["p90"] <= click["p99"]
    assert (tmp_path / "out" / "served" / "model_latency.png").stat().st_size > 1000
