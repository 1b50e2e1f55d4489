"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (with its aggregator) and
kube-controller-manager (with the HPA controller); no kubelet, scheduler or kube-proxy.

The binaries are found as controller-runtime's envtest finds them: the folder named by
``KUBEBUILDER_ASSETS`` holds ``kube-apiserver``, ``kube-controller-manager`` and ``etcd`` (etcd
may also come from ``PATH``, e.g. Debian's ``etcd-server``). :func:`missing_assets` says what is
absent, for the skip reason. Nothing here downloads or builds them.

Network rules (../shared/kube/README.md): everything binds 127.0.0.1; the service CIDR is
TEST-NET-3 (203.0.113.0/24) with an ``unreachable`` route installed for the run, so that an
accidental dial to a ClusterIP fails on this machine instead of leaving it. APIServices point at
``type: ExternalName`` Services with ``externalName: localhost``.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_CIDR = "203.0.113.0/24"
SERVICE_IP = "203.0.113.1"
ADMIN_TOKEN = "cluster-suite-admin-token"
BINARIES = ("kube-apiserver", "kube-controller-manager")


# Finding the binaries -------------------------------------------------------------------------


def asset_paths() -> dict[str, Path | None]:
    """Where each binary is: KUBEBUILDER_ASSETS first, etcd also from PATH."""
    folder = os.environ.get("KUBEBUILDER_ASSETS")
    found: dict[str, Path | None] = {}
    for name in (*BINARIES, "etcd"):
        path = Path(folder, name) if folder else None
        if path is not None and path.is_file() and os.access(path, os.X_OK):
            found[name] = path
        elif name == "etcd" and (which := shutil.which("etcd")):
            found[name] = Path(which)
        else:
            found[name] = None
    return found


def missing_assets() -> str | None:
    """Why the control plane cannot start here, or None when it can."""
    folder = os.environ.get("KUBEBUILDER_ASSETS")
    absent = [name for name, path in asset_paths().items() if path is None]
    if absent:
        where = f"KUBEBUILDER_ASSETS={folder}" if folder else "KUBEBUILDER_ASSETS is not set"
        return (
            f"no real control plane: {', '.join(absent)} not found ({where}; etcd may also be "
            "on PATH). These tests need kube-apiserver and kube-controller-manager v1.28+ "
            "binaries, which CI does not have."
        )
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return (
            "no real control plane: installing the mandatory unreachable route for the test "
            f"service CIDR {SERVICE_CIDR} needs root and `ip` (iproute2)"
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Certificates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path

    def pem(self) -> bytes:
        return self.cert.read_bytes()


def _name(cn: str, org: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


class Authority:
    """A throwaway CA that signs serving and client certificates (ECDSA P-256, one day)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = _name(f"{name} (cluster test suite)")
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )  # fmt: skip
        self.pair = self._write(name, self._cert, self._key)

    def _write(self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return KeyPair(cert_path, key_path)

    def issue(
        self,
        stem: str,
        cn: str,
        *,
        org: str | None = None,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        server: bool = False,
        client: bool = False,
    ) -> KeyPair:
        import ipaddress  # noqa: PLC0415

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return self._write(stem, builder.sign(self._key, hashes.SHA256()), key)


@dataclass(frozen=True)
class Pki:
    """What ../shared/kube/README.md lists: cluster CA, front-proxy CA, service-account keys."""

    ca: Authority
    front_proxy_ca: Authority
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    front_proxy_client: KeyPair
    sa_key: Path
    sa_pub: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        ca = Authority(directory, "ca")
        front = Authority(directory, "front-proxy-ca")
        sa = ec.generate_private_key(ec.SECP256R1())
        sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
        sa_key.write_bytes(
            sa.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        sa_key.chmod(0o600)
        sa_pub.write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(
            ca=ca,
            front_proxy_ca=front,
            apiserver=ca.issue(
                "apiserver",
                "kube-apiserver",
                dns=(
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ),
                ips=("127.0.0.1", SERVICE_IP),
                server=True,
            ),
            admin=ca.issue("admin", "cluster-admin", org="system:masters", client=True),
            controller_manager=ca.issue(
                "controller-manager", "system:kube-controller-manager", client=True
            ),
            front_proxy_client=front.issue("front-proxy-client", "front-proxy-client", client=True),
            sa_key=sa_key,
            sa_pub=sa_pub,
        )


# Processes ------------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def spawn(name: str, argv: list[str], workdir: Path) -> Process:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Process(name, popen, log)


def wait_until(
    what: str, check: Callable[[], bool], timeout: float, *, interval: float = 0.25
) -> None:
    """Poll ``check`` until it is true; a generous ``timeout`` for a busy machine."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ssl.SSLError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(interval)


# Route guard ----------------------------------------------------------------------------------


@dataclass
class RouteGuard:
    """``ip route add unreachable 203.0.113.0/24`` for the run; removed only if we added it."""

    added: bool = False

    def install(self) -> None:
        shown = subprocess.run(
            ["ip", "route", "show", SERVICE_CIDR],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        if "unreachable" in shown.stdout:
            return  # another run's guard: keep it, do not remove it later
        subprocess.run(
            ["ip", "route", "add", "unreachable", SERVICE_CIDR],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.added = True

    def remove(self) -> None:
        if self.added:
            subprocess.run(
                ["ip", "route", "del", "unreachable", SERVICE_CIDR],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            self.added = False


# The control plane ----------------------------------------------------------------------------


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass
class ControlPlane:
    workdir: Path
    pki: Pki
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    kcm_port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    guard: RouteGuard = field(default_factory=RouteGuard)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    # --- lifetime ---

    def start(self, timeout: float = 120.0) -> None:
        paths = asset_paths()
        self.guard.install()
        self._write_files()
        etcd = paths["etcd"]
        assert etcd is not None
        self.processes.append(
            spawn(
                "etcd",
                [
                    str(etcd),
                    "--data-dir", str(self.workdir / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                    "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                    "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
                    "--initial-cluster", f"default=http://127.0.0.1:{self.etcd_peer_port}",
                    "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
                ],
                self.workdir,
            )
        )  # fmt: skip
        wait_until("etcd /health", self._etcd_healthy, timeout)
        pki = self.pki
        apiserver = paths["kube-apiserver"]
        assert apiserver is not None
        self.processes.append(
            spawn(
                "kube-apiserver",
                [
                    str(apiserver),
                    "--advertise-address=127.0.0.1",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.port}",
                    f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    f"--tls-cert-file={pki.apiserver.cert}",
                    f"--tls-private-key-file={pki.apiserver.key}",
                    f"--client-ca-file={pki.ca.pair.cert}",
                    "--authorization-mode=Node,RBAC",
                    f"--token-auth-file={self.workdir / 'tokens.csv'}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki.sa_pub}",
                    f"--service-account-signing-key-file={pki.sa_key}",
                    f"--requestheader-client-ca-file={pki.front_proxy_ca.pair.cert}",
                    "--requestheader-allowed-names=front-proxy-client",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-username-headers=X-Remote-User",
                    f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
                    f"--proxy-client-key-file={pki.front_proxy_client.key}",
                    "--enable-aggregator-routing=false",
                    "--endpoint-reconciler-type=none",
                    "--profiling=false",
                ],
                self.workdir,
            )
        )
        wait_until("kube-apiserver /readyz", lambda: self._ok(self.url + "/readyz"), timeout)
        kcm = paths["kube-controller-manager"]
        assert kcm is not None
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        self.processes.append(
            spawn(
                "kube-controller-manager",
                [
                    str(kcm),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.kcm_port}",
                    f"--client-ca-file={pki.ca.pair.cert}",
                    f"--requestheader-client-ca-file={pki.front_proxy_ca.pair.cert}",
                    f"--root-ca-file={pki.ca.pair.cert}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--cluster-signing-cert-file={pki.ca.pair.cert}",
                    f"--cluster-signing-key-file={pki.ca.pair.key}",
                    "--use-service-account-credentials=true",
                    "--controllers=*",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--allocate-node-cidrs=false",
                    "--leader-elect=false",
                    f"--flex-volume-plugin-dir={self.workdir / 'flexvolume'}",
                    "--horizontal-pod-autoscaler-sync-period=5s",
                    "--profiling=false",
                ],
                self.workdir,
            )
        )
        wait_until(
            "kube-controller-manager /healthz",
            lambda: self._ok(f"https://127.0.0.1:{self.kcm_port}/healthz", verify=False),
            timeout,
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self.guard.remove()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=2) as r:
            return bool(json.loads(r.read()).get("health") == "true")

    def _ok(self, url: str, *, verify: bool = True) -> bool:
        for process in self.processes:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        context = ssl.create_default_context(cafile=str(self.pki.ca.pair.cert))
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=3, context=context) as r:
            return bool(r.status == 200)

    def _write_files(self) -> None:
        (self.workdir / "flexvolume").mkdir(exist_ok=True)
        (self.workdir / "tokens.csv").write_text(
            f"{ADMIN_TOKEN},cluster-suite-admin,cluster-suite-admin,system:masters\n"
        )
        self.write_kubeconfig(
            self.admin_kubeconfig, cert=self.pki.admin.cert, key=self.pki.admin.key
        )
        self.write_kubeconfig(
            self.workdir / "controller-manager.kubeconfig",
            cert=self.pki.controller_manager.cert,
            key=self.pki.controller_manager.key,
        )

    def write_kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        cert: Path | None = None,
        key: Path | None = None,
    ) -> Path:
        user: dict[str, str] = {}
        if token is not None:
            user["token"] = token
        if cert is not None and key is not None:
            user["client-certificate"] = str(cert)
            user["client-key"] = str(key)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.pki.ca.pair.cert),
                    },
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- clients ---

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str = ADMIN_TOKEN,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        """One API call as ``token``'s user; JSON in and out; ApiError for non-2xx."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        )
        context = ssl.create_default_context(cafile=str(self.pki.ca.pair.cert))
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def status_of(self, path: str, *, token: str = ADMIN_TOKEN) -> int:
        """The HTTP status of a GET (200, 401, 403, ...)."""
        try:
            self.request("GET", path, token=token)
        except ApiError as e:
            return e.status
        return 200

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        stdin: str | None = None,
        timeout: float = 110,
    ) -> subprocess.CompletedProcess[str]:
        from tests.support.kubectl import kubectl_binary  # noqa: PLC0415

        return subprocess.run(
            [kubectl_binary(), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def token_for(self, namespace: str, account: str, seconds: int = 3600) -> str:
        """A bound token of a ServiceAccount (TokenRequest), as kubelet-mounted tokens are."""
        review = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": seconds}},
        )  # fmt: skip
        return str(review["status"]["token"])

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": selector})
        items: list[dict[str, Any]] = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods?{query}"
        )["items"]
        return items

    def mark_running(self, pod: dict[str, Any], *, ready: bool, ready_since: datetime.datetime,
                     ip: str) -> None:  # fmt: skip
        """What a kubelet would report: Running, an IP (data only), Ready since ``ready_since``."""
        since = ready_since.strftime("%Y-%m-%dT%H:%M:%SZ")
        flag = "True" if ready else "False"
        started = (ready_since - datetime.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": started,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                    {"type": "ContainersReady", "status": flag, "lastTransitionTime": since},
                    {"type": "Ready", "status": flag, "lastTransitionTime": since},
                ],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "imageID": "",
                        "ready": ready,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": started}},
                    }
                    for c in pod["spec"]["containers"]
                ],
            }
        }
        meta = pod["metadata"]
        self.request(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            status,
            content_type="application/merge-patch+json",
        )


@dataclass
class Workdir:
    path: Path

    @classmethod
    def create(cls) -> Workdir:
        return cls(Path(tempfile.mkdtemp(prefix="cluster-suite-")))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pod_ips() -> Iterator[str]:
    """Pod IPs from 198.51.100.0/24 (TEST-NET-2): data only, nothing ever connects to them."""
    n = 0
    while True:
        n += 1
        yield f"198.51.100.{n % 250 + 2}"
