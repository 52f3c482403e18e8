"""A real MONAI Label server running apps/vessa_label, started as a subprocess on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pacs import free_port

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "vessa_label"


class LabelServer:
    """``monailabel start_server --app apps/vessa_label --studies <studies> --conf ...``; ``url`` once /info answers.

    The venv's bin folder goes first on PATH (MONAI Label looks for dcmqi's ``itkimage2segimage`` there and
    would try to download it otherwise); background scoring is off unless asked for, so tests own the CPU.
    """

    def __init__(self, studies: str, conf: dict[str, str], log_path: Path, env: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP), "--studies", studies, "--host", "127.0.0.1", "--port", str(self.port)]
        for key, value in conf.items():
            cmd += ["--conf", key, str(value)]
        full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "MONAI_LABEL_AUTO_UPDATE_SCORING": "false", **(env or {})}
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=str(REPO))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"monailabel exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.url + "/info/", timeout=5)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"monailabel did not answer /info within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
