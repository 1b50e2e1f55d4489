"""``gpu-collector``: argv/env → Settings → run. The only module reading the environment.

Exit status: 0 after SIGTERM/SIGINT, 2 for bad flags or an invalid scenario, 3 when NVML is
unavailable and ``--on-no-nvml exit`` (the default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from collectors.gpu.model import NodeName, NvmlUnavailableError, PodLookup
from collectors.gpu.podlookup import ApiServerPodLookup, NoPodLookup
from collectors.gpu.podresources import DEFAULT_SOCKET, PodResourcesClient
from collectors.gpu.procfs import ProcfsPidResolver
from collectors.gpu.sampler import Sampler
from collectors.gpu.server import CollectorState, build_app, serve
from collectors.gpu.simulate import ScenarioError, Simulation, load_scenario

log = logging.getLogger("collectors.gpu")

EXIT_USAGE = 2
EXIT_NO_NVML = 3


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    """Bind address (``--listen HOST:PORT``); 0.0.0.0 in a cluster, 127.0.0.1 in tests."""
    port: int
    """Bind port; 0 picks a free one (logged)."""
    node: str | None
    """Node name on every series; defaults to $NODE_NAME, else the scenario's, else the hostname."""
    interval_s: float
    """Seconds between ticks."""
    window_s: float
    """Rolling window the averages cover."""
    pod_resources_socket: str
    """The kubelet PodResources unix socket."""
    proc_root: Path
    """Where the host's /proc is mounted (needs hostPID)."""
    simulate: Path | None
    """Scenario file: simulated GPUs instead of NVML, marked simulated everywhere."""
    on_no_nvml: Literal["exit", "not-ready"]
    """Without NVML: exit non-zero, or serve /healthz with /readyz failing."""
    log_level: str


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a DaemonSet serves the pod IP


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpu-collector", description="Per-pod GPU utilization from NVML, for one node."
    )
    p.add_argument(
        "--listen",
        type=_listen,
        default=("0.0.0.0", 9400),  # noqa: S104 - a DaemonSet serves on the pod IP
        metavar="HOST:PORT",
        help="bind address (default 0.0.0.0:9400)",
    )
    p.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME"),
        help="node name label (default $NODE_NAME)",
    )
    p.add_argument(
        "--interval",
        type=_positive,
        default=1.0,
        metavar="SECONDS",
        help="sampling interval (default 1)",
    )
    p.add_argument(
        "--window",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="averaging window (default 10)",
    )
    p.add_argument("--pod-resources-socket", default=DEFAULT_SOCKET, metavar="PATH")
    p.add_argument("--proc-root", type=Path, default=Path("/proc"), metavar="PATH")
    p.add_argument(
        "--simulate",
        type=Path,
        metavar="SCENARIO_FILE",
        help="simulated GPUs from a scenario (demo and tests only; marked simulated)",
    )
    p.add_argument(
        "--on-no-nvml",
        choices=["exit", "not-ready"],
        default="exit",
        help="without NVML: exit non-zero (default) or serve not-ready",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    args = parser().parse_args(argv)
    problems = []
    if args.window < args.interval:
        problems.append(f"--window ({args.window}) must be at least --interval ({args.interval})")
    if args.simulate is not None and not args.simulate.is_file():
        problems.append(f"--simulate: no such file {args.simulate}")
    if problems:
        parser().error("; ".join(problems))
    host, port = args.listen
    return Settings(
        host=host,
        port=port,
        node=args.node_name,
        interval_s=args.interval,
        window_s=args.window,
        pod_resources_socket=args.pod_resources_socket,
        proc_root=args.proc_root,
        simulate=args.simulate,
        on_no_nvml=args.on_no_nvml,
        log_level=args.log_level,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, the same keys in both programs (the adapter and the collector).

    Keys: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``msg``,
    then the record's ``fields`` (structured extras such as the access log's),
    then ``exc`` (the formatted traceback) when there is one.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        entry = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _sampler(settings: Settings) -> tuple[CollectorState, PodLookup]:
    """Build the state; raises NvmlUnavailableError without NVML (not in simulation)."""
    if settings.simulate is not None:
        sim = Simulation(load_scenario(settings.simulate), clock=time.time)
        node = settings.node or sim.scenario.node
        sampler = Sampler(
            sim,
            sim,
            sim,
            sim,
            node=NodeName(node),
            simulated=True,
            interval_s=settings.interval_s,
            window_s=settings.window_s,
        )
        return CollectorState(node, True, sampler), sim
    from collectors.gpu.nvml import NvmlDeviceReader  # noqa: PLC0415 - only real mode loads NVML

    node = settings.node or socket.gethostname()
    reader = NvmlDeviceReader.open()
    lookup: PodLookup = ApiServerPodLookup.in_cluster(node) or NoPodLookup()
    sampler = Sampler(
        reader,
        PodResourcesClient(settings.pod_resources_socket),
        ProcfsPidResolver(settings.proc_root),
        lookup,
        node=NodeName(node),
        interval_s=settings.interval_s,
        window_s=settings.window_s,
    )
    return CollectorState(node, False, sampler), lookup


async def run(settings: Settings, stop: asyncio.Event | None = None) -> int:
    stop = stop or asyncio.Event()
    try:
        state, lookup = _sampler(settings)
    except ScenarioError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except NvmlUnavailableError as exc:
        message = f"NVML is unavailable on this node ({exc}); no GPU utilization can be measured"
        if settings.on_no_nvml == "exit":
            log.error(
                "%s; exiting (use --on-no-nvml not-ready to serve not-ready instead)", message
            )
            return EXIT_NO_NVML
        log.error("%s; serving /readyz as not ready", message)
        node = settings.node or socket.gethostname()
        state, lookup = CollectorState(node, False, None, str(exc)), NoPodLookup()
    if isinstance(lookup, ApiServerPodLookup):
        lookup.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, port = await serve(build_app(state), settings.host, settings.port)
    log.info(
        "listening",
        extra={
            "fields": {
                "host": settings.host,
                "port": port,
                "node": state.node,
                "simulated": state.simulated,
            }
        },
    )
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()
        await _close(state, lookup)
    return 0


async def _close(state: CollectorState, lookup: PodLookup) -> None:
    if isinstance(lookup, ApiServerPodLookup):
        await lookup.close()
    sampler = state.sampler
    if sampler is None:
        return
    with contextlib.suppress(Exception):
        await sampler.close()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    setup_logging(settings.log_level)
    return asyncio.run(run(settings))
