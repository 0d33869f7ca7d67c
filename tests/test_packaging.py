"""environment.yml and pyproject.toml list the same packages; the README has its two commands."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip_lines = [line for line in pip_section if not line.startswith("-e")]
    environment = {_name(line) for line in pip_lines}
    assert "-e ." in pip_section and any(str(d).startswith("python>=3.11") for d in env["dependencies"])
    assert pyproject == environment
    versions = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    for line in pip_lines:
        if _name(line) in versions:
            assert line.strip() == versions[_name(line)]


def test_readme_has_exactly_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    commands = [line for block in blocks[:1] for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
