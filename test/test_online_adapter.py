"""Online adaptation (runtime/online_adapter.py, training/online_adapt.py, TorchBackend.swap_networks): the
frame buffer, the rollback, the error stop, the atomic swap into the torch backend and the atomic save.
ROS-free; the real-network tests use a tiny lite model (64x128)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from depth_sfm_ros.runtime.online_adapter import FrameBuffer, OnlineAdapter, OnlineAdaptConfig, Triplet  # noqa: E402

H, W = 64, 128
K = np.array([[100.0, 0, 64], [0, 100.0, 32], [0, 0, 1]])


def _frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, H, W), dtype=np.float32)


def _feed(buffer: FrameBuffer, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        buffer.offer(_frame(i), K, stamp_s=0.1 * i)


# ----------------------------------------------------------------------------------------------- buffer
def test_buffer_is_bounded_and_holds_out_every_nth_triplet():
    buffer = FrameBuffer(OnlineAdaptConfig(buffer_frames=12, heldout_triplets=2, heldout_every=3))
    _feed(buffer, 60)  # 20 triplets: 6 held out, 14 for training
    assert buffer.sizes() == (4, 2)  # bounded: 12 frames = 4 triplets; 2 held-out
    assert buffer.counts["kept"] == 60
    train_stamps = {t.stamp_s for t in buffer.train}
    held_stamps = {t.stamp_s for t in buffer.heldout}
    assert not train_stamps & held_stamps
    t = buffer.train[-1]
    assert t.images.shape == (3, 3, H, W) and t.K.shape == (3, 3)
    # target is the middle frame, then previous, then next
    assert np.array_equal(t.images[0], _frame(round(t.stamp_s / 0.1))[0])
    assert np.array_equal(t.images[1], _frame(round(t.stamp_s / 0.1) - 1)[0])


def test_buffer_skips_still_flat_and_invalid_frames():
    buffer = FrameBuffer(OnlineAdaptConfig())
    assert buffer.offer(_frame(0), K, still=True) == "still"
    assert buffer.offer(np.zeros((1, 3, H, W), np.float32), K) == "flat"  # a black frame
    bad = _frame(1)
    bad[0, 0, 0, 0] = np.nan
    assert buffer.offer(bad, K) == "invalid"
    assert buffer.offer(_frame(2), np.full((3, 3), np.nan)) == "invalid"  # NaN CameraInfo
    assert buffer.counts == {"offered": 4, "kept": 0, "still": 1, "invalid": 2, "flat": 1, "reset": 0}
    assert buffer.sizes() == (0, 0)
    # still frames do not break a run; a flat one does
    buffer.offer(_frame(3), K)
    buffer.offer(_frame(4), K, still=True)
    buffer.offer(_frame(5), K)
    buffer.offer(np.full((1, 3, H, W), 0.5, np.float32), K)
    buffer.offer(_frame(6), K)
    assert buffer.sizes() == (0, 0)
    buffer.offer(_frame(7), K)
    buffer.offer(_frame(8), K)
    assert buffer.sizes() == (1, 0)
    assert np.array_equal(buffer.train[0].images[0], _frame(7)[0])


def test_frame_sink_reads_the_pipeline_decision():
    class Result:
        still, reset, stamp_s = True, False, 1.0

    adapter = OnlineAdapter(learner=None)
    adapter.frame_sink(_frame(0), K, Result())
    assert adapter.buffer.counts["still"] == 1 and adapter.buffer.counts["kept"] == 0


def test_frame_sink_skips_a_frozen_camera_that_the_pose_net_calls_moving():
    """The images show no motion but the pose net's motion is above the gate's caps (reason pose_motion, so the
    Pipeline's still is False, as measured over DDS with the bundled model on a frozen camera): not buffered."""
    from depth_sfm_ros.runtime.motion_gate import ImageMotion, MotionDecision

    def result(moving_image: bool, still: bool):
        image = ImageMotion(motion_px=1.5 if moving_image else 0.0, moving_fraction=0.5 if moving_image else 0.0,
                            textured_fraction=0.8, noise_grey=0.5, change_ratio=1.0, basis="texture",
                            moving=moving_image)
        reason = "image_motion" if moving_image else ("image_still" if still else "pose_motion")
        motion = MotionDecision(still=still, reason=reason, image=image, translation_m=0.3, rotation_deg=0.1)
        return type("Result", (), {"still": still, "reset": False, "stamp_s": 1.0, "motion": motion})()

    adapter = OnlineAdapter(learner=None)
    adapter.frame_sink(_frame(0), K, result(moving_image=False, still=False))  # frozen image, pose_motion
    assert adapter.buffer.counts["still"] == 1 and adapter.buffer.counts["kept"] == 0
    adapter.frame_sink(_frame(1), K, result(moving_image=True, still=False))
    assert adapter.buffer.counts["kept"] == 1


# ----------------------------------------------------------------------------------------------- safeguards
class FakeLearner:
    """weights: one number; held-out loss = |w - 1|; each step adds the next planned delta (or its loss)."""

    def __init__(self, plan):
        self.w = 0.0
        self.plan = list(plan)
        self.saved = []

    def step(self, triplets):
        delta, loss = self.plan.pop(0)
        self.w += delta
        return loss

    def heldout_loss(self, triplets):
        return abs(self.w - 1.0)

    def snapshot(self):
        return self.w

    def restore(self, state):
        self.w = state

    def runtime_networks(self):
        return (self.w, None, None)

    def save(self, path):
        self.saved.append(self.w)
        return path


def _ready_adapter(learner, swap=None, **cfg) -> OnlineAdapter:
    adapter = OnlineAdapter(learner, OnlineAdaptConfig(buffer_frames=30, heldout_every=3, min_train_triplets=2,
                                                       swap_every_s=0.0, **cfg), swap=swap)
    _feed(adapter.buffer, 30)
    return adapter


def test_a_step_that_raises_the_heldout_loss_is_rolled_back():
    swapped = []
    learner = FakeLearner([(0.2, 1.0), (-0.3, 1.0), (0.2, 0.9)])
    adapter = _ready_adapter(learner, swap=lambda *nets: swapped.append(nets[0]))
    assert adapter.run_one_step() and learner.w == 0.2 and swapped == [0.2]
    assert adapter.run_one_step()  # worse held-out loss: rolled back, nothing swapped
    assert learner.w == 0.2 and adapter.rollbacks == 1 and swapped == [0.2]
    assert adapter.run_one_step() and learner.w == pytest.approx(0.4) and swapped == [0.2, pytest.approx(0.4)]
    status = adapter.status()
    assert (status["steps"], status["accepted"], status["rollbacks"], status["state"]) == (3, 2, 1, "adapting")
    assert status["heldout_change"] == pytest.approx(0.6 / 1.0 - 1.0)
    # a new held-out set (worse frames) does not count as the model getting worse: the trend multiplies
    # per-step changes measured on one set each
    adapter.buffer.heldout_version += 1
    learner.w = 0.4
    learner.plan.append((-0.1, 1.0))
    learner.heldout_loss = lambda triplets: abs(learner.w - 1.0) * 3
    adapter.run_one_step()  # 1.8 -> 2.1 on the new set: rolled back
    assert adapter.rollbacks == 2 and adapter.status()["heldout_change"] == pytest.approx(-0.4)


def test_an_implausibly_large_heldout_drop_is_rolled_back():
    learner = FakeLearner([(0.5, 1.0), (0.45, 1.0)])  # held-out 1 -> 0.5 (-50 %): rolled back
    adapter = _ready_adapter(learner)
    adapter.run_one_step()
    assert learner.w == 0.0 and adapter.rollbacks == 1 and adapter.implausible == 1
    adapter.run_one_step()  # 1 -> 0.55 (-45 %)
    assert learner.w == 0.0 and adapter.rollbacks == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e6])
def test_nan_or_exploding_loss_stops_adaptation_without_raising(bad):
    swapped = []
    learner = FakeLearner([(0.2, 1.0), (0.1, bad), (0.1, 1.0)])
    adapter = _ready_adapter(learner, swap=lambda *nets: swapped.append(nets[0]))
    adapter.run_one_step()
    adapter.run_one_step()
    assert adapter.state == "error" and "adaptation stopped" in adapter.status()["message"]
    assert learner.w == 0.2 and swapped == [0.2]  # the bad step's weights never reached the backend
    assert adapter.run_one_step() is False and learner.w == 0.2  # stays stopped


def test_the_worker_thread_reports_exceptions_as_error_state():
    class Broken(FakeLearner):
        def step(self, triplets):
            raise RuntimeError("boom")

    adapter = _ready_adapter(Broken([]), step_pause_s=0.0).start()
    adapter._thread.join(5)
    assert not adapter._thread.is_alive()
    assert adapter.state == "error" and "boom" in adapter.message


def test_waits_for_enough_frames():
    adapter = OnlineAdapter(FakeLearner([]), OnlineAdaptConfig(min_train_triplets=4))
    _feed(adapter.buffer, 6)
    assert adapter.run_one_step() is False and adapter.state == "waiting"


# ----------------------------------------------------------------------------------------------- real networks
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from depth_sfm_ros.models.bundle import build_models, validate_model_config
    from depth_sfm_ros.runtime.export import export_bundle

    torch.manual_seed(0)
    cfg = validate_model_config({"height": H, "width": W, "use_motion_net": True})
    bundle = build_models(cfg).eval()
    out = tmp_path_factory.mktemp("online") / "model"
    export_bundle(bundle, cfg, out, intrinsics_normalized=[100 / W, 100 / H, 0.5, 0.5])
    assert (out / "weights.safetensors").is_file()
    return out


def _moving_triplets(n: int) -> list[Triplet]:
    from depth_sfm_ros.synth import SynthConfig, render_sequence

    seq = render_sequence(SynthConfig(seed=3, width=W, height=H, num_frames=3 * n))
    imgs = [f.image_rgb.astype(np.float32).transpose(2, 0, 1) / 255.0 for f in seq.frames]
    Kn = np.asarray(seq.intrinsics.K, np.float32)
    return [Triplet(np.stack([imgs[3 * i + 1], imgs[3 * i], imgs[3 * i + 2]]), Kn, float(i)) for i in range(n)]


@pytest.mark.parametrize("net,noise", [("pose", 0.05), ("depth", 5.0)])
def test_photometric_learner_steps_and_rolls_back_a_poisoned_step(model_dir, net, noise):
    """pose noise raises the held-out loss; huge depth noise masks every pixel (loss 0: an implausible drop)."""
    from depth_sfm_training.online_adapt import PhotometricLearner

    learner = PhotometricLearner.from_weights(model_dir / "weights.safetensors", lr=1e-4)
    triplets = _moving_triplets(4)
    loss = learner.step(triplets[:2])
    assert np.isfinite(loss) and np.isfinite(learner.heldout_loss(triplets[3:]))

    class Poisoned:  # a step that wrecks the depth net: the held-out loss rises, the step is undone
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def step(self, batch):
            torch.manual_seed(0)
            with torch.no_grad():
                for p in getattr(self.inner.bundle, net).parameters():
                    p.add_(torch.randn_like(p) * noise)
            return 1.0

    before = {k: v.clone() for k, v in learner.bundle.state_dict().items()}
    adapter = OnlineAdapter(Poisoned(learner), OnlineAdaptConfig(min_train_triplets=1))
    adapter.buffer.train.extend(triplets[:3])
    adapter.buffer.heldout.append(triplets[3])
    assert adapter.run_one_step() and adapter.rollbacks == 1 and adapter.accepted == 0
    assert adapter.implausible == (net == "depth")
    after = learner.bundle.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


class _ConstNet(torch.nn.Module):
    """Depth: disparity = value everywhere (slowly); pose: [value]*6. A mix of two versions is visible."""

    def __init__(self, value: float, kind: str) -> None:
        super().__init__()
        self.value, self.kind = value, kind

    def forward(self, *images):
        if self.kind == "depth":
            time.sleep(0.002)
            return torch.full((1, 1, H, W), self.value)
        return torch.full((1, 6), self.value)


def test_swap_is_atomic_between_inferences(model_dir):
    from depth_sfm_ros.runtime.model_dir import read_model_card
    from depth_sfm_ros.runtime.torch_backend import TorchBackend

    backend = TorchBackend(read_model_card(model_dir), _ConstNet(0.2, "depth"), _ConstNet(0.2, "pose"),
                           device="cpu")
    seen = []
    stop = threading.Event()

    def swapper():
        i = 0
        while not stop.is_set():
            v = (0.2, 0.8)[i % 2]
            backend.swap_networks(_ConstNet(v, "depth"), _ConstNet(v, "pose"))
            i += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        image = np.zeros((1, 3, H, W), np.float32)
        for _ in range(200):
            out = backend.infer(image, image)
            seen.append((float(out.disparity[0, 0]), float(out.disparity.min()), float(out.disparity.max()),
                         float(out.pose_vec[0])))
    finally:
        stop.set()
        thread.join()
    assert {round(s[0], 3) for s in seen} == {0.2, 0.8}  # both versions were used
    for first, lo, hi, pose in seen:  # each inference: one whole weight set
        assert lo == hi == first and pose == pytest.approx(first)
    assert backend.weights_version > 0


def test_torch_backend_loads_weights_safetensors_and_swaps_learner_networks(model_dir):
    from depth_sfm_training.online_adapt import PhotometricLearner
    from depth_sfm_ros.runtime.torch_backend import TorchBackend

    backend = TorchBackend.from_model(model_dir, device="cpu")
    image = _moving_triplets(1)[0].images[:1]
    before = backend.infer(image, image).disparity.copy()
    learner = PhotometricLearner.from_weights(model_dir / "weights.safetensors", lr=1e-4)
    with torch.no_grad():
        for p in learner.bundle.depth.parameters():
            p.mul_(1.5)
    backend.swap_networks(*learner.runtime_networks())
    after = backend.infer(image, image).disparity
    assert not np.allclose(before, after)


# ----------------------------------------------------------------------------------------------- saving
def test_save_is_atomic_a_crash_before_replace_keeps_the_last_good_file(model_dir, tmp_path, monkeypatch):
    from depth_sfm_ros.models.weights_file import bundle_from_weights
    from depth_sfm_training.online_adapt import PhotometricLearner

    learner = PhotometricLearner.from_weights(model_dir / "weights.safetensors")
    adapter = OnlineAdapter(learner, save_dir=tmp_path / "saved", model_dir=model_dir)
    adapter.accepted = 1
    assert "saved" in adapter.save()
    good = (tmp_path / "saved" / "weights.safetensors").read_bytes()
    assert (tmp_path / "saved" / "model_card.yaml").is_file()

    with torch.no_grad():
        for p in learner.bundle.depth.parameters():
            p.add_(1.0)

    def crash(src, dst):  # the process dies between the temp file's fsync and the rename
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        learner.save(tmp_path / "saved" / "weights.safetensors")
    monkeypatch.undo()
    assert (tmp_path / "saved" / "weights.safetensors").read_bytes() == good
    bundle_from_weights(tmp_path / "saved")  # loads
    # and through the adapter, an error is reported, not raised
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("disk full")))
    assert "failed" in adapter.save() and (tmp_path / "saved" / "weights.safetensors").read_bytes() == good


def test_create_online_adapter_refuses_backends_that_cannot_swap(model_dir):
    from depth_sfm_ros.runtime.online_adapter import create_online_adapter

    class Other:  # neither swap_networks (torch) nor swap_exported (onnxruntime, tensorrt)
        name = "onnxruntime"

    with pytest.raises(ValueError, match="cannot take new weights"):
        create_online_adapter(model_dir, Other())


def test_kill_9_during_repeated_saves_leaves_a_loadable_file(model_dir, tmp_path):
    """A real SIGKILL while a process saves again and again (each save different weights)."""
    import signal
    import subprocess
    import sys

    from depth_sfm_ros.models.weights_file import bundle_from_weights

    target = tmp_path / "weights.safetensors"
    script = f"""
import torch
from depth_sfm_training.online_adapt import PhotometricLearner
learner = PhotometricLearner.from_weights({str(model_dir / 'weights.safetensors')!r})
i = 0
while True:
    with torch.no_grad():
        for p in learner.bundle.depth.parameters():
            p.add_(0.001)
    learner.save({str(target)!r})
    i += 1
    if i == 1:
        print("first", flush=True)
"""
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "first"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        bundle_from_weights(target)  # the last complete save loads
        leftovers = [p for p in tmp_path.iterdir() if p.name != target.name]
        for p in leftovers:  # a killed save may leave its temp file (never the target)
            assert p.name.startswith(".weights.safetensors.") and p.name.endswith(".tmp")


def test_the_node_attaches_the_adapter_to_the_onnxruntime_backend(model_dir, tmp_path):
    from depth_sfm_ros.ros import params
    from depth_sfm_ros.ros.pipeline_factory import attach_online_adapter, create_pipeline
    from depth_sfm_ros.runtime.online_swap import ExportSwap

    p = params.validate({"model": str(model_dir), "backend": "onnxruntime", "adapt_online": True,
                         "adapt_export_every_s": 12.0})
    pipeline = create_pipeline(p)
    try:
        adapter = attach_online_adapter(p, pipeline)
        adapter.stop()
        assert isinstance(adapter.swap, ExportSwap) and adapter.config.swap_every_s == 12.0
        assert adapter.replay is None and adapter.status()["weights_in_use"] == 0
        assert attach_online_adapter(params.validate({"model": str(model_dir)}), pipeline) is None
        # a replay folder that is no replay set is refused, naming the parameter
        (tmp_path / "empty").mkdir()
        bad = params.validate({"model": str(model_dir), "backend": "onnxruntime", "adapt_online": True,
                               "adapt_replay_dir": str(tmp_path / "empty")})
        with pytest.raises(params.ParameterError) as err:
            attach_online_adapter(bad, pipeline)
        assert err.value.name == "adapt_replay_dir" and "replay set" in str(err.value)
    finally:
        pipeline.close()


def test_heldout_loss_falls_over_a_replayed_sequence(model_dir):
    """The whole path: Pipeline (torch backend) -> frame_sink -> buffer -> guarded steps -> swaps."""
    from depth_sfm_ros.runtime.online_adapter import create_online_adapter
    from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig
    from depth_sfm_ros.synth import SynthConfig, render_sequence

    pipeline = Pipeline(PipelineConfig(model=str(model_dir), backend="torch", device="cpu", scale_mode="none"))
    adapter = create_online_adapter(model_dir, pipeline.backend,
                                    OnlineAdaptConfig(lr=1e-4, min_train_triplets=3, swap_every_s=0.0))
    pipeline.frame_sink = adapter.frame_sink
    seq = render_sequence(SynthConfig(seed=11, width=2 * W, height=2 * H, num_frames=30))
    try:
        for i in range(len(seq)):
            pipeline.process(seq[i].image_rgb, "rgb8", seq[i].stamp_s, seq.intrinsics)
        for _ in range(8):
            adapter.run_one_step()
        status = adapter.status()
        assert status["state"] == "adapting" and status["accepted"] >= 1, status
        assert status["heldout_change"] < 0 and status["heldout_best"] < status["heldout_start"], status
        assert pipeline.backend.weights_version == 0  # queued, taken in by the next inference
        pipeline.process(seq[0].image_rgb, "rgb8", seq[-1].stamp_s + 0.1, seq.intrinsics)
        assert pipeline.backend.weights_version == status["swaps"] >= 1
    finally:
        pipeline.close()


# ----------------------------------------------------------------------------------------------- replay set
class _FakeReplay:
    def __init__(self) -> None:
        self.triplets = [Triplet(_frame(1000 + i)[0][None].repeat(3, 0), K.astype(np.float32), -1.0 - i, "replay")
                         for i in range(5)]

    def sample(self, n, rng):
        return rng.sample(self.triplets, n)

    def describe(self):
        return "fake replay (5 samples)"


def test_replay_triplets_join_every_batch_and_the_heldout_check_uses_the_stream_only():
    batches, scored = [], []

    class Recording(FakeLearner):
        def step(self, triplets):
            batches.append([t.source for t in triplets])
            return super().step(triplets)

        def heldout_loss(self, triplets):
            scored.append([t.source for t in triplets])
            return super().heldout_loss(triplets)

    adapter = OnlineAdapter(Recording([(0.1, 1.0)] * 4), OnlineAdaptConfig(buffer_frames=30, heldout_every=3,
                                                                           min_train_triplets=2, batch_size=2),
                            replay=_FakeReplay())
    _feed(adapter.buffer, 30)
    for _ in range(4):
        assert adapter.run_one_step()
    assert batches == [["stream", "stream", "replay"]] * 4
    assert scored and all(set(s) == {"stream"} for s in scored)
    status = adapter.status()
    assert status["replay_used"] == 4 and status["replay"].startswith("fake replay")
    # the replay set never enters the stream buffers
    assert all(t.source == "stream" for t in list(adapter.buffer.train) + list(adapter.buffer.heldout))


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory) -> Path:
    """A synthetic KITTI-like folder of folders, as training/adapt.py's default_replay_set writes them."""
    from depth_sfm_ros.synth import SynthConfig, render_sequence
    from depth_sfm_ros.synth.kitti import write_kitti_folder

    root = tmp_path_factory.mktemp("replay")
    seq = render_sequence(SynthConfig(seed=21, width=2 * W, height=2 * H, num_frames=9))
    write_kitti_folder(seq.frames, seq.intrinsics, root / "seq_21")
    return root


def test_replay_set_from_a_folder_gives_network_size_triplets(replay_dir, tmp_path):
    import random

    from depth_sfm_ros.runtime.online_adapter import ReplaySetError
    from depth_sfm_training.online_adapt import ReplaySet

    replay = ReplaySet.from_folder(replay_dir, H, W)
    assert len(replay) == 7  # 9 frames: targets 1..7 with a previous and a next frame
    triplets = replay.sample(3, random.Random(0))
    assert len(triplets) == 3 and len({t.stamp_s for t in triplets}) == 3
    for t in triplets:
        assert t.source == "replay" and t.images.shape == (3, 3, H, W) and t.images.dtype == np.float32
        assert t.K.shape == (3, 3) and 0 < t.K[0, 2] < W and 0 < t.K[1, 2] < H  # intrinsics at the network size
        assert 0.0 <= t.images.min() and t.images.max() <= 1.0
    assert "3 loaded" in replay.describe()
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ReplaySetError, match="replay set"):
        ReplaySet.from_folder(tmp_path / "nothing", H, W)
    with pytest.raises(ReplaySetError, match="not a directory"):
        ReplaySet.from_folder(tmp_path / "missing", H, W)


def test_adapt_replay_dir_parameter_is_validated(tmp_path):
    from depth_sfm_ros.ros import params

    assert params.validate({}, check_model_files=False).adapt_replay_dir == ""
    with pytest.raises(params.ParameterError) as err:
        params.validate({"adapt_replay_dir": str(tmp_path / "missing")}, check_model_files=False)
    assert err.value.name == "adapt_replay_dir" and "not a directory" in str(err.value)
    assert params.validate({"adapt_replay_dir": str(tmp_path)}, check_model_files=False).adapt_replay_dir == \
        str(tmp_path)
    with pytest.raises(params.ParameterError, match="outside"):
        params.validate({"adapt_export_every_s": 0.5}, check_model_files=False)


# ----------------------------------------------------------------------------------------------- failed swaps
def test_a_failed_swap_is_reported_retried_and_stops_adaptation_when_it_keeps_failing():
    from depth_sfm_ros.ros.diagnostics import adaptation_diagnostics

    calls = []

    def failing_swap(*nets):
        calls.append(nets[0])
        raise RuntimeError("export failed: disk full")

    learner = FakeLearner([(0.05, 1.0)] * 5)
    adapter = _ready_adapter(learner, swap=failing_swap, max_swap_failures=3)
    adapter.run_one_step()
    status = adapter.status()
    assert status["state"] == "adapting" and status["swap_failures"] == 1 and status["swaps"] == 0
    level, message, values = adaptation_diagnostics(status)
    assert level == 1 and "disk full" in message and ("adapt_swap_failures", "1") in values
    adapter.run_one_step()  # the accepted weights are still pending: retried
    assert len(calls) == 2 and adapter.state == "adapting"
    adapter.run_one_step()
    assert adapter.state == "error" and "3 swaps failed in a row" in adapter.message
    assert adaptation_diagnostics(adapter.status())[0] == 2
    # a swap that works again resets the run of failures
    ok = _ready_adapter(FakeLearner([(0.05, 1.0)] * 3), swap=lambda *nets: 1)
    ok.swap = failing_swap
    ok.run_one_step()
    ok.swap = lambda *nets: 1
    ok.run_one_step()
    assert ok.status()["swap_failing"] is False and ok.swaps == 1 and ok.swap_failures == 1


# ----------------------------------------------------------------------------------------------- ONNX Runtime
def _perturbed_networks(model_dir: Path, factor: float):
    """Runtime networks of the model's weights with the depth net's parameters scaled by ``factor``."""
    from depth_sfm_training.online_adapt import PhotometricLearner

    learner = PhotometricLearner.from_weights(model_dir / "weights.safetensors")
    with torch.no_grad():
        for p in learner.bundle.depth.parameters():
            p.mul_(factor)
    return learner.runtime_networks()


def test_onnxruntime_swap_exports_and_takes_new_sessions_at_the_next_inference(model_dir, monkeypatch):
    from depth_sfm_ros.runtime import export
    from depth_sfm_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from depth_sfm_ros.runtime.online_swap import ExportSwap

    backend = OnnxRuntimeBackend(model_dir, device="cpu", threads=1)
    swap = ExportSwap(backend)
    image = _moving_triplets(1)[0].images[:1].copy()
    before = backend.infer(image, image).disparity.copy()
    depth, pose, mask = _perturbed_networks(model_dir, 1.5)
    version = swap(depth, pose, mask)
    assert version == 1 and backend.weights_version == 0  # queued, not yet in use
    after = backend.infer(image, image)
    assert backend.weights_version == 1 and not np.allclose(before, after.disparity)
    with torch.no_grad():  # the new sessions compute the swapped networks
        want = depth(torch.from_numpy(image))[0].numpy()[0, 0]
    np.testing.assert_allclose(after.disparity, want, rtol=1e-4, atol=1e-5)
    # unchanged weights: no export, nothing queued
    assert swap(depth, pose, mask) is None and swap.exports == 1 and swap.skipped == 1
    # a failed export raises and leaves the running sessions alone
    monkeypatch.setattr(export, "export_runtime_onnx",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("onnx export failed")))
    with pytest.raises(RuntimeError, match="onnx export failed"):
        swap(*_perturbed_networks(model_dir, 0.5))
    np.testing.assert_array_equal(backend.infer(image, image).disparity, after.disparity)
    assert backend.weights_version == 1
    # and so does a session that cannot be created (a corrupt file)
    monkeypatch.undo()
    with pytest.raises(Exception, match="ONNX Runtime cannot load"):
        backend.swap_exported({name: model_dir / "model_card.yaml" for name in ("depth.onnx", "pose.onnx",
                                                                               "mask.onnx")})
    np.testing.assert_array_equal(backend.infer(image, image).disparity, after.disparity)
    backend.close()


def test_onnxruntime_swap_is_atomic_between_inferences(model_dir, tmp_path):
    """Depth, pose and mask run in three sessions: an inference must never mix two swapped sets."""
    from depth_sfm_ros.runtime.export import export_runtime_onnx
    from depth_sfm_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model_dir, device="cpu", threads=1)
    sets = {}
    for factor in (0.5, 1.5):
        nets = _perturbed_networks(model_dir, factor)
        with torch.no_grad():
            for p in nets[1].parameters():  # the pose net too: a mixed set shows in depth or pose
                p.mul_(factor)
        sets[factor] = export_runtime_onnx(*nets, tmp_path / str(factor), H, W, verify=False)[0]
    image = _moving_triplets(1)[0].images[:1].copy()
    outputs = {}
    for factor, files in sets.items():
        backend.swap_exported(files)
        out = backend.infer(image, image)
        outputs[factor] = (out.disparity.copy(), out.pose_vec.copy())
    stop = threading.Event()

    def swapper():
        i = 0
        while not stop.is_set():
            backend.swap_exported(sets[(0.5, 1.5)[i % 2]])
            i += 1

    thread = threading.Thread(target=swapper)
    thread.start()
    seen = set()
    try:
        for _ in range(40):
            out = backend.infer(image, image)
            match = [f for f, (disp, pose) in outputs.items()
                     if np.array_equal(out.disparity, disp) and np.array_equal(out.pose_vec, pose)]
            assert len(match) == 1, "an inference mixed two weight sets"
            seen.add(match[0])
    finally:
        stop.set()
        thread.join()
    assert backend.weights_version > 2
    backend.close()


def test_onnxruntime_pipeline_adapts_with_replay_and_swaps(model_dir, replay_dir):
    """The whole path on ONNX Runtime: Pipeline -> frame_sink -> buffer (+ replay) -> steps -> export -> swap."""
    from depth_sfm_ros.runtime.online_adapter import create_online_adapter
    from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig
    from depth_sfm_ros.synth import SynthConfig, render_sequence

    pipeline = Pipeline(PipelineConfig(model=str(model_dir), backend="onnxruntime", device="cpu", threads=1,
                                       scale_mode="none"))
    adapter = create_online_adapter(model_dir, pipeline.backend,
                                    OnlineAdaptConfig(lr=1e-4, min_train_triplets=3, export_every_s=0.0),
                                    replay_dir=replay_dir)
    pipeline.frame_sink = adapter.frame_sink
    seq = render_sequence(SynthConfig(seed=11, width=2 * W, height=2 * H, num_frames=30))
    try:
        for i in range(len(seq)):
            pipeline.process(seq[i].image_rgb, "rgb8", seq[i].stamp_s, seq.intrinsics)
        for _ in range(8):
            adapter.run_one_step()
            if adapter.swaps:
                break
        status = adapter.status()
        assert status["accepted"] >= 1 and status["swaps"] >= 1 and status["swap_failures"] == 0, status
        assert status["replay_used"] >= 1 and status["heldout_change"] < 0, status
        assert pipeline.backend.weights_version == 0
        result = pipeline.process(seq[0].image_rgb, "rgb8", seq[-1].stamp_s + 0.1, seq.intrinsics)
        assert pipeline.backend.weights_version == adapter.status()["weights_in_use"] == status["swaps"]
        assert np.isfinite(result.depth_m).any()
    finally:
        pipeline.close()


# ----------------------------------------------------------------------------------------------- TensorRT (fake)
def test_tensorrt_swap_rebuilds_engines_beside_the_cache_and_swaps_them(model_dir, tmp_path, monkeypatch):
    """TensorRT against the fake bindings (test/fakes/tensorrt_10.py): the swap builds engines of the exported
    ONNX into <cache>/adapted (keyed by the ONNX sha256), leaves the loaded model's engines alone, and the
    backend takes them at its next inference."""
    import contextlib
    import importlib
    import json
    import sys
    from types import SimpleNamespace

    from depth_sfm_ros.runtime import tensorrt_engine as te
    from depth_sfm_ros.runtime.online_swap import ExportSwap
    from depth_sfm_ros.runtime.tensorrt_backend import TensorRTBackend

    pytest.importorskip("onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", importlib.import_module("fakes.tensorrt_10"))
    monkeypatch.setattr(te, "detect_device", lambda index=0: te.DeviceInfo("Orin (nvgpu)", "8.7"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", lambda: SimpleNamespace(cuda_stream=0, synchronize=lambda: None))
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(TensorRTBackend, "buffer_device", "cpu")

    cache = tmp_path / "engines"
    backend = TensorRTBackend(model_dir, fp16=True, cache_dir=cache)
    loaded = {p: p.read_bytes() for p in cache.rglob("*.engine")}
    assert len(loaded) == 3
    image = _moving_triplets(1)[0].images[:1].copy()
    backend.infer(image, image)
    runners_before = dict(backend._runners)
    swap = ExportSwap(backend)

    def adapted_metadata() -> dict[str, str]:
        return {p.name: json.loads(p.read_text())["onnx_sha256"] for p in (cache / "adapted").rglob("*.json")}

    assert swap(*_perturbed_networks(model_dir, 1.5)) == 1 and backend.weights_version == 0
    first = adapted_metadata()
    assert len(first) == 3
    out = backend.infer(image, image)
    assert backend.weights_version == 1 and backend._runners is not runners_before
    assert out.pose_vec is not None and out.dynamic_prob is not None
    assert {p: p.read_bytes() for p in cache.rglob("*.engine") if "adapted" not in p.parts} == loaded
    # new depth weights: that engine in adapted/ is rebuilt in place (keyed by the new ONNX's sha256); the pose and
    # mask nets did not change, so their cached engines are used as they are
    assert swap(*_perturbed_networks(model_dir, 0.5)) == 2
    second = adapted_metadata()
    assert set(second) == set(first)
    assert [k for k in first if second[k] != first[k]] == ["depth-fp16-64x128.engine.json"]
    assert len(list((cache / "adapted").rglob("*.engine"))) == 3
    backend.infer(image, image)
    assert backend.weights_version == 2
    # a failed build keeps the running engines
    monkeypatch.setattr(te, "_build_serialized", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no memory")))
    running = backend._runners
    with pytest.raises(RuntimeError, match="no memory"):
        swap(*_perturbed_networks(model_dir, 0.7))
    backend.infer(image, image)
    assert backend._runners is running and backend.weights_version == 2
    backend.close()
