"""The container images a single-node cluster runs, built on this machine.

No registry is reachable from the machines this project targets and there is
no Docker engine, so every image is made locally with buildah:

* ``docker.io/library/python:3.11-slim``: Debian bookworm from ``debootstrap``
  (python3, venv, pip, CA certificates), trimmed like Debian's slim images;
* ``localhost/mcp-health/pause:3.10``: ``hack/cluster/pause.c``, static;
* ``docker.io/library/mcp-health-operator:<appVersion>``: the repository's
  unchanged ``Dockerfile`` (the tag is the Helm chart's ``appVersion``);
* ``localhost/mcp-health/sample-servers:dev``: ``examples/Dockerfile``, the
  sample MCP servers and PostgreSQL 15;
* ``localhost/mcp-health/coredns:<version>``: the CoreDNS binary of
  :mod:`.coredns`.

Each image is keyed by a hash of its inputs (and of the images it builds on)
and rebuilt only when that key changes; each is exported to a docker-archive
that :func:`import_images` loads into a containerd. Everything lives under
``<cache>/images/`` (see :func:`.controlplane.cache_dir`): the debootstrap
tarball, buildah's storage (``storage/``, ``runroot/``, from a generated
``storage.conf``), the archives, build logs and the keys.

Usage::

    python -m mcp_health_testbed.images build          # all, cached
    python -m mcp_health_testbed.images import --address /run/containerd/containerd.sock
    python -m mcp_health_testbed.images list
    python -m mcp_health_testbed.images verify         # a throwaway containerd
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mcp_health_testbed import _procs
from mcp_health_testbed.controlplane import cache_dir

REPO = Path(__file__).resolve().parents[2]

PYTHON_IMAGE = "docker.io/library/python:3.11-slim"
PAUSE_IMAGE = "localhost/mcp-health/pause:3.10"
SAMPLES_IMAGE = "localhost/mcp-health/sample-servers:dev"

SUITE = "bookworm"
MIRROR = os.environ.get("MCP_HEALTH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The image config python:3.11-slim users rely on (its Python is Debian's here).
_BASE_CONFIG = (
    "--env",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--env",
    "LANG=C.UTF-8",
    "--cmd",
    '["python3"]',
)

# As in Debian's slim images: later apt installs leave these out too.
_DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
_APT_CONF = {
    # Package caches would otherwise stay in every layer that runs apt-get.
    "docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "docker-no-languages": 'Acquire::Languages "none";\n',
}
# Paths (relative to the root) removed after debootstrap: caches, logs, device
# nodes (runtimes make their own), and what Debian's slim images leave out.
_TRIM_GLOBS = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/*",
    "dev/*",
    "usr/share/groff/*",
    "usr/share/info/*",
    "usr/share/linda/*",
    "usr/share/lintian/overrides/*",
    "usr/share/locale/*",
    "usr/share/man/*",
    # python:3.11-slim has no PEP 668 marker: pip in a Dockerfile behaves as upstream.
    "usr/lib/python3*/EXTERNALLY-MANAGED",
)
_ROOTFS_FORMAT = 2  # bump when the rootfs recipe changes in a way the inputs do not show

# Files the image builds never read: never part of a key.
_SKIP_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def images_dir() -> Path:
    return cache_dir() / "images"


def app_version(chart: Path | None = None) -> str:
    """The Helm chart's ``appVersion``: the operator image's tag."""
    text = (chart or REPO / "helm" / "mcp-health-operator" / "Chart.yaml").read_text()
    found = re.search(r"""^appVersion:\s*["']?([^"'\s#]+)""", text, re.MULTILINE)
    if found is None:
        raise RuntimeError("no appVersion in the Helm chart's Chart.yaml")
    return found.group(1)


def operator_image() -> str:
    return f"docker.io/library/mcp-health-operator:{app_version()}"


# --- buildah, with all its state under the cache ---------------------------------

# `buildah commit` (1.28) keeps a blob-info cache in /var/lib/containers/cache
# whatever the storage configuration says; nothing else lands outside the cache.
_SYSTEM_BLOB_CACHE = Path("/var/lib/containers")


class Buildah:
    """``buildah`` bound to a storage of its own under ``<cache>/images/``.

    A generated ``storage.conf`` (``CONTAINERS_STORAGE_CONF``) holds the
    graph root and run root; overlay when the kernel allows it here, vfs
    otherwise. A generated ``containers.conf`` (``CONTAINERS_CONF``) keeps the
    network backend's files there too.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.logs = root / "logs"
        for path in (root, self.tmp, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.exe = shutil.which("buildah") or "/usr/bin/buildah"
        containers_conf = root / "containers.conf"
        # Every buildah command sets up a network backend, even for host-network
        # builds: netavark (the default here) would put a lock in
        # /etc/containers/networks and its state in /run/containers; CNI keeps
        # only a lock file, in network_config_dir.
        containers_conf.write_text(
            f'[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "{root / "network"}"\n'
        )
        self.env = dict(
            os.environ,
            CONTAINERS_STORAGE_CONF=str(root / "storage.conf"),
            CONTAINERS_CONF=str(containers_conf),
            # Layer diffs and archives are staged in TMPDIR (else /var/tmp).
            TMPDIR=str(self.tmp),
        )
        self._made_system_dir = not _SYSTEM_BLOB_CACHE.exists()
        self.driver = self._storage()

    def close(self) -> None:
        """Remove the blob-info cache buildah wrote outside its storage, if it was ours."""
        if (
            self._made_system_dir
            and _SYSTEM_BLOB_CACHE.exists()
            and {p.name for p in _SYSTEM_BLOB_CACHE.iterdir()} <= {"cache"}
        ):
            shutil.rmtree(_SYSTEM_BLOB_CACHE, ignore_errors=True)

    def _storage_conf(self, driver: str) -> str:
        return (
            "[storage]\n"
            f'driver = "{driver}"\n'
            f'graphroot = "{self.root / "storage"}"\n'
            f'runroot = "{self.root / "runroot"}"\n'
        )

    def _storage(self) -> str:
        conf = self.root / "storage.conf"
        if conf.exists():
            # A store keeps the driver it was made with.
            found = re.search(r'^driver = "(\w+)"', conf.read_text(), re.MULTILINE)
            if found:
                conf.write_text(self._storage_conf(found.group(1)))
                return found.group(1)
        for driver in ("overlay", "vfs"):
            conf.write_text(self._storage_conf(driver))
            probe = subprocess.run(
                [self.exe, "info"], env=self.env, capture_output=True, text=True, check=False
            )
            if probe.returncode == 0:
                return driver
            # A store half set up by the failed driver would confuse the next one.
            for sub in ("storage", "runroot"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
        raise RuntimeError(f"buildah cannot set up a storage: {probe.stderr.strip()}")

    def __call__(self, *args: str, log: Path | None = None) -> str:
        """Run ``buildah args``; its stdout, or appended to ``log`` when given."""
        argv = [self.exe, *args]
        if log is None:
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"buildah {' '.join(args)} failed: {done.stderr.strip()}")
            return done.stdout.strip()
        with log.open("ab") as out:
            out.write(f"\n$ buildah {' '.join(args)}\n".encode())
            out.flush()
            code = subprocess.run(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        if code != 0:
            raise RuntimeError(f"buildah {args[0]} failed ({code}){_procs.tail(log)}")
        return ""

    def has_image(self, ref: str) -> bool:
        done = subprocess.run(
            [self.exe, "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref],
            env=self.env,
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def image_id(self, ref: str) -> str:
        return self("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref)

    def image_size(self, ref: str) -> str:
        """Unpacked size, as ``buildah images`` reports it (e.g. "151 MB")."""
        return str(json.loads(self("images", "--json", ref))[0]["size"])

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[str]:
        """A working container from scratch, removed whatever happens."""
        container = self("from", "--name", f"mcp-health-build-{name}-{os.getpid()}", "scratch")
        try:
            yield container
        finally:
            subprocess.run(
                [self.exe, "rm", container], env=self.env, capture_output=True, check=False
            )


# --- recipes -----------------------------------------------------------------------

Inputs = Iterable[tuple[str, bytes]]


@dataclass(frozen=True)
class Recipe:
    name: str
    ref: str
    needs: tuple[str, ...]
    inputs: Callable[[], Inputs]
    make: Callable[[Buildah, Recipe, Path], None]


def _digest(items: Inputs) -> str:
    h = hashlib.sha256()
    for name, data in items:
        for part in (name.encode(), data):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


def _files(*paths: Path) -> Iterator[tuple[str, bytes]]:
    """Each file (recursively), named relative to the repository, with its exec bit."""
    for top in paths:
        found = sorted(top.rglob("*")) if top.is_dir() else [top]
        for path in found:
            rel = path.relative_to(REPO)
            if path.suffix == ".pyc" or any(
                part in _SKIP_PARTS or part.endswith(".egg-info") for part in rel.parts
            ):
                continue
            if path.is_file():
                mode = b"x" if os.access(path, os.X_OK) else b"-"
                yield str(rel), mode + path.read_bytes()


def _run_logged(argv: Sequence[str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        code = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{argv[0]} failed ({code}){_procs.tail(log)}")


# base: debootstrap, trimmed, imported --------------------------------------------


def _rootfs_inputs() -> Inputs:
    yield "suite", f"{SUITE} {MIRROR} minbase {_ROOTFS_FORMAT}".encode()
    yield "packages", " ".join(BASE_PACKAGES).encode()
    yield "dpkg", _DPKG_EXCLUDES.encode()
    yield "apt", json.dumps(_APT_CONF, sort_keys=True).encode()
    yield "trim", "\n".join(_TRIM_GLOBS).encode()


def rootfs_tarball(log: Path | None = None) -> Path:
    """The trimmed debootstrap root filesystem, made once and cached."""
    out = images_dir() / f"rootfs-{SUITE}-{_digest(_rootfs_inputs())[:16]}.tar"
    if out.exists():
        return out
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    log = log or images_dir() / "logs" / "rootfs.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"debootstrap {SUITE} from {MIRROR} (a few minutes; log {log})", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=images_dir()))
    target = work / "rootfs"
    try:
        try:
            _run_logged(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    SUITE,
                    str(target),
                    MIRROR,
                ],
                log,
            )
        finally:
            # debootstrap mounts /proc and /sys in the target; a failed run
            # may leave them, and removing the tree must not descend into them.
            unmount_below(target)
        trim_rootfs(target)
        partial = work / "rootfs.tar"
        _run_logged(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(target), "-cf", str(partial), "."],
            log,
        )
        os.replace(partial, out)
    finally:
        unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)
    for old in images_dir().glob(f"rootfs-{SUITE}-*.tar"):
        if old != out:
            old.unlink()
    return out


def trim_rootfs(root: Path) -> None:
    for pattern in _TRIM_GLOBS:
        for path in root.glob(pattern):
            _remove(path)
    doc = root / "usr" / "share" / "doc"
    for package in doc.iterdir() if doc.is_dir() else ():
        if package.is_dir() and not package.is_symlink():
            for item in package.iterdir():
                if item.name != "copyright":
                    _remove(item)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(_DPKG_EXCLUDES)
    for name, text in _APT_CONF.items():
        (root / "etc/apt/apt.conf.d" / name).write_text(text)
    # Package scripts must not start services inside an image build.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    # Runtimes mount their own over these; the host's must not leak into images.
    for name, text in (
        ("resolv.conf", ""),
        ("hostname", "localhost\n"),
        ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    ):
        (root / "etc" / name).write_text(text)
        (root / "etc" / name).chmod(0o644)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def unmount_below(path: Path) -> None:
    """Unmount everything mounted at or under ``path``, deepest first."""
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    inside = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(set(inside), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _make_base(b: Buildah, recipe: Recipe, log: Path) -> None:
    tarball = rootfs_tarball(log)
    with b.scratch(recipe.name) as container:
        b("add", container, str(tarball), "/", log=log)
        b("config", *_BASE_CONFIG, container)
        b("commit", "--rm", container, recipe.ref, log=log)


# pause ------------------------------------------------------------------------------

PAUSE_SOURCE = REPO / "hack" / "cluster" / "pause.c"
_PAUSE_CFLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror")


def _pause_inputs() -> Inputs:
    yield from _files(PAUSE_SOURCE)
    version = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True)
    yield "gcc", f"{version.stdout.strip()} {' '.join(_PAUSE_CFLAGS)}".encode()


def _make_pause(b: Buildah, recipe: Recipe, log: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pause-", dir=b.tmp) as work:
        binary = Path(work, "pause")
        _run_logged(["gcc", *_PAUSE_CFLAGS, "-o", str(binary), str(PAUSE_SOURCE)], log)
        with b.scratch(recipe.name) as container:
            b("copy", container, str(binary), "/pause", log=log)
            # The upstream pause image's user: nobody that owns anything.
            b("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
            b("commit", "--rm", container, recipe.ref, log=log)


# images built from a Dockerfile ------------------------------------------------------

# The default (oci isolation, a private network) has each RUN step set up by
# runc in a cgroup of its own, on a network for which netavark creates a
# bridge, NAT rules, an IPAM database in /run/containers and turns on
# ip_forward: host state that outlives the build. A chroot with namespaces on
# the host's network needs none of it, and pip and apt reach PyPI and the
# Debian mirror the way the host does (through its proxy).
_BUD_ISOLATION = ("--isolation", "chroot", "--network", "host")
# The host's CA bundle, read-only and only while RUN steps execute: pip needs
# it to trust the HTTPS proxy, and no image keeps it.
_BUD_CA = ("-v", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro")


def _bud_args(dockerfile: Path, ref: str, ignorefile: Path | None) -> list[str]:
    args = ["bud", "--pull=never", *_BUD_ISOLATION, *_BUD_CA]
    # The Dockerfiles' FROM python:3.11-slim, spelled out: a short name would
    # go through short-name resolution (registries.conf, an alias cache under
    # /var/cache/containers) only to arrive at the same local image.
    args += ["--build-arg", f"PYTHON_IMAGE={PYTHON_IMAGE}"]
    # --force-rm: a failed step leaves no working container behind.
    args += ["--layers=false", "--force-rm", "-f", str(dockerfile), "-t", ref]
    if ignorefile is not None:
        args += ["--ignorefile", str(ignorefile)]
    return [*args, str(REPO)]


def _bud_recipe(
    name: str, ref: str, dockerfile: Path, sources: Sequence[Path], ignorefile: Path | None
) -> Recipe:
    def inputs() -> Inputs:
        yield from _files(dockerfile, *sources)
        if ignorefile is not None:
            yield from _files(ignorefile)
        # Without the paths, which differ per checkout but do not change the image.
        yield "bud", " ".join(_bud_args(Path("Dockerfile"), ref, None)[:-1]).encode()

    def make(b: Buildah, recipe: Recipe, log: Path) -> None:
        b(*_bud_args(dockerfile, recipe.ref, ignorefile), log=log)

    return Recipe(name, ref, ("base",), inputs, make)


_PROJECT = (
    REPO / "pyproject.toml",
    REPO / "README.md",
    REPO / "constraints.txt",
    REPO / "operator",
)


# coredns ----------------------------------------------------------------------------


def _coredns_recipe() -> Recipe:
    from mcp_health_testbed.coredns import COREDNS_VERSION, coredns_binary

    def inputs() -> Inputs:
        yield "version", COREDNS_VERSION.encode()
        yield "coredns", hashlib.sha256(coredns_binary().read_bytes()).digest()

    def make(b: Buildah, recipe: Recipe, log: Path) -> None:
        with b.scratch(recipe.name) as container:
            b("copy", "--chmod", "0755", container, str(coredns_binary()), "/coredns", log=log)
            b("config", "--entrypoint", '["/coredns"]', container)
            b("commit", "--rm", container, recipe.ref, log=log)

    return Recipe("coredns", f"localhost/mcp-health/coredns:{COREDNS_VERSION}", (), inputs, make)


def recipes() -> dict[str, Recipe]:
    """Every image, dependencies before their dependents."""
    found = [
        Recipe("base", PYTHON_IMAGE, (), _base_inputs, _make_base),
        Recipe("pause", PAUSE_IMAGE, (), _pause_inputs, _make_pause),
        _bud_recipe(
            "operator",
            operator_image(),
            REPO / "Dockerfile",
            [*_PROJECT, REPO / ".dockerignore"],
            None,
        ),
        _bud_recipe(
            "samples",
            SAMPLES_IMAGE,
            REPO / "examples" / "Dockerfile",
            [*_PROJECT, REPO / "examples" / "sample_mcp", REPO / "hack/cluster/sample-postgres"],
            REPO / "examples" / "Dockerfile.dockerignore",
        ),
        _coredns_recipe(),
    ]
    return {recipe.name: recipe for recipe in found}


def _base_inputs() -> Inputs:
    yield "rootfs", _digest(_rootfs_inputs()).encode()
    yield "config", " ".join(_BASE_CONFIG).encode()


# --- building, exporting, importing --------------------------------------------------


def archive_path(name: str) -> Path:
    return images_dir() / "archives" / f"{name}.tar"


def _state_path(name: str) -> Path:
    return images_dir() / "state" / f"{name}.json"


def _state(name: str) -> dict[str, object]:
    try:
        data = json.loads(_state_path(name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One image build at a time across processes."""
    images_dir().mkdir(parents=True, exist_ok=True)
    with open(images_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _order(wanted: Iterable[str], all_recipes: dict[str, Recipe]) -> list[Recipe]:
    out: list[Recipe] = []

    def visit(name: str) -> None:
        if name not in all_recipes:
            raise KeyError(f"no image named {name!r}; known: {', '.join(all_recipes)}")
        recipe = all_recipes[name]
        for dep in recipe.needs:
            visit(dep)
        if recipe not in out:
            out.append(recipe)

    for name in wanted:
        visit(name)
    return out


@dataclass
class Built:
    """What :func:`build` did for one image."""

    name: str
    ref: str
    archive: Path
    cached: bool
    seconds: float


def build(names: Sequence[str] | None = None, *, force: bool = False) -> list[Built]:
    """Build (or reuse) the images ``names`` (default all) and their dependencies.

    An image is rebuilt when its key (a hash of its inputs and of its
    dependencies' keys) differs from the one recorded with its archive, when
    the archive is missing, or when ``force`` and it was named.
    """
    all_recipes = recipes()
    wanted = list(names or all_recipes)
    done: list[Built] = []
    with _lock():
        b = Buildah(images_dir())
        try:
            keys: dict[str, str] = {}
            for recipe in _order(wanted, all_recipes):
                deps = [(f"needs:{dep}", keys[dep].encode()) for dep in recipe.needs]
                keys[recipe.name] = _digest([*recipe.inputs(), *deps])
                forced = force and recipe.name in wanted
                done.append(_build_one(b, recipe, keys[recipe.name], all_recipes, forced))
        finally:
            b.close()
    return done


def _build_one(
    b: Buildah, recipe: Recipe, key: str, all_recipes: dict[str, Recipe], force: bool
) -> Built:
    started = time.monotonic()
    archive = archive_path(recipe.name)
    state = _state(recipe.name)
    if (
        not force
        and state.get("key") == key
        and state.get("ref") == recipe.ref
        and archive.exists()
    ):
        return Built(recipe.name, recipe.ref, archive, True, time.monotonic() - started)
    log = b.logs / f"{recipe.name}.log"
    log.write_text("")
    print(f"building {recipe.ref} (log {log})", file=sys.stderr, flush=True)
    for dep in recipe.needs:
        _ensure_stored(b, all_recipes[dep])
    recipe.make(b, recipe, log)
    _export(b, recipe, archive)
    # Images of earlier builds that lost their tag.
    b("rmi", "--prune", log=log)
    seconds = time.monotonic() - started
    _state_path(recipe.name).parent.mkdir(parents=True, exist_ok=True)
    _state_path(recipe.name).write_text(
        json.dumps(
            {
                "ref": recipe.ref,
                "key": key,
                "image_id": b.image_id(recipe.ref),
                "seconds": round(seconds, 1),
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    return Built(recipe.name, recipe.ref, archive, False, seconds)


def _ensure_stored(b: Buildah, recipe: Recipe) -> None:
    """Put a dependency back into buildah's storage from its archive if it went missing."""
    if b.has_image(recipe.ref):
        return
    image = b("pull", "--quiet", f"docker-archive:{archive_path(recipe.name)}")
    b("tag", image, recipe.ref)


def _export(b: Buildah, recipe: Recipe, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    b("push", "--quiet", recipe.ref, f"docker-archive:{partial}:{recipe.ref}")
    os.replace(partial, archive)


def _ctr(address: str, namespace: str, *args: str) -> str:
    ctr = shutil.which("ctr")
    if ctr is None:
        raise RuntimeError("ctr (from containerd) is needed to import images")
    done = subprocess.run(
        [ctr, "--address", address, "-n", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def import_images(
    address: str,
    namespace: str = "k8s.io",
    *,
    names: Sequence[str] | None = None,
    snapshotter: str | None = None,
) -> None:
    """Import the built archives into the containerd listening on ``address``.

    ``k8s.io`` is the namespace the kubelet's CRI uses; the images keep the
    names above, which is how pods must refer to them (with a pull policy
    that never pulls).
    """
    all_recipes = recipes()
    chosen = [all_recipes[name] for name in (names or all_recipes)]
    for recipe in chosen:
        archive = archive_path(recipe.name)
        if not archive.exists() or _state(recipe.name).get("ref") != recipe.ref:
            raise FileNotFoundError(
                f"no archive of {recipe.ref}: run `python -m mcp_health_testbed.images build` first"
            )
        extra = ["--snapshotter", snapshotter] if snapshotter else []
        _ctr(address, namespace, "images", "import", *extra, str(archive))
    listed = set(_ctr(address, namespace, "images", "ls", "-q").split())
    missing = [r.ref for r in chosen if r.ref not in listed]
    if missing:
        raise RuntimeError(f"imported, but containerd does not list {missing}")


# --- a throwaway containerd, to check the archives import as named -------------------

_CONTAINERD_CONFIG = """\
version = 2
root = "{work}/root"
state = "{work}/state"

[grpc]
  address = "{work}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # This machine forbids lowering a process's oom_score_adj.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{work}/cni/bin"
    conf_dir = "{work}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"""


@contextlib.contextmanager
def throwaway_containerd() -> Iterator[str]:
    """A containerd whose root, state and socket are in a temporary folder; its address."""
    containerd = shutil.which("containerd")
    if containerd is None:
        raise RuntimeError("containerd is not installed")
    work = Path(tempfile.mkdtemp(prefix="mcp-health-containerd-"))
    config = work / "config.toml"
    config.write_text(_CONTAINERD_CONFIG.format(work=work, pause=PAUSE_IMAGE))
    address = str(work / "containerd.sock")
    log = work / "containerd.log"
    proc = subprocess.Popen(
        [containerd, "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {proc.returncode}{_procs.tail(log)}")
            ok = subprocess.run(
                ["ctr", "--address", address, "version"], capture_output=True, check=False
            )
            if ok.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"containerd did not answer{_procs.tail(log)}")
            time.sleep(0.2)
        yield address
    finally:
        _procs.stop(proc, sig=signal.SIGTERM)
        unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)


def verify(names: Sequence[str] | None = None) -> list[str]:
    """Import the archives into a throwaway containerd; the names it lists."""
    with throwaway_containerd() as address:
        import_images(address, names=names)
        return sorted(_ctr(address, "k8s.io", "images", "ls", "-q").split())


def run_entrypoint(ref: str, *args: str, user: str = "65532:65532") -> str:
    """Run ``ref``'s entrypoint with ``args`` as ``user`` (buildah run); its output."""
    b = Buildah(images_dir())
    try:
        config = json.loads(b("inspect", "--type", "image", ref))["OCIv1"]["config"]
        entrypoint = [str(word) for word in config.get("Entrypoint") or []]
        name = f"mcp-health-run-{os.getpid()}"
        container = b("from", "--pull=never", "--name", name, ref)
        try:
            return b("run", *_BUD_ISOLATION, "--user", user, container, "--", *entrypoint, *args)
        finally:
            subprocess.run([b.exe, "rm", container], env=b.env, capture_output=True, check=False)
    finally:
        b.close()


# --- command line ---------------------------------------------------------------------


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.exists() else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_health_testbed.images")
    sub = parser.add_subparsers(dest="command", required=True)
    bld = sub.add_parser("build", help="build what is missing or changed, export the archives")
    bld.add_argument("names", nargs="*", help="images (default all): base pause operator ...")
    bld.add_argument("--force", action="store_true", help="rebuild the named images anyway")
    imp = sub.add_parser("import", help="import the archives into a running containerd")
    imp.add_argument("--address", required=True, help="containerd's socket")
    imp.add_argument("--namespace", default="k8s.io")
    imp.add_argument("--snapshotter", default=None)
    imp.add_argument("names", nargs="*")
    sub.add_parser("list", help="the images, their archives and last build times")
    ver = sub.add_parser(
        "verify",
        help="import into a throwaway containerd and list the names; run the operator "
        "image's entrypoint (--help) as uid 65532",
    )
    ver.add_argument("names", nargs="*")
    args = parser.parse_args(argv)

    if args.command == "build":
        for item in build(args.names or None, force=args.force):
            how = "cached" if item.cached else "built"
            how += f" in {item.seconds:.1f}s"
            print(f"{item.name:9} {item.ref:55} {how:18} {item.archive} ({_size(item.archive)})")
    elif args.command == "import":
        import_images(
            args.address, args.namespace, names=args.names or None, snapshotter=args.snapshotter
        )
        print(f"imported into {args.address} ({args.namespace})")
    elif args.command == "list":
        b = Buildah(images_dir())
        try:
            for name, recipe in recipes().items():
                seconds = _state(name).get("seconds", "-")
                archive = archive_path(name)
                stored = b.has_image(recipe.ref)
                size = b.image_size(recipe.ref) if stored else "-"
                print(
                    f"{name:9} {recipe.ref:55} image {size:>9}  last build {seconds}s  "
                    f"{archive} ({_size(archive)})"
                )
        finally:
            b.close()
    else:
        for ref in verify(args.names or None):
            print(ref)
        if not args.names or "operator" in args.names:
            print(run_entrypoint(operator_image(), "--help").splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
