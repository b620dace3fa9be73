"""A real Prometheus (the Debian package's binary) on loopback, for tests.

Started with a temporary config and storage directory on a free port; the
HTTP API answers queries, rules and alerts. Reusable by any test that needs
Prometheus to scrape something (``scrape_targets``) or evaluate the alert
rules (``rule_files``)::

    with Prometheus(tmp_path, rule_files=[RULES], scrape_targets=["127.0.0.1:9090"]) as prom:
        prom.wait_for_samples("mcp_operator_info")
        prom.query("mcp_health_status")
        prom.alerts()
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_health_testbed import _procs

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "mcp-health-rules.yaml"


class PromQLError(Exception):
    """Prometheus refused an expression (HTTP 400 ``bad_data``, e.g. a parse error)."""


def binary(name: str = "prometheus") -> Path:
    """``prometheus`` or ``promtool`` from PATH (Debian package ``prometheus``)."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found is None:
        raise RuntimeError(
            f"{name} not found: install the Debian package 'prometheus' (make system-deps)"
        )
    return Path(found)


@dataclass
class Prometheus:
    """A Prometheus process; ``start()``/``stop()`` or use as a context manager."""

    workdir: Path
    rule_files: Sequence[Path] = ()
    scrape_targets: Sequence[str] = ()
    scrape_interval: str = "1s"
    evaluation_interval: str = "1s"
    job: str = "mcp-health-operator"
    host: str = "127.0.0.1"
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "prometheus.log"

    def config_text(self) -> str:
        # JSON is YAML: no YAML writer needed.
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": list(self.scrape_targets)}],
                }
            ]
            if self.scrape_targets
            else [],
        }
        return json.dumps(config, indent=2)

    def start(self, *, timeout: float = 60) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _procs.free_port(self.host)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config_text())
        self._proc = subprocess.Popen(
            [
                str(binary()),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self._proc.returncode}{_procs.tail(self.log)}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(
            f"prometheus not ready within {timeout}s ({last}){_procs.tail(self.log)}"
        )

    def stop(self) -> None:
        _procs.stop(self._proc)
        self._proc = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP API -----------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a success, PromQLError on ``bad_data``."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            payload = json.loads(exc.read() or b"{}")
            if payload.get("errorType") == "bad_data":
                raise PromQLError(payload.get("error", str(exc))) from None
            raise RuntimeError(f"GET {url}: HTTP {exc.code} {payload}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"GET {url}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (a scalar or string result is wrapped)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (``state`` pending or firing) with their labels."""
        return list(self.api("alerts")["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])

    def wait_for(self, expr: str, *, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns at least one sample."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no samples for {expr!r} within {timeout}s; targets: {self.targets()}"
                )
            time.sleep(0.25)

    def wait_for_alert(
        self, name: str, *, states: Sequence[str] = ("pending", "firing"), timeout: float = 30
    ) -> list[dict[str, Any]]:
        """Poll until alert ``name`` is active in one of ``states``."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                a
                for a in self.alerts()
                if a["labels"].get("alertname") == name and a["state"] in states
            ]
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"alert {name} not {'/'.join(states)} within {timeout}s; "
                    f"active: {[(a['labels'].get('alertname'), a['state']) for a in self.alerts()]}"
                )
            time.sleep(0.25)
