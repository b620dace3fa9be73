"""constraints.txt pins every dependency pyproject.toml declares, within its bounds.

``make setup``, both images and ``make bench-kube`` install with ``-c
constraints.txt``; a dependency added to pyproject.toml but not pinned would
float again, and a pin outside a declared bound would make pip refuse the
install on a fresh clone.
"""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging.lock import CONSTRAINTS, pins

PYPROJECT = CONSTRAINTS.parent / "pyproject.toml"


def declared() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


def test_every_declared_dependency_is_pinned_within_its_bounds() -> None:
    pinned = pins()
    requirements = [r for r in declared() if r.marker is None or r.marker.evaluate()]
    assert len(requirements) > 20, requirements
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is declared but not in constraints.txt"
        version = pinned[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"constraints.txt pins {requirement.name}=={version}, outside {requirement}"
        )


def test_the_operator_itself_is_not_pinned() -> None:
    # An install of the working tree (-e .) must not be held to an older release of itself.
    assert not {"mcp-health-operator", "mcp-health-testbed"} & pins().keys()
