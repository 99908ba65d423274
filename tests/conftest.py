import json
import shutil
from pathlib import Path

import pytest

from kit.config import SCENARIOS_DIR


@pytest.fixture
def pair2_copy(tmp_path) -> Path:
    """A writable copy of the bundled pair-2 room; returns its scenario.json."""
    dst = tmp_path / "pair-2"
    shutil.copytree(SCENARIOS_DIR / "pair-2", dst)
    return dst / "scenario.json"


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
