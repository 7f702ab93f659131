"""Online adaptation over real DDS: depth_sfm_node with ``adapt_online: true`` and the torch backend keeps
publishing depth while its adaptation worker runs, reports the adaptation in /diagnostics, survives a poisoned
stream (black frames, a NaN CameraInfo) and saves loadable, finite weights on request (~/adapt/save) and at
shutdown."""
from __future__ import annotations

import math

import pytest

rclpy = pytest.importorskip("rclpy")
torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from ros_helpers import common  # noqa: E402

pytestmark = pytest.mark.ros
PLAN = "good:21,black:3,nan_info:2,good:18"


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
        saved_on_request = _request_save(common.unique_domain_id(47), save_dir / "weights.safetensors")
    finally:
        rc = node.stop(timeout_s=60.0)
    return {"played": played, "rec": rec, "rc": rc, "log": node.log(), "save_dir": save_dir,
            "model_dir": model_dir, "saved_on_request": saved_on_request}


def _request_save(domain_id: int, weights, timeout_s: float = 30.0) -> bool:
    """Publish std_msgs/Empty on the node's ~/adapt/save until the weights file appears."""
    import time

    from std_msgs.msg import Empty

    from depth_sfm_ros.ros import topics

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        probe = rclpy.create_node("save_requester", context=context)
        pub = probe.create_publisher(Empty, topics.resolve(topics.ADAPT_SAVE_TOPIC), 10)
        deadline = time.monotonic() + timeout_s
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.publish(Empty())
        while not weights.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        probe.destroy_node()
        return weights.is_file()
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
    # the black frames never entered the training buffer (flat, or still against the reference)
    skipped = dict(item.split(" ") for item in last["adapt_frames_skipped"].split(", "))
    assert int(skipped["flat"]) + int(skipped["still"]) >= 3, last
    # the node's own status is still the last one of each message (tools read it)
    assert run["rec"].last_diagnostics()["name"].endswith("depth_sfm")


def test_saved_weights_are_finite_and_load(run):
    from depth_sfm_ros.models.weights_file import bundle_from_weights

    assert "online adaptation:" in run["log"], run["log"]
    assert run["saved_on_request"], run["log"]  # a std_msgs/Empty on ~/adapt/save wrote it
    assert "online adaptation: saved" in run["log"], run["log"]
    bundle, _ = bundle_from_weights(run["save_dir"])
    assert all(math.isfinite(float(p.detach().abs().sum())) for p in bundle.parameters())
    assert (run["save_dir"] / "model_card.yaml").is_file()
