"""The swarm test bed: a real three-node Docker Swarm on one machine, for tests/e2e/test_swarm.py.

Three Docker-in-Docker nodes (DIND_IMAGE: docker:dind, or the stand-in stack-ci/dind that
.ci/provision builds from Debian's docker.io) on a private bridge network of the host's engine:
node1 is the manager, node2 and node3 are workers. Each node's dockerd listens on tcp 2375 on
that network only (the host reaches it at the node's address there); the one port published
to the host is the stack's HTTP port, node1's port 80 on 127.0.0.1:SWARM_WEB_PORT.

Images reach the nodes by `docker save | docker load` (no registry): the app image and Caddy
go to every node (workers and the proxy run anywhere), PostgreSQL and Redis to node1 only (they
are pinned to the data node). Every name (containers, network, volumes) starts with
SWARM_BED_PREFIX, so a CI run and a developer's bed never meet.

Nodes run --privileged when the engine can grant it. An engine whose own capability bounding set
lacks one (this CI machine's lacks CAP_SYS_RESOURCE: runc then fails with "unable to apply
caps") cannot; the nodes then get every capability the engine has, no seccomp/apparmor
confinement, unmasked /proc and /sys, and every device, and the stand-in's entrypoint makes /sys
and the cgroup hierarchies writable as --privileged would.
"""

import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.support.docker import DockerError, docker
from tests.support.wait import WaitTimeout, wait_until

PREFIX = os.environ.get("SWARM_BED_PREFIX", "djcs-swarm")
DIND_IMAGE = os.environ.get("DIND_IMAGE", "docker:dind")
NODES = ("node1", "node2", "node3")
MANAGER = "node1"
PRIVILEGED = ["--privileged"]
ALL_BUT_PRIVILEGED = [
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
]


@dataclass
class Bed:
    prefix: str = PREFIX
    web_port: int = int(os.environ.get("SWARM_WEB_PORT", "28080"))
    image: str = DIND_IMAGE
    addresses: dict[str, str] = field(default_factory=dict)
    mode: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def network(self) -> str:
        return f"{self.prefix}-net"

    def container(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def volume(self, node: str) -> str:
        return f"{self.prefix}-{node}-docker"

    def host(self, node: str = MANAGER) -> str:
        return f"tcp://{self.addresses[node]}:2375"

    def env(self, node: str = MANAGER) -> dict[str, str]:
        """Environment for a docker CLI (or scripts/swarm-deploy) aimed at this node."""
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY")}
        return {**env, "DOCKER_HOST": self.host(node)}

    def docker(
        self, node: str, *args: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """The docker CLI against one node's engine."""
        return docker("-H", self.host(node), *args, check=check, timeout=timeout, input=input)

    # --- life cycle ----------------------------------------------------------------------------

    def remove(self) -> None:
        for node in NODES:
            docker("rm", "-f", "-v", self.container(node), check=False, timeout=120)
        for node in NODES:
            docker("volume", "rm", "-f", self.volume(node), check=False)
        docker("network", "rm", self.network, check=False)

    def start(self) -> None:
        t0 = time.monotonic()
        self.remove()
        docker("network", "create", "--driver", "bridge", self.network)
        self.mode = "privileged"
        for node in NODES:
            self._run_node(node)
        for node in NODES:
            self.addresses[node] = self._address(node)
            wait_until(
                lambda node=node: self.docker(node, "info", check=False, timeout=10).returncode == 0,
                timeout=120,
                interval=0.5,
                what=f"dockerd in {self.container(node)}",
            )
        self.timings["nodes up"] = time.monotonic() - t0
        t1 = time.monotonic()
        self.docker(MANAGER, "swarm", "init", "--advertise-addr", self.addresses[MANAGER])
        token = self.docker(MANAGER, "swarm", "join-token", "-q", "worker").stdout.strip()
        for node in NODES:
            if node != MANAGER:
                self.docker(node, "swarm", "join", "--token", token, f"{self.addresses[MANAGER]}:2377")
        wait_until(
            lambda: self.ready_nodes() == set(NODES),
            timeout=120,
            interval=1,
            what="three Ready nodes in the swarm",
        )
        self.timings["swarm formed"] = time.monotonic() - t1

    def _run_node(self, node: str) -> None:
        args = [
            "run",
            "-d",
            "--name",
            self.container(node),
            "--hostname",
            node,
            "--network",
            self.network,
            "-v",
            f"{self.volume(node)}:/var/lib/docker",
            "-e",
            "DOCKER_TLS_CERTDIR=",
            "--label",
            f"org.djcs.swarm-bed={self.prefix}",
        ]
        if node == MANAGER:
            args += ["-p", f"127.0.0.1:{self.web_port}:80"]
        result = docker(*args, *self._security(), self.image, check=False)
        if result.returncode != 0 and self.mode == "privileged" and "unable to apply caps" in result.stderr:
            # See the module docstring: this engine cannot grant --privileged.
            docker("rm", "-f", self.container(node), check=False)
            self.mode = "all capabilities but SYS_RESOURCE"
            result = docker(*args, *self._security(), self.image, check=False)
        if result.returncode != 0:
            raise DockerError(f"starting {self.container(node)} failed: {result.stderr.strip()}")

    def _security(self) -> list[str]:
        return PRIVILEGED if self.mode == "privileged" else ALL_BUT_PRIVILEGED

    def _address(self, node: str) -> str:
        out = docker("inspect", self.container(node)).stdout
        return json.loads(out)[0]["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def ready_nodes(self) -> set[str]:
        out = self.docker(MANAGER, "node", "ls", "--format", "{{.Hostname}} {{.Status}}", check=False).stdout
        return {line.split()[0] for line in out.splitlines() if line.endswith(" Ready")}

    def load(self, images: list[str], nodes: tuple[str, ...] = NODES) -> None:
        """`docker save` once, `docker load` on each node at the same time."""
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"{self.prefix}-images-") as tmp:
            archive = os.path.join(tmp, "images.tar")
            with open(archive, "wb") as out:
                subprocess.run(["docker", "save", *images], stdout=out, check=True, timeout=600)

            def load_on(node):
                with open(archive, "rb") as tar:
                    subprocess.run(
                        ["docker", "-H", self.host(node), "load", "-q"],
                        stdin=tar,
                        capture_output=True,
                        check=True,
                        timeout=900,
                    )

            with ThreadPoolExecutor(len(nodes)) as pool:
                list(pool.map(load_on, nodes))
        # Tags are not digests: say so if two nodes would run different bytes under one name.
        for image in images:
            ids = {
                self.docker(node, "image", "inspect", "-f", "{{.Id}}", image).stdout.strip() for node in nodes
            }
            assert len(ids) == 1, f"{image} differs between nodes: {ids}"
        key = f"load {len(images)} image(s) on {len(nodes)} node(s)"
        self.timings[key] = self.timings.get(key, 0) + time.monotonic() - t0

    # --- faults ----------------------------------------------------------------------------------

    def kill_daemon(self, node: str) -> None:
        """SIGKILL the node's dockerd: as for a power cut, every container on it dies with it (the
        node container's init exits with dockerd, and the kernel kills what was left inside)."""
        self.docker_exec(node, "pkill", "-KILL", "-x", "dockerd")
        wait_until(
            lambda: not self._running(node),
            timeout=60,
            interval=0.5,
            what=f"{self.container(node)} to go down",
        )

    def restart_node(self, node: str) -> None:
        docker("start", self.container(node))
        # The engine may give the restarted container another address on the bed's network.
        self.addresses[node] = self._address(node)
        # A restarted dockerd first recovers its containers and the swarm's state: on a loaded
        # 2-CPU host that took over 120 s once (a bed's readiness, not a promise of the stack).
        try:
            wait_until(
                lambda: self.docker(node, "info", check=False, timeout=10).returncode == 0,
                timeout=300,
                interval=0.5,
                what=f"dockerd in {self.container(node)} again",
            )
        except WaitTimeout as exc:
            tail = docker("logs", "--tail", "40", self.container(node), check=False)
            raise WaitTimeout(f"{exc}\n{self.container(node)}'s log:\n{tail.stdout}{tail.stderr}") from None
        wait_until(
            lambda: node in self.ready_nodes(),
            timeout=120,
            interval=1,
            what=f"{node} Ready in the swarm again",
        )

    def docker_exec(self, node: str, *command: str) -> subprocess.CompletedProcess:
        return docker("exec", self.container(node), *command)

    def _running(self, node: str) -> bool:
        out = docker("inspect", "-f", "{{.State.Running}}", self.container(node), check=False).stdout
        return out.strip() == "true"

    # --- the stack on it ---------------------------------------------------------------------------

    def service_tasks(self, service: str, running: bool = True) -> list[dict]:
        """Tasks of a service: name, node, state, error (running ones only by default)."""
        args = ["service", "ps", "--no-trunc", "--format", "{{json .}}", service]
        if running:
            args[2:2] = ["--filter", "desired-state=running"]
        out = self.docker(MANAGER, *args, check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def task_container(self, service: str) -> tuple[str, str]:
        """(node, container name) of one running task of the service."""
        for task in self.service_tasks(service):
            if task["CurrentState"].startswith("Running"):
                return task["Node"], f"{task['Name']}.{task['ID']}"
        raise AssertionError(f"{service} has no running task")

    def exec(self, service: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        node, container = self.task_container(service)
        return self.docker(node, "exec", container, *command, check=check)

    def service_logs(self, service: str, tail: int | None = None) -> str:
        """The service's logs as the manager gathers them; when that hangs (it waits on the
        tasks of a node whose daemon was killed), each node's own containers of the service."""
        args = ["--tail", str(tail)] if tail else []
        try:
            result = self.docker(
                MANAGER, "service", "logs", "--raw", "--timestamps", *args, service, check=False, timeout=30
            )
            return result.stdout + result.stderr
        except subprocess.TimeoutExpired:
            pass
        parts = []
        for node in NODES:
            ids = self.docker(
                node,
                "ps",
                "-aq",
                "--filter",
                f"label=com.docker.swarm.service.name={service}",
                check=False,
                timeout=30,
            ).stdout.split()
            for container in ids:
                result = self.docker(node, "logs", "--timestamps", *args, container, check=False, timeout=30)
                parts.append(f"--- {node} {container}\n{result.stdout}{result.stderr}")
        return "\n".join(parts)
