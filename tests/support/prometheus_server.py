"""A real Prometheus (the Debian package) on 127.0.0.1, for tests.

::

    with PrometheusServer(["127.0.0.1:9500"]) as prom:
        prom.wait_for('up{job="targets"} == 1', timeout=20)
        prom.query("histogram_quantile(0.95, ...)", at=t)
        prom.stop()    # an outage; the port and data dir are kept
        prom.start()   # back, same URL, same data

- Scrapes ``scrape_targets`` (``host:port``) as job ``targets`` every second
  (``scrape_interval``), evaluation interval the same.
- ``extra_config`` is merged into the generated config: mappings recursively,
  lists appended (so ``{"scrape_configs": [...]}`` adds jobs).
- ``rule_files`` are copied into the config's ``rule_files``.
- Data lives in a temporary directory removed by :meth:`close`; retention 1 h.
- A missing binary raises :class:`PrometheusNotInstalled`: tests fail, they do
  not skip. The binary is ``$PROMETHEUS_BINARY``, ``/usr/bin/prometheus`` or
  ``prometheus`` on ``PATH``.

The pytest fixture :func:`prometheus_factory` builds servers and closes them
after the test; import it into a ``conftest.py``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PrometheusNotInstalled", "PrometheusServer", "find_prometheus", "prometheus_factory"]


class PrometheusNotInstalled(RuntimeError):
    """No Prometheus binary: install the Debian package ``prometheus``."""


def find_prometheus() -> str:
    candidates = [
        os.environ.get("PROMETHEUS_BINARY"),
        "/usr/bin/prometheus",
        shutil.which("prometheus"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PrometheusNotInstalled(
        "Prometheus is not installed: these tests need the real server "
        "(apt-get install prometheus, or set PROMETHEUS_BINARY)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, list) and isinstance(base.get(key), list):
            base[key].extend(copy.deepcopy(value))
        else:
            base[key] = copy.deepcopy(value)
    return base


class PrometheusServer:
    def __init__(
        self,
        scrape_targets: list[str],
        extra_config: dict[str, Any] | None = None,
        rule_files: list[Path] | None = None,
        *,
        scrape_interval: str = "1s",
        port: int | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.binary = find_prometheus()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        self.data_dir = self._tmp / "data"
        self.config_path = self._tmp / "prometheus.yml"
        self.log_path = self._tmp / "prometheus.log"
        self._ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.config = self._config(
            scrape_targets, extra_config or {}, rule_files or [], scrape_interval
        )
        self._write_config()

    @staticmethod
    def _config(
        targets: list[str], extra: Mapping[str, Any], rule_files: list[Path], interval: str
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "targets",
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
            "rule_files": [str(Path(p).resolve()) for p in rule_files],
        }
        return _merge(config, extra)

    def _write_config(self) -> None:
        # JSON is YAML: no YAML dependency here.
        self.config_path.write_text(json.dumps(self.config, indent=2))

    # --- lifetime ---

    def start(self) -> PrometheusServer:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # a fixed binary, our own arguments
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir}",
                "--storage.tsdb.retention.time=1h",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"Prometheus exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"Prometheus not ready after {self._ready_timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server, keeping its port and data (``start`` brings it back)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reload(self, scrape_targets: list[str] | None = None) -> None:
        """Rewrite the config (new targets, if given) and reload it in place."""
        if scrape_targets is not None:
            self.config["scrape_configs"][0]["static_configs"] = [{"targets": list(scrape_targets)}]
        self._write_config()
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- the HTTP API ---

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>``; returns ``data``; raises with Prometheus' error text."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise PrometheusQueryError(e.read().decode(errors="replace")) from e
        if body.get("status") != "success":
            raise PrometheusQueryError(json.dumps(body))
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Evaluate an instant query; the ``result`` list (vector elements)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(
        self,
        expr: str,
        timeout: float = 30.0,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``predicate(result)`` holds (default: non-empty)."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if predicate(result):
                return result
            time.sleep(0.25)
        raise TimeoutError(f"{expr!r} did not hold within {timeout}s; last result: {result}")

    def wait_for_targets(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` targets are up."""
        self.wait_for("up == 1", timeout, lambda result: len(result) >= count)


class PrometheusQueryError(RuntimeError):
    """Prometheus refused a query; the message is its answer."""


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """``prometheus_factory(targets, extra_config=None, rule_files=None)`` -> a started server."""
    servers: list[PrometheusServer] = []

    def make(
        scrape_targets: list[str],
        extra_config: dict[str, Any] | None = None,
        rule_files: list[Path] | None = None,
        **kwargs: Any,
    ) -> PrometheusServer:
        server = PrometheusServer(scrape_targets, extra_config, rule_files, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()
