"""Online adaptation over real DDS: depth_sfm_node with ``adapt_online: true`` and the torch backend keeps
publishing depth while its adaptation worker runs, reports the adaptation in /diagnostics, survives a poisoned
stream (black frames, NaN CameraInfos, a frozen camera: one image repeated with advancing stamps): none of them
enters the training buffer, adaptation steps on what was buffered end in no error, the weights it saves on request
(~/adapt/save) after the stream are finite and load, and depth after the poisoned stretch is published and finite.
Over a replayed synthetic drive it reports accepted steps and a falling held-out loss (with a replay set mixed in),
and with the onnxruntime backend it re-exports and swaps sessions while depth keeps coming.

The last two are driven by what the node reports, not by the clock: frames are published until the adaptation
status says what the test waits for (then a few more), with a frame cap only as a failure bound."""
from __future__ import annotations

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from ros_helpers import common  # noqa: E402

pytestmark = pytest.mark.ros
FROZEN = 8  # frames of the frozen camera (the last good image repeated, the stamps advancing)
PLAN = f"good:21,black:3,nan_info:2,good:3,frozen:{FROZEN},good:15"
POISON = ("black", "nan_info", "frozen")
MIN_STEPS = 2  # adaptation steps the node must have run (on the buffer the poisoned stream left) before the save


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("online")
    model_dir = common.test_model_dir()
    save_dir = tmp / "adapted"
    env = common.ros_env(common.unique_domain_id(47))
    node = common.start_node(model_dir, env, tmp / "node.log", "-p", "backend:=torch", "-p", "adapt_online:=true",
                             "-p", "adapt_buffer_frames:=30", "-p", f"adapt_save_dir:={save_dir}",
                             "-p", "diagnostics_period_s:=0.2", "-p", "camera_info_wait_s:=0.15")
    try:
        played, rec, _ = common.play_and_record(tmp, env, PLAN, rate_hz=5.0, timeout_s=120.0)
        after = _steps_then_save(common.unique_domain_id(47), save_dir / "weights.safetensors")
    finally:
        rc = node.stop(timeout_s=60.0)
    return {"played": played, "rec": rec, "rc": rc, "log": node.log(), "save_dir": save_dir,
            "model_dir": model_dir, "saved_on_request": after["saved"], "status_before_save": after["status"]}


def _steps_then_save(domain_id: int, weights, min_steps: int = MIN_STEPS, steps_cap_s: float = 90.0,
                     save_cap_s: float = 30.0) -> dict:
    """After the stream: wait until the node's online adaptation status reports ``min_steps`` steps (the worker
    keeps stepping on its buffer without new frames; the cap only bounds a failure), then publish std_msgs/Empty on
    ~/adapt/save until the weights file appears. Returns the last status seen before the save and whether the
    file appeared."""
    import time

    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Empty

    from depth_sfm_ros.ros import topics

    seen: dict = {"status": None}

    def on_diagnostics(msg) -> None:
        for status in msg.status:
            if status.name.endswith("online adaptation"):
                seen["status"] = {"level": int.from_bytes(status.level, "little"), "message": status.message,
                                  "values": {kv.key: kv.value for kv in status.values}}

    def steps() -> int:
        return int(seen["status"]["values"]["adapt_steps"]) if seen["status"] else -1

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        probe = rclpy.create_node("save_requester", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        pub = probe.create_publisher(Empty, topics.resolve(topics.ADAPT_SAVE_TOPIC), 10)
        deadline = time.monotonic() + steps_cap_s
        while (steps() < min_steps or pub.get_subscription_count() == 0) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        status = seen["status"]
        pub.publish(Empty())
        deadline = time.monotonic() + save_cap_s
        while not weights.is_file() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        probe.destroy_node()
        return {"status": status, "saved": weights.is_file()}
    finally:
        rclpy.try_shutdown(context=context)


def test_node_keeps_publishing_while_adapting(run):
    assert run["rc"] == 0, run["log"]
    assert "Traceback" not in run["log"], run["log"]
    rec = run["rec"].meta
    assert not rec["timed_out"], run["log"]
    good = [s for s in run["played"]["steps"] if s["kind"] == "good"]
    published = {e["stamp_ns"] for e in rec["depth"]}
    assert good[-1]["stamp_ns"] in published
    assert len(published & {s["stamp_ns"] for s in good}) >= len(good) // 2, run["log"]


def test_diagnostics_report_the_adaptation(run):
    statuses = [d for d in run["rec"].meta["diagnostics"] if d["name"].endswith("online adaptation")]
    assert statuses, "no online adaptation status in /diagnostics"
    last = statuses[-1]["values"]
    print("last adaptation status:", statuses[-1])
    assert last["adapt_state"] in ("waiting", "adapting"), statuses[-1]
    assert statuses[-1]["level"] == 0
    for key in ("adapt_steps", "adapt_rollbacks", "adapt_heldout_change", "adapt_last_swap_age_s", "adapt_buffer"):
        assert key in last
    # the black frames never entered the training buffer (flat, or still against the reference), nor did the
    # frozen camera's repeats of one image (still: no image motion against the reference)
    skipped = dict(item.split(" ") for item in last["adapt_frames_skipped"].split(", "))
    assert int(skipped["flat"]) + int(skipped["still"]) >= 3 + FROZEN - 1, last
    assert int(skipped["still"]) >= FROZEN - 1, last
    # the node's own status is still the last one of each message (tools read it)
    assert run["rec"].last_diagnostics()["name"].endswith("depth_sfm")


def test_adaptation_ran_on_the_poisoned_stream_without_error(run):
    """After the stream (poisoned stretch included) the worker ran steps on what it buffered, and is not in the
    error state (a non-finite loss from a poisoned triplet would have stopped it there, at level ERROR)."""
    status = run["status_before_save"]
    print("adaptation status before the save:", status)
    assert status is not None, run["log"][-3000:]
    values = status["values"]
    assert int(values["adapt_steps"]) >= MIN_STEPS, (status, run["log"][-3000:])
    assert values["adapt_state"] == "adapting" and status["level"] == 0, status
    for key in ("adapt_last_loss", "adapt_heldout_start", "adapt_heldout_best"):
        assert math.isfinite(float(values[key])), status


def test_saved_weights_are_finite_and_load(run):
    """The weights in use (the last accepted set, what the backend is given) saved after the poisoned stream and
    the steps on it: finite, and a loadable model directory."""
    from depth_sfm_ros.models.weights_file import bundle_from_weights

    assert "online adaptation:" in run["log"], run["log"]
    assert run["saved_on_request"], run["log"]  # a std_msgs/Empty on ~/adapt/save wrote it
    assert "online adaptation: saved" in run["log"], run["log"]
    bundle, _ = bundle_from_weights(run["save_dir"])
    assert all(math.isfinite(float(p.detach().abs().sum())) for p in bundle.parameters())
    assert (run["save_dir"] / "model_card.yaml").is_file()
    from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig

    pipeline = Pipeline(PipelineConfig(model=str(run["save_dir"]), backend="torch", device="cpu", threads=1,
                                       scale_mode="none"))
    try:
        image = np.random.default_rng(0).integers(0, 255, (64, 192, 3), dtype=np.uint8)
        depth = pipeline.process(image, "rgb8", 0.0, None).depth_m
    finally:
        pipeline.close()
    assert np.isfinite(depth).mean() > 0.5 and not np.isinf(depth).any()


def test_depth_after_the_poisoned_stretch_is_published_and_finite(run):
    steps = run["played"]["steps"]
    last_poison = max(i for i, s in enumerate(steps) if s["kind"] in POISON)
    after = {s["stamp_ns"] for s in steps[last_poison + 1:]}
    rec = run["rec"]
    depths = [d for e, d in zip(rec.meta["depth"], rec.images("depth")) if e["stamp_ns"] in after]
    assert len(depths) >= len(after) // 2, run["log"][-3000:]
    for depth in depths:  # NaN marks out-of-range pixels by design; most must be finite, none infinite
        assert np.isfinite(depth).mean() > 0.5 and not np.isinf(depth).any()
        assert (depth[np.isfinite(depth)] > 0).all()


# ----------------------------------------------------------------------------------------------- closed-loop drive
def _drive_until(domain_id: int, done, max_frames: int = 400, extra_frames: int = 6, rate_hz: float = 5.0,
                 wait_node_s: float = 60.0) -> dict:
    """Publish a synthetic drive (rgb8 + CameraInfo, as the player does; played forward and back so it never
    ends) until ``done(values)`` holds for the node's latest online adaptation status (its key values), then
    ``extra_frames`` more. Returns the statuses seen, the stamps published and those that came back as depth,
    and the index of the frame at which ``done`` first held (None: the frame cap came first)."""
    import time

    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from depth_sfm_ros.msgs import rclpy_msgs, stamp_to_nanoseconds
    from depth_sfm_ros.ros import topics
    from depth_sfm_ros.synth.render import SynthConfig, render_sequence

    seq = render_sequence(SynthConfig(seed=0, width=192, height=64, num_frames=40))
    order = list(range(len(seq))) + list(range(len(seq) - 2, 0, -1))  # forward, then back: continuous motion
    seen = {"statuses": [], "depth": set()}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        node = rclpy.create_node("adapt_driver", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        pub_image = node.create_publisher(Image, common.IMAGE_TOPIC, qos_profile_sensor_data)
        pub_info = node.create_publisher(CameraInfo, common.INFO_TOPIC, qos_profile_sensor_data)

        def on_diagnostics(msg) -> None:
            for status in msg.status:
                if status.name.endswith("online adaptation"):
                    seen["statuses"].append({"level": int.from_bytes(status.level, "little"),
                                             "message": status.message,
                                             "values": {kv.key: kv.value for kv in status.values}})

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        node.create_subscription(Image, topics.resolve("~/depth"),
                                 lambda msg: seen["depth"].add(stamp_to_nanoseconds(msg.header.stamp)),
                                 qos_profile_sensor_data)
        deadline = time.monotonic() + wait_node_s
        while pub_image.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert pub_image.get_subscription_count() > 0, "the node did not subscribe to the image topic"
        published, done_at = [], None
        period_ns = int(1e9 / rate_hz)
        for i in range(max_frames):
            frame = seq[order[i % len(order)]]
            stamp_ns = seq[0].stamp_ns + i * period_ns
            header = Header(frame_id="camera_optical")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            pub_info.publish(rclpy_msgs.intrinsics_to_camera_info(seq.intrinsics, header))
            pub_image.publish(rclpy_msgs.numpy_to_image_msg(frame.image_rgb, "rgb8", header))
            published.append(stamp_ns)
            next_frame = time.monotonic() + 1.0 / rate_hz
            while time.monotonic() < next_frame:
                executor.spin_once(timeout_sec=max(0.0, next_frame - time.monotonic()))
            if done_at is None and seen["statuses"] and done(seen["statuses"][-1]["values"]):
                done_at = i
            if done_at is not None and i >= done_at + extra_frames:
                break
        end = time.monotonic() + 3.0  # the last frames' depth (and a status) are on their way
        while time.monotonic() < end and published[-1] not in seen["depth"]:
            executor.spin_once(timeout_sec=0.05)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return {"statuses": seen["statuses"], "published": published, "depth": seen["depth"], "done_at": done_at}


def _heldout_ratio(values: dict) -> float:
    """adapt_heldout_change ("-1.23%": the product of the accepted steps' held-out changes, minus 1) + 1."""
    return 1.0 + float(values["adapt_heldout_change"].rstrip("%")) / 100.0


def _run_node(tmp, offset: int, extra: tuple[str, ...], done, **drive) -> dict:
    model_dir = common.test_model_dir()
    env = common.ros_env(common.unique_domain_id(offset))
    node = common.start_node(model_dir, env, tmp / "node.log", "-p", "adapt_online:=true",
                             "-p", "adapt_duty_cycle:=1.0", "-p", "diagnostics_period_s:=0.2",
                             "-p", "camera_info_wait_s:=0.15", *extra)
    try:
        result = _drive_until(common.unique_domain_id(offset), done, **drive)
    finally:
        result_rc = node.stop(timeout_s=60.0)
    return dict(result, rc=result_rc, log=node.log())


def test_heldout_loss_falls_over_a_replayed_sequence_over_dds(tmp_path):
    """torch backend, a replay set mixed in: the node reports accepted steps, replay triplets used and a held-out
    photometric loss that fell (the product of the accepted steps' changes below 1), at level OK."""
    from depth_sfm_ros.synth import SynthConfig, render_sequence
    from depth_sfm_ros.synth.kitti import write_kitti_folder

    replay = tmp_path / "replay"
    seq = render_sequence(SynthConfig(seed=21, width=192, height=64, num_frames=9))
    write_kitti_folder(seq.frames, seq.intrinsics, replay / "seq_21")
    run = _run_node(tmp_path, 48, ("-p", "backend:=torch", "-p", f"adapt_replay_dir:={replay}"),
                    lambda v: int(v["adapt_accepted"]) >= 1)
    assert run["rc"] == 0 and "Traceback" not in run["log"], run["log"]
    assert run["done_at"] is not None, (run["statuses"][-1:], run["log"][-3000:])
    last = run["statuses"][-1]
    print("last adaptation status:", last)
    values = last["values"]
    assert last["level"] == 0 and values["adapt_state"] == "adapting", last
    assert int(values["adapt_accepted"]) >= 1 and _heldout_ratio(values) < 1.0, last
    assert float(values["adapt_heldout_best"]) < float(values["adapt_heldout_start"]), last
    assert int(values["adapt_replay_used"]) >= 1 and str(replay) in values["adapt_replay"], last
    assert int(values["adapt_weights_in_use"]) >= 0


def test_onnxruntime_backend_adapts_and_swaps_sessions_over_dds(tmp_path):
    """onnxruntime backend: accepted weights are re-exported and their sessions taken in by the inference thread
    (adapt_swaps > 0, adapt_weights_in_use > 0); depth keeps being published after the swap."""
    run = _run_node(tmp_path, 49, ("-p", "backend:=onnxruntime", "-p", "adapt_export_every_s:=1.0"),
                    lambda v: int(v["adapt_swaps"]) >= 1 and v["adapt_weights_in_use"] not in ("0", "None"))
    assert run["rc"] == 0 and "Traceback" not in run["log"], run["log"]
    assert run["done_at"] is not None, (run["statuses"][-1:], run["log"][-3000:])
    last = run["statuses"][-1]
    print("last adaptation status:", last)
    values = last["values"]
    assert int(values["adapt_swaps"]) >= 1 and int(values["adapt_weights_in_use"]) >= 1, last
    assert values["adapt_swap_failures"] == "0" and last["level"] == 0, last
    assert "exported the adapted networks" in run["log"], run["log"]
    after_swap = run["published"][run["done_at"] + 1:]
    assert after_swap and set(after_swap) & run["depth"], "no depth published after the swap"
    assert run["published"][-1] in run["depth"], "the last frame got no depth"
