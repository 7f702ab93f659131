"""Process management shared by the ROS tests: an isolated DDS domain, the node started exactly
as the launch file starts it, the player and the recorder as separate processes."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
NODE_EXECUTABLE = BIN / "depth_sfm_node"
PARAMS_FILE = REPO / "config" / "depth_sfm.yaml"
DEFAULT_MODEL = DEFAULT_MODEL_DIR  # the bundled default model (may not exist yet)
IMAGE_TOPIC = "/camera/image_raw"
INFO_TOPIC = "/camera/camera_info"


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for one test's processes: its own DDS domain, localhost discovery only."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", RCUTILS_COLORIZED_OUTPUT="0")
    env.pop("ROS_STATIC_PEERS", None)
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


def unique_domain_id(offset: int) -> int:
    """A domain id in [1, 100] from this process id and ``offset`` (one per test module), so
    parallel test sessions on one machine do not hear each other."""
    return 1 + (os.getpid() * 7 + offset) % 100


def node_command(model_dir: str | Path, *extra_ros_args: str) -> list[str]:
    """What launch/depth_sfm.launch.py runs: [params_file, overrides] + the input remappings."""
    return [str(NODE_EXECUTABLE), "--ros-args", "--params-file", str(PARAMS_FILE), "-p", f"model:={model_dir}",
            "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}", *extra_ros_args]


def test_model_dir(need_mask: bool = False) -> Path:
    """The bundled default model when it exists (and has a mask network, with ``need_mask``: the bundled
    real-camera model has none yet), else an untrained lite model with all three networks freshly exported
    with ``runtime.export.export_bundle`` (64x192).

    The export takes ~10-20 s on 2 busy cores, so it is cached under the temp dir, keyed by a
    hash of the code that produces it (models/, runtime/export.py, runtime/model_card.py) and
    guarded by a file lock: every ROS test module and session shares one export.
    """
    if (DEFAULT_MODEL / "model_card.yaml").is_file() and (not need_mask or (DEFAULT_MODEL / "mask.onnx").is_file()):
        return DEFAULT_MODEL
    sources = sorted((REPO / "depth_sfm_ros" / "models").glob("*.py")) + [
        REPO / "depth_sfm_ros" / "runtime" / "export.py", REPO / "depth_sfm_ros" / "runtime" / "model_card.py"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources if p.is_file())).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"depth_sfm_ros_test_lite_{os.getuid()}_{digest}"
    with open(str(cache) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / "model_card.yaml").is_file():
            staging = Path(tempfile.mkdtemp(prefix=cache.name + "_staging_", dir=cache.parent))
            _export_lite(staging)
            shutil.rmtree(cache, ignore_errors=True)
            staging.rename(cache)
    return cache


def _export_lite(out_dir: Path) -> None:
    import torch

    from depth_sfm_ros.models import build_models
    from depth_sfm_ros.runtime.export import export_bundle

    torch.manual_seed(0)
    config = {"encoder": "lite", "pose_encoder": "lite", "height": 64, "width": 192}
    export_bundle(build_models(config).eval(), config, out_dir, intrinsics_normalized=[0.58, 1.92, 0.5, 0.5],
                  verify=False)


@dataclass
class Proc:
    """A child process whose stdout+stderr go to a log file (no pipe to fill up)."""

    popen: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, cmd: list[str], env: dict[str, str], log_path: Path) -> "Proc":
        log = open(log_path, "w")
        popen = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        log.close()
        return cls(popen, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.popen.poll() is not None:
                return text in self.log()
            time.sleep(0.05)
        return False

    def wait(self, timeout_s: float) -> int:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.popen.args[:2]} did not finish in {timeout_s} s; log:\n{self.log()[-3000:]}")

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (as ros2 launch does), then kill if it does not exit."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                return self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                return -9
        return self.popen.returncode


def start_node(model_dir: Path, env: dict[str, str], log_path: Path, *extra_ros_args: str) -> Proc:
    node = Proc.start(node_command(model_dir, *extra_ros_args), env, log_path)
    return node


@dataclass
class Recording:
    """What recorder.py saved."""

    meta: dict
    arrays: dict[str, np.ndarray]

    def images(self, kind: str) -> list[np.ndarray]:
        return [self.arrays[f"{kind}_{i}"] for i in range(len(self.meta[kind]))]

    def last_diagnostics(self) -> dict:
        ours = [d for d in self.meta["diagnostics"] if d["name"].startswith("depth_sfm_node")]
        assert ours, "no /diagnostics status from depth_sfm_node"
        return ours[-1]


def play_and_record(tmp: Path, env: dict[str, str], plan: str, namespace: str = "/", rate_hz: float = 5.0,
                    player_args: tuple[str, ...] = (), timeout_s: float = 90.0,
                    recorder_args: tuple[str, ...] = ()) -> tuple[dict, Recording, dict]:
    """Start the recorder (waits for a running node), play ``plan``, collect both sides.

    Returns (player log, recording, ground truth arrays). The node must already be started.
    """
    from depth_sfm_ros.synth.render import SynthConfig

    steps = [s for item in plan.split(",") for s in [item.partition(":")[0]] * int(item.partition(":")[2] or 1)]
    width = int(player_args[player_args.index("--width") + 1]) if "--width" in player_args else 192
    height = int(player_args[player_args.index("--height") + 1]) if "--height" in player_args else 64
    config = SynthConfig(width=width, height=height)
    from ros_helpers.player import BAD_KINDS

    n_good = sum(1 for s in steps if s not in BAD_KINDS)
    last_stamp_ns = config.stamp_ns(n_good - 1)  # the last step of a plan must be a plain good frame
    recorder = Proc.start([sys.executable, str(HELPERS / "recorder.py"), "--out", str(tmp / "rec"),
                           "--until-stamp-ns", str(last_stamp_ns), "--timeout-s", str(timeout_s),
                           "--namespace", namespace, *recorder_args], env, tmp / "recorder.log")
    assert recorder.wait_for_line("READY", 30.0), f"recorder not ready:\n{recorder.log()}"
    player = Proc.start([sys.executable, str(HELPERS / "player.py"), "--plan", plan, "--log", str(tmp / "plan.json"),
                         "--gt", str(tmp / "gt.npz"), "--rate", str(rate_hz), *player_args], env, tmp / "player.log")
    assert player.wait(timeout_s) == 0, f"player failed:\n{player.log()}"
    assert recorder.wait(timeout_s) == 0, f"recorder failed:\n{recorder.log()}"
    with open(tmp / "plan.json") as f:
        played = json.load(f)
    with open(tmp / "rec.json") as f:
        meta = json.load(f)
    with np.load(tmp / "rec.npz") as data:
        arrays = {k: data[k] for k in data.files}
    with np.load(tmp / "gt.npz") as data:
        gt = {k: data[k] for k in data.files}
    return played, Recording(meta, arrays), gt
