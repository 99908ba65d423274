"""The notebooks: committed without outputs, and each runs top to bottom headless on a short room with
small parameters (injected after the `parameters` cell, as papermill does)."""

import json
import re

import nbformat
import pytest
from nbclient import NotebookClient
from synthetic import SHORT_ROOM

from kit.config import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def execute(name: str, timeout: int = 150, **params):
    """Run a notebook with `params` injected after its `parameters` cell; a failing cell raises."""
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    at = next(i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    book.cells.insert(at + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(book, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return book


def outputs_of(book, kind: str) -> list:
    return [o for c in book.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


def test_the_notebooks_are_there_and_numbered():
    names = [p.name for p in ALL]
    assert {"01-scenario.ipynb", "02-architectures.ipynb", "03-compare.ipynb"} <= set(names)
    assert all(re.fullmatch(r"\d\d-[a-z0-9-]+\.ipynb", n) for n in names), names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    book = json.loads(path.read_text())
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: strip the outputs"
    tagged = [c for c in book["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "one cell tagged `parameters`"
    source = "".join(tagged[0]["source"])
    names = ("participants", "patterns", "archs", "stt", "model") if "scaling" in path.name else ("scenario", "archs", "stt", "model")
    options = ("window", "cpus", "vad_gate", "min_silence", "activation_threshold", "prefix_padding", "stt_price")
    assert all(f"{name} =" in source for name in names + (options if "scenario.ipynb" not in path.name else ()))


def test_01_scenario_runs(tmp_path):
    book = execute("01-scenario.ipynb", scenario="pair-2", results_dir=str(tmp_path))
    assert len(outputs_of(book, "image/png")) == 1, "the timeline"
    assert len(outputs_of(book, "text/html")) >= 3, "audio players and tables"


@pytest.mark.replay
def test_02_architectures_runs_one_design(tmp_path):
    book = execute("02-architectures.ipynb", scenario=SHORT_ROOM, archs=["participant_entrypoint"], stt="delay:0.3",
                   results_dir=str(tmp_path), window=10.0, vad_gate="off", min_silence=0.4)  # fmt: skip
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["complete"]
    config = record["config"]  # the notebook's options reached the run
    assert config["window_s"] == 10.0 and config["vad"]["min_silence_duration"] == 0.4
    assert config["vad"]["gate_dbfs"] is None and config["vad"]["gate_margin_db"] is None
    assert len(outputs_of(book, "image/png")) == 1


@pytest.mark.replay
def test_03_compare_runs_and_exports_the_report(tmp_path):
    book = execute("03-compare.ipynb", scenario=SHORT_ROOM, archs=["multi_session", "participant_entrypoint"],
                   stt="delay:0.3", results_dir=str(tmp_path), stt_price="stt_deepgram_nova3_streaming_minute",
                   activation_threshold=0.6, prefix_padding=0.3)  # fmt: skip
    (run_dir,) = tmp_path.iterdir()
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["stt_price"] == "stt_deepgram_nova3_streaming_minute"
    assert (config["vad"]["activation_threshold"], config["vad"]["prefix_padding_duration"]) == (0.6, 0.3)
    assert (run_dir / "report.html").is_file()
    assert len(outputs_of(book, "image/png")) == 5, "tradeoff, latency, accuracy, cost, timeline"
    verdict = outputs_of(book, "text/markdown")
    assert verdict and "Ship" in verdict[0]["data"]["text/markdown"]


@pytest.mark.replay
def test_04_scaling_runs_a_tiny_sweep(tmp_path):
    book = execute("04-scaling.ipynb", participants=[2], patterns=["all-talk", "meeting"], archs=["participant_entrypoint"],
                   lines=1, stt="delay:0.3", cpus=1, results_dir=str(tmp_path), window=10.0, vad_gate=-60)  # fmt: skip
    sweeps = sorted(tmp_path.iterdir())
    configs = [json.loads(p.read_text())["config"] for p in tmp_path.rglob("run.json")]
    assert configs and all(c["window_s"] == 10.0 and c["vad"]["gate_dbfs"] == -60 for c in configs), configs
    assert len(sweeps) == 2 and all((d / "sweep.csv").is_file() and (d / "fits.csv").is_file() for d in sweeps)
    assert len(outputs_of(book, "image/png")) == 2, "a scaling figure per pattern"
    readings = [o["data"]["text/markdown"] for o in outputs_of(book, "text/markdown") if "held p95" in o["data"]["text/markdown"]]
    assert len(readings) == 2 and all("participant_entrypoint" in r for r in readings)
