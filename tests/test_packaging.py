import re
import tomllib

from kit.config import REPO_ROOT


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_runtime_packages_of_pyproject():
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = (REPO_ROOT / "environment.yml").read_text()
    pip_lines = [line.strip()[2:] for line in env.split("pip:", 1)[1].splitlines() if line.strip().startswith("- ")]
    pinned_env = {_name(r): r.replace(" ", "") for r in pip_lines if not r.startswith("-e")}
    assert {_name(d): d.replace(" ", "") for d in deps} == pinned_env
    assert "python=3.11" in env
