"""Domain randomisation of the synthetic renderer: profiles, ranges, camera, scene families, ground truth,
photometric chain, world-anchored textures, CLI. Renders are tiny (<= 256 px wide, a few frames)."""
from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from depth_sfm_ros.geometry import Pose, backproject_np
from depth_sfm_ros.synth import SynthConfig, SyntheticScene, render_sequence, write_kitti_folder
from depth_sfm_ros.synth import photometric as ph
from depth_sfm_ros.synth import randomization as rz
from depth_sfm_ros.synth import texture
from depth_sfm_ros.synth.kitti import read_calib
from depth_sfm_ros.synth.scene import BUILDING, CEILING, CROWN, FACADE_D, PEDESTRIAN, TRUNK, WALL
from depth_sfm_ros.synth.shading import NATURAL_KINDS

GT_FIELDS = ("depth_m", "dynamic_mask", "instance_ids")


def _frames_equal(a, b, with_image: bool = True) -> bool:
    names = GT_FIELDS + (("image_rgb",) if with_image else ())
    return all(np.array_equal(getattr(a, n), getattr(b, n), equal_nan=n == "depth_m") for n in names) \
        and np.array_equal(a.T_world_cam.matrix, b.T_world_cam.matrix) and a.stamp_ns == b.stamp_ns


def _seed_where(predicate, profile: str = "train", scene: str = "indoor", width: int = 64) -> int:
    """The first seed whose per-sequence draw satisfies ``predicate`` (draws only, no rendering)."""
    for seed in range(200):
        if predicate(rz.draw_scene_randomization(profile, seed, scene, width, None)):
            return seed
    raise AssertionError("no seed satisfies the predicate")


def _box_pose(scene: SyntheticScene, t_s: float) -> tuple[np.ndarray, np.ndarray]:
    return scene.objects.positions(t_s, float(scene.trajectory.x(t_s)), scene.road)


def _brute_force_hits(scene: SyntheticScene, frame, pixels_vu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent float64 ray cast of some pixels against the ground and EVERY box (no culling, no
    ordering): nearest depth (n,) (inf = none) and instance id (n,) (0 = ground / none)."""
    K, T = scene.intrinsics, frame.T_world_cam
    v, u = pixels_vu[:, 0].astype(np.float64), pixels_vu[:, 1].astype(np.float64)
    rays_w = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=1) @ T.R.T  # z_cam = 1
    o = T.t
    with np.errstate(divide="ignore", invalid="ignore"):
        best = np.where(rays_w[:, 2] < -1e-12, -o[2] / rays_w[:, 2], np.inf)
    ids = np.zeros(len(u), dtype=np.int64)
    pos, yaw = _box_pose(scene, frame.index / scene.config.fps)
    half = scene.objects.half_extent_m
    for r in range(len(scene.objects)):
        c, s = math.cos(yaw[r]), math.sin(yaw[r])
        R_wb = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        d_b, o_b = rays_w @ R_wb, (o - pos[r]) @ R_wb
        lo, hi = np.array([-half[r, 0], -half[r, 1], 0.0]), np.array([half[r, 0], half[r, 1], 2 * half[r, 2]])
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - o_b) / d_b, (hi - o_b) / d_b
        t_near, t_far = np.nanmax(np.minimum(t1, t2), axis=1), np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (t_far >= t_near) & (t_near > 1e-3) & (t_near < best)
        best[hit], ids[hit] = t_near[hit], scene.objects.instance_id[r]
    best[best > scene.config.max_depth_m] = np.inf
    ids[~np.isfinite(best)] = 0
    return best, ids


def _surface_distance_m(scene: SyntheticScene, frame) -> np.ndarray:
    """(H, W) distance of each back-projected GT point to the surface it claims (ground plane z = 0
    for id 0, else the nearest box of its instance at the frame's time); NaN for sky."""
    pos, yaw = _box_pose(scene, frame.index / scene.config.fps)
    pts = frame.T_world_cam.transform_points(backproject_np(frame.depth_m.astype(np.float64), scene.intrinsics))
    dist = np.full(frame.depth_m.shape, np.nan)
    ground = (frame.instance_ids == 0) & np.isfinite(frame.depth_m)
    dist[ground] = np.abs(pts[ground, 2])
    half = scene.objects.half_extent_m
    for iid in np.unique(frame.instance_ids[frame.instance_ids > 0]):
        sel = frame.instance_ids == iid
        best = np.full(int(sel.sum()), np.inf)
        for r in np.flatnonzero(scene.objects.instance_id == iid):
            c, s = math.cos(yaw[r]), math.sin(yaw[r])
            pb = (pts[sel] - pos[r]) @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            lo, hi = np.array([-half[r, 0], -half[r, 1], 0.0]), np.array([half[r, 0], half[r, 1], 2 * half[r, 2]])
            outside = np.linalg.norm(np.maximum(np.maximum(lo - pb, pb - hi), 0.0), axis=1)
            best = np.minimum(best, np.where(outside > 0, outside, np.minimum(pb - lo, hi - pb).min(axis=1)))
        dist[sel] = best
    return dist


# --- profiles, determinism, the classic profile ----------------------------------------------------
def test_config_profiles_defaults_and_validation():
    classic = SynthConfig()
    assert (classic.randomize, classic.scene, classic.height, classic.camera_height_m) == ("none", "street", 192, 1.65)
    assert (classic.fx_norm, classic.fy_norm) == (0.58, 1.92) and classic.randomization() is None
    assert SynthConfig(randomize="none", height=192) == classic
    with pytest.raises(ValueError, match="randomize"):
        SynthConfig(randomize="test")
    with pytest.raises(ValueError, match="scene"):
        SynthConfig(randomize="train", scene="forest")
    with pytest.raises(ValueError, match="needs randomize"):
        SynthConfig(scene="indoor")  # the classic profile is the street only
    with pytest.raises(ValueError, match="fx_norm"):
        SynthConfig(randomize="train", fx_norm=0.5)
    with pytest.raises(ValueError, match="seed"):
        SynthConfig(randomize="heldout", seed=-1)


def test_same_seed_and_profile_identical_bytes_random_access_and_differences():
    config = SynthConfig(seed=3, width=64, num_frames=3, randomize="train", scene="mixed")
    a, b = render_sequence(config), render_sequence(config)
    assert all(_frames_equal(fa, fb) for fa, fb in zip(a, b))
    assert _frames_equal(SyntheticScene(config).render_frame(2), a[2])  # any frame renders alone
    height = a[0].image_rgb.shape[0]
    for other in (SynthConfig(seed=4, width=64, height=height, num_frames=1, randomize="train", scene="mixed"),
                  SynthConfig(seed=3, width=64, height=height, num_frames=1, randomize="heldout", scene="mixed")):
        assert not np.array_equal(SyntheticScene(other).render_frame(0).image_rgb, a[0].image_rgb)
    assert a.randomization is not None and a.randomization.profile == "train"


def test_mixed_scene_picks_every_family_from_the_seed():
    families = [rz.choose_family("mixed", seed, "train") for seed in range(40)]
    assert set(families) == set(rz.SCENE_FAMILIES)
    assert families == [rz.choose_family("mixed", seed, "train") for seed in range(40)]  # deterministic
    assert rz.choose_family("indoor", 5, "train") == "indoor"


# --- the ranges table ------------------------------------------------------------------------------
def _interval_fields() -> list[str]:
    return [f.name for f in fields(rz.RandomizationRanges)
            if isinstance(getattr(rz.TRAIN_RANGES, f.name)[0], tuple)]


def test_heldout_ranges_never_overlap_training_where_they_must_not():
    assert set(rz.HELDOUT_DISJOINT) <= {f.name for f in fields(rz.RandomizationRanges)}
    assert set(rz.FIELD_DOC) == {f.name for f in fields(rz.RandomizationRanges)}
    for name in rz.HELDOUT_DISJOINT:
        train, held = getattr(rz.TRAIN_RANGES, name), getattr(rz.HELDOUT_RANGES, name)
        if isinstance(train[0], tuple):
            assert rz.overlap_length(train, held) == 0.0, name
        else:
            assert not set(train) & set(held), name
    for name in _interval_fields():  # the others are shared
        if name not in rz.HELDOUT_DISJOINT:
            assert getattr(rz.TRAIN_RANGES, name) == getattr(rz.HELDOUT_RANGES, name), name
    assert rz.overlap_length(((0.0, 1.0),), ((0.5, 2.0),)) == 0.5  # the helper can report overlap
    # the specification's held-out camera ranges
    assert rz.in_intervals(105.0, rz.HELDOUT_RANGES.hfov_deg) and rz.in_intervals(47.0, rz.HELDOUT_RANGES.hfov_deg)
    assert rz.HELDOUT_RANGES.camera_height_m == ((2.2, 2.5),)
    assert set(rz.TRAIN_RANGES.texture_families) | set(rz.HELDOUT_RANGES.texture_families) <= set(texture.FAMILIES)


@pytest.mark.parametrize("profile", ["train", "heldout"])
def test_per_sequence_draws_respect_their_profile(profile):
    ranges = rz.RANGES[profile]
    other = rz.RANGES["heldout" if profile == "train" else "train"]
    seen_aspects, seen_families = set(), set()
    for seed in range(300):
        draw = rz.draw_scene_randomization(profile, seed, "mixed", 640, None)
        cam, light, photo, lay = draw.camera, draw.lighting, draw.photometric, draw.layout
        checks = {"hfov_deg": cam.hfov_deg, "camera_height_m": cam.camera_height_m,
                  "pitch_down_deg": cam.pitch_down_deg, "roll_deg": cam.roll_deg,
                  "sun_elevation_deg": light.sun_elevation_deg, "sun_intensity": light.sun_intensity,
                  "ambient": light.ambient, "light_flicker": light.flicker_amp, "exposure_ev": photo.exposure_ev,
                  "exposure_jitter_ev": photo.exposure_jitter_ev, "gamma": photo.gamma,
                  "white_balance_gain": photo.wb_gain_r, "shot_noise_var": photo.shot_noise_var,
                  "read_noise_std": photo.read_noise_std, "shutter_s": photo.shutter_s,
                  "vignetting": photo.vignetting, "jpeg_quality": photo.jpeg_quality}
        checks["street_speed_mps" if lay.family != "indoor" else "indoor_speed_mps"] = lay.speed_mps
        if lay.family == "indoor":
            checks["room_width_m" if lay.indoor_layout == "room" else "corridor_width_m"] = lay.main_width_m
            checks["indoor_yaw_wobble_deg"] = lay.indoor_yaw_wobble_deg
            lo = min(lo for lo, _ in ranges.ceiling_height_m)
            assert lay.ceiling_height_m >= max(lo, cam.camera_height_m + 0.5) - 1e-9
        for name, value in checks.items():
            assert rz.in_intervals(value, getattr(ranges, name)), (seed, name, value)
            if name in rz.HELDOUT_DISJOINT:  # strictly inside its own profile, never in the other's
                assert not rz.in_intervals(value, getattr(other, name), tol=-1e-9), (seed, name, value)
        assert rz.in_intervals(photo.wb_gain_b, ranges.white_balance_gain)
        assert cam.aspect in ranges.aspect_ratios and cam.height == round(640 / cam.aspect)
        seen_aspects.add(cam.aspect)
        seen_families.add(lay.family)
    assert seen_aspects == set(ranges.aspect_ratios) and seen_families == set(rz.SCENE_FAMILIES)


@pytest.mark.parametrize("profile", ["train", "heldout"])
def test_per_object_draws_respect_their_profile(profile):
    ranges = rz.RANGES[profile]
    allowed = {texture.FAMILIES.index(f) for f in ranges.texture_families}
    for scene_name, seed in (("street", 1), ("intersection", 2), ("indoor", 3), ("indoor", 4)):
        scene = SyntheticScene(SynthConfig(seed=seed, width=32, num_frames=20, randomize=profile, scene=scene_name))
        objects, look = scene.objects, scene._shading.box_look
        man_made = ~np.isin(objects.kind, NATURAL_KINDS) & (objects.kind != PEDESTRIAN)
        saturation = rz.rgb_saturation(objects.colour[man_made])
        assert all(rz.in_intervals(s, ranges.palette_saturation, tol=1e-5) for s in saturation), scene_name
        patterned = look.pattern_contrast[1:] > 0
        assert patterned.any() and set(look.family_id[1:][patterned].tolist()) <= allowed
        assert scene._shading.ground_look.family_id in allowed
        assert all(rz.in_intervals(p, ranges.texture_period_m, tol=1e-5) for p in look.period_m[1:])
        on_road_buildings = (objects.kind == BUILDING) & objects.on_road
        setback = np.abs(objects.lane_d_m) - objects.half_extent_m[:, 1] - FACADE_D
        assert all(rz.in_intervals(s, ranges.facade_setback_m, tol=1e-6) for s in setback[on_road_buildings])
        heights = 2 * objects.half_extent_m[objects.kind == BUILDING, 2]
        assert all(rz.in_intervals(h, ranges.building_height_m, tol=1e-6) for h in heights)
        if scene_name == "indoor":
            layout = scene.indoor_layout
            width_range = ranges.room_width_m if layout.kind == "room" else ranges.corridor_width_m
            assert rz.in_intervals(layout.width_m, width_range)
            assert (objects.kind == WALL).sum() >= 6 and (objects.kind == CEILING).sum() == 1


def test_ranges_table_is_quoted_in_the_readme():
    from pathlib import Path
    table = rz.ranges_table_markdown()
    assert table.count("\n") == len(fields(rz.RandomizationRanges)) + 1 and "**[45, 50] or [100, 110]**" in table
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert table in readme, "README ranges table is out of date: paste synth.randomization.ranges_table_markdown()"


# --- camera --------------------------------------------------------------------------------------------
def test_intrinsics_follow_fov_and_aspect_and_calib_matches_exactly(tmp_path):
    for seed in range(12):
        config = SynthConfig(seed=seed, width=200, num_frames=1, randomize="train")
        draw = config.randomization()
        K = config.intrinsics
        assert K.width == 200 and K.height == round(200 / draw.camera.aspect)
        assert K.fx == K.fy == pytest.approx(100.0 / math.tan(math.radians(draw.camera.hfov_deg) / 2), rel=1e-12)
        assert math.degrees(2 * math.atan(K.width / (2 * K.fx))) == pytest.approx(draw.camera.hfov_deg, abs=1e-9)
        assert (K.cx, K.cy) == ((K.width - 1) / 2, (K.height - 1) / 2)
    user = SynthConfig(seed=0, width=200, height=50, num_frames=1, randomize="heldout")
    assert user.intrinsics.height == 50 and user.randomization().camera.height_source == "user"
    assert user.intrinsics.fx == SynthConfig(seed=0, width=200, num_frames=1, randomize="heldout").intrinsics.fx
    seq = render_sequence(SynthConfig(seed=5, width=48, num_frames=2, randomize="heldout", scene="indoor"))
    write_kitti_folder(iter(seq.frames), seq.intrinsics, tmp_path / "k")
    assert seq.frames[0].image_rgb.shape[:2] == (seq.intrinsics.height, 48)
    assert read_calib(tmp_path / "k" / "calib.txt", 48, seq.intrinsics.height) == seq.intrinsics  # exact


def test_pitched_rolled_camera_pose_and_ground_depth_are_analytic():
    seed = _seed_where(lambda d: d.camera.pitch_down_deg > 7.0 and abs(d.camera.roll_deg) > 1.5, scene="street")
    scene = SyntheticScene(SynthConfig(seed=seed, width=96, height=64, num_frames=1, randomize="train"))
    cam = scene.randomization.camera
    frame = scene.render_frame(0)
    R, h = frame.T_world_cam.R, frame.T_world_cam.t[2]
    # optical axis below the horizon by the mount pitch (+- the 0.008 rad driving pitch wobble)
    assert -math.degrees(math.asin(R[2, 2])) == pytest.approx(cam.pitch_down_deg, abs=0.5)
    # roll: the image x axis leaves the horizontal plane by -cos(pitch) sin(roll)
    roll_deg = math.degrees(math.asin(-R[2, 0] / math.cos(math.asin(R[2, 2]))))
    assert roll_deg == pytest.approx(cam.roll_deg, abs=0.05)
    assert h == pytest.approx(cam.camera_height_m, abs=0.031)  # + bounce
    # ground pixels: depth = h / (-(world z of the ray with camera z = 1)), from the pose alone
    ground = (frame.instance_ids == 0) & np.isfinite(frame.depth_m)
    v, u = np.nonzero(ground)
    K = scene.intrinsics
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones(u.size)], axis=1) @ R.T
    np.testing.assert_allclose(frame.depth_m[ground], h / -rays[:, 2], rtol=2e-6)
    assert ground.sum() > 0.3 * ground.size  # pitched down: much ground in view


def test_indoor_floor_depth_is_analytic_and_static_room_has_empty_dynamic_mask():
    seed = _seed_where(lambda d: d.family == "indoor" and not d.layout.walker and abs(d.camera.roll_deg) < 2.0)
    scene = SyntheticScene(SynthConfig(seed=seed, width=80, height=60, num_frames=6, randomize="train",
                                       scene="indoor"))
    assert scene.dynamic_ids.size == 0 and scene.lead_id == 0
    K = scene.intrinsics
    for index in (0, 5):
        frame = scene.render_frame(index)
        assert not frame.dynamic_mask.any()
        assert np.isfinite(frame.depth_m).all()  # closed building: no sky indoors
        R, h = frame.T_world_cam.R, frame.T_world_cam.t[2]
        assert h == pytest.approx(scene.randomization.camera.camera_height_m, abs=0.031)
        floor = frame.instance_ids == 0
        v, u = np.nonzero(floor)
        rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones(u.size)], axis=1) @ R.T
        assert floor.sum() > 0.05 * floor.size
        np.testing.assert_allclose(frame.depth_m[floor], h / -rays[:, 2], rtol=2e-6)
        ceiling_ids = scene.objects.instance_id[scene.objects.kind == CEILING]
        ceiling = np.isin(frame.instance_ids, ceiling_ids)
        if ceiling.any():  # the ceiling plane: depth = (H - h) / (world z of the ray)
            v, u = np.nonzero(ceiling)
            rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones(u.size)], axis=1) @ R.T
            H = scene.indoor_layout.ceiling_height_m
            np.testing.assert_allclose(frame.depth_m[ceiling], (H - h) / rays[:, 2], rtol=2e-6)


def test_indoor_camera_is_slow_and_turns():
    for layout in ("room", "corridor"):
        seed = _seed_where(lambda d, layout=layout: d.family == "indoor" and d.layout.indoor_layout == layout)
        scene = SyntheticScene(SynthConfig(seed=seed, width=32, num_frames=40, randomize="train", scene="indoor"))
        poses = [scene.T_world_cam(i) for i in range(40)]
        speeds = [np.linalg.norm((b.t - a.t)[:2]) * 10.0 for a, b in zip(poses, poses[1:])]
        assert 0.2 - 0.15 <= min(speeds) and max(speeds) <= 1.5 + 0.15, (layout, min(speeds), max(speeds))
        yaw_change = max((a.inverse() @ b).rotation_angle() for a, b in zip(poses, poses[1:]))
        assert yaw_change > 1e-3  # some rotation
        # the camera stays inside the main space, clear of the walls
        half = scene.indoor_layout.half_width_m
        assert all(abs(p.t[1]) < half - 0.3 for p in poses)


# --- scene families and ground truth -------------------------------------------------------------
@pytest.mark.parametrize("scene_name,profile,seed", [("street", "train", 2), ("intersection", "heldout", 1),
                                                     ("indoor", "train", 7)])
def test_gt_depth_instances_and_dynamic_mask_are_exact(scene_name, profile, seed):
    scene = SyntheticScene(SynthConfig(seed=seed, width=80, num_frames=3, randomize=profile, scene=scene_name))
    frame = scene.render_frame(2)
    valid = np.isfinite(frame.depth_m)
    # every GT point lies on the surface its instance id names (float32 depth: ~1e-7 relative)
    dist = _surface_distance_m(scene, frame)
    assert np.nanmax(dist[valid] / frame.depth_m[valid]) < 1e-5
    # and it is the NEAREST surface: an independent float64 cast of every pixel against every box
    pixels = np.argwhere(np.ones(frame.depth_m.shape, dtype=bool))
    depth_ref, ids_ref = _brute_force_hits(scene, frame, pixels)
    got = frame.depth_m.reshape(-1).astype(np.float64)
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(depth_ref))
    fin = np.isfinite(depth_ref)
    np.testing.assert_allclose(got[fin], depth_ref[fin], rtol=1e-5)
    assert np.mean(frame.instance_ids.reshape(-1) == ids_ref) > 0.995  # ties at box edges only
    # dynamic = instances whose boxes move in the world, found independently from two times
    t_s = 2 / scene.config.fps
    (p0, y0), (p1, y1) = _box_pose(scene, t_s), _box_pose(scene, t_s + 0.05)
    moving_rows = (np.linalg.norm(p1 - p0, axis=1) > 1e-9) | (np.abs(y1 - y0) > 1e-9)
    moving = set(scene.objects.instance_id[moving_rows].tolist())
    assert moving == set(scene.dynamic_ids.tolist())
    np.testing.assert_array_equal(frame.dynamic_mask, np.isin(frame.instance_ids, list(moving)))
    if scene_name != "indoor":
        assert frame.dynamic_mask.any() and scene.lead_id == 1


def test_scene_families_have_their_objects():
    inter = SyntheticScene(SynthConfig(seed=1, width=32, num_frames=30, randomize="train", scene="intersection"))
    o = inter.objects
    assert inter.crossings_x_m and 25.0 <= inter.crossings_x_m[0] <= 60.0
    cross_traffic = ~o.on_road & (np.abs(o.velocity_mps[:, 1]) > 5.0)
    assert cross_traffic.any() and not o.velocity_mps[:, 0].any()
    kinds = set(o.kind.tolist())
    assert {PEDESTRIAN, TRUNK, CROWN, BUILDING} <= kinds
    walking = (o.kind == PEDESTRIAN) & o.is_dynamic
    standing = (o.kind == PEDESTRIAN) & ~o.is_dynamic
    assert walking.any() and standing.any()
    trees = o.instance_id[o.kind == TRUNK]
    assert all(((o.instance_id == t) & (o.kind == CROWN)).sum() == 1 for t in trees)  # trunk + crown = 1 tree
    assert {"tree", "pedestrian", "car", "building"} <= set(inter.object_kinds.values())
    street = SyntheticScene(SynthConfig(seed=1, width=32, num_frames=30, randomize="train", scene="street"))
    assert street.crossings_x_m == []
    seed = _seed_where(lambda d: d.family == "indoor" and d.layout.walker and d.layout.indoor_layout == "room")
    room = SyntheticScene(SynthConfig(seed=seed, width=48, num_frames=20, randomize="train", scene="indoor"))
    assert room.object_kinds[1] == "pedestrian" and room.dynamic_ids.tolist() == [1]
    assert {"wall", "ceiling"} <= set(room.object_kinds.values())
    assert set(room.object_kinds.values()) & {"table", "shelf", "sofa", "cabinet"}


# --- photometric chain ----------------------------------------------------------------------------------
def test_photometric_chain_changes_the_image_not_the_ground_truth():
    scene = SyntheticScene(SynthConfig(seed=2, width=96, num_frames=2, randomize="train", scene="street"))
    clean, camera = scene.render_frame(1, photometric=False), scene.render_frame(1)
    assert _frames_equal(clean, camera, with_image=False)
    assert np.abs(clean.image_rgb.astype(int) - camera.image_rgb.astype(int)).mean() > 2.0
    assert _frames_equal(camera, SyntheticScene(scene.config).render_frame(1))  # noise is seeded per frame
    frame0 = scene.render_frame(0)
    assert not np.array_equal(frame0.image_rgb, scene.render_frame(0, photometric=False).image_rgb)


def test_motion_blur_follows_the_gt_image_motion_over_the_shutter(monkeypatch):
    seed = _seed_where(lambda d: d.photometric.shutter_s > 0.008, scene="street")
    scene = SyntheticScene(SynthConfig(seed=seed, width=64, num_frames=3, randomize="train", scene="street"))
    calls = []
    real_blur = ph.motion_blur
    monkeypatch.setattr(ph, "motion_blur", lambda image, flow: calls.append(flow) or real_blur(image, flow))
    frame = scene.render_frame(1)
    assert len(calls) == 1
    shutter_s = scene.randomization.photometric.shutter_s
    T_late = scene.trajectory.T_world_cam(0.1 + shutter_s / 2)
    expected = ph.image_motion_px(frame.depth_m, scene.intrinsics, T_late.inverse() @ frame.T_world_cam)
    np.testing.assert_allclose(calls[0], expected, atol=1e-4)
    assert np.abs(expected).max() > 0.05  # the camera moves during the exposure


def test_each_photometric_op_does_what_it_says():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, size=(40, 60, 3)).astype(np.float32)
    np.testing.assert_allclose(ph.apply_gain_and_white_balance(image, 2.0, (0.9, 1.0, 1.1)),
                               image * np.array([1.8, 2.0, 2.2], np.float32), rtol=1e-6)
    vig = ph.vignetting_factor(40, 60, 0.3)
    assert vig[20, 30, 0] > 0.99
    assert vig[0, 0, 0] == pytest.approx(1.0 - 0.3 * ((29.5 / 30) ** 2 + (19.5 / 20) ** 2) / 2)
    flat = np.full((200, 200, 3), 0.25, np.float32)
    noisy_dark = ph.add_sensor_noise(flat, 4e-4, 0.01, np.random.default_rng(1)) - flat
    noisy_bright = ph.add_sensor_noise(flat * 3, 4e-4, 0.01, np.random.default_rng(1)) - flat * 3
    assert noisy_dark.std() == pytest.approx(math.sqrt(4e-4 * 0.25 + 1e-4), rel=0.05)
    assert noisy_bright.std() > noisy_dark.std() * 1.2  # shot noise grows with the signal
    np.testing.assert_allclose(ph.apply_gamma(np.float32([[0.25]]), 0.5), [[0.5]], rtol=1e-6)
    u8 = ph.to_uint8(image)
    jpeg = ph.jpeg_roundtrip(u8, 30)
    assert jpeg.shape == u8.shape and 0 < np.abs(jpeg.astype(int) - u8).mean() < 40
    stripes = np.zeros((20, 40, 3), np.float32)
    stripes[:, ::2] = 1.0
    flow = np.zeros((20, 40, 2), np.float32)
    flow[..., 0] = 1.0  # half the exposure moves 1 px to the right: vertical stripes blur out
    blurred = ph.motion_blur(stripes, flow)
    assert blurred[:, 5:35].std() < 0.3 * stripes[:, 5:35].std()
    flow[..., 0], flow[..., 1] = 0.0, 1.0  # motion along the stripes leaves them intact
    np.testing.assert_allclose(ph.motion_blur(stripes, flow)[2:-2], stripes[2:-2], atol=1e-6)
    params = ph.frame_photometric(rz.draw_photometric(np.random.default_rng(3), rz.TRAIN_RANGES),
                                  np.random.default_rng(4))
    assert 1 <= params.jpeg_quality <= 100 and params.gain > 0


def test_camera_image_chain_applies_every_op():
    import cv2
    smooth = cv2.resize(np.random.default_rng(0).uniform(0.15, 0.45, size=(6, 8, 3)).astype(np.float32), (64, 48),
                        interpolation=cv2.INTER_LINEAR)
    radiance = smooth * (0.75 + 0.25 * (np.arange(64) % 4 < 2))[None, :, None].astype(np.float32)  # grey stripes
    neutral = ph.FramePhotometric(gain=1.0, wb_gains=(1.0, 1.0, 1.0), gamma=1.0, vignetting=0.0, shot_noise_var=0.0,
                                  read_noise_std=0.0, jpeg_quality=100)

    def run(**changes):
        params = ph.FramePhotometric(**{**neutral.__dict__, **changes})
        return ph.camera_image(radiance, params, np.random.default_rng(1)).astype(np.float64)

    clean = ph.to_uint8(radiance).astype(np.float64)
    assert np.abs(run() - clean).mean() < 1.5  # neutral chain: JPEG at quality 100 only
    assert np.abs(run(gain=2.0) - 2.0 * clean).mean() < 3.0
    assert run(wb_gains=(1.5, 1.0, 0.5))[..., 0].mean() > 1.4 * clean[..., 0].mean()
    assert run(wb_gains=(1.5, 1.0, 0.5))[..., 2].mean() < 0.6 * clean[..., 2].mean()
    vig = run(vignetting=0.6) - clean
    assert vig[:6, :6].mean() < -10 and abs(vig[20:28, 28:36].mean()) < 2
    assert run(gamma=0.5).mean() > 1.3 * clean.mean()
    assert (run(read_noise_std=0.05) - clean).std() > 8
    assert np.abs(run(jpeg_quality=10) - clean).mean() > 2.0
    flow = np.zeros((48, 64, 2), np.float32)
    flow[..., 0] = 3.0
    blurred = ph.camera_image(radiance, neutral, np.random.default_rng(1), flow).astype(np.float64)
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.6 * np.abs(np.diff(clean, axis=1)).mean()


def test_image_motion_of_a_forward_step_points_away_from_the_centre():
    from depth_sfm_ros.geometry import Intrinsics
    K = Intrinsics(fx=50.0, fy=50.0, cx=31.5, cy=23.5, width=64, height=48)
    depth = np.full((48, 64), 10.0, np.float32)
    flow = ph.image_motion_px(depth, K, Pose.from_Rt(np.eye(3), [0.0, 0.0, -1.0]))  # points come 1 m closer
    assert flow[0, 0, 0] < 0 and flow[0, 0, 1] < 0 and flow[-1, -1, 0] > 0
    assert flow[0, 0, 0] == pytest.approx((0 - 31.5) * (10 / 9 - 1), rel=1e-5)


# --- textures are attached to the surfaces ---------------------------------------------------------------
def _static_warp_error(scene: SyntheticScene, t: int, gap: int, photometric: bool) -> tuple[float, float]:
    """Mean photometric L1 of warping frame t + gap into t with GT depth and pose, over static pixels
    visible in both frames (away from depth edges), and the same error without warping."""
    import cv2
    import torch

    from depth_sfm_ros.geometry import ops
    a, b = scene.render_frame(t, photometric), scene.render_frame(t + gap, photometric)
    T_b_a = torch.tensor((b.T_world_cam.inverse() @ a.T_world_cam).matrix, dtype=torch.float32)[None]
    K = torch.tensor(scene.intrinsics.K, dtype=torch.float32)[None]

    def img(f):
        return torch.from_numpy(f.image_rgb).permute(2, 0, 1)[None].float() / 255.0

    def dep(f):
        return torch.from_numpy(np.nan_to_num(f.depth_m, nan=1e6))[None, None]

    warp = ops.inverse_warp(img(b), dep(a), T_b_a, K)
    z_b = ops.inverse_warp(dep(b), dep(a), T_b_a, K).image[0, 0].numpy()
    z_proj = warp.depth_in_source[0, 0].numpy()
    visible = np.abs(z_b - z_proj) < 0.02 * z_proj  # not occluded in frame b
    ok = (warp.valid[0, 0].numpy() > 0) & np.isfinite(a.depth_m) & ~a.dynamic_mask & visible
    ok = cv2.erode(ok.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert ok.mean() > 0.25
    err = (warp.image - img(a)).abs().mean(1)[0].numpy()
    err_unwarped = (img(b) - img(a)).abs().mean(1)[0].numpy()
    return float(err[ok].mean()), float(err_unwarped[ok].mean())


@pytest.mark.parametrize("scene_name,seed", [("street", 1), ("indoor", 1)])
def test_textures_are_world_anchored(scene_name, seed, monkeypatch):
    config = SynthConfig(seed=seed, width=192, height=144, num_frames=3, randomize="train", scene=scene_name)
    anchored, unwarped = _static_warp_error(SyntheticScene(config), 0, 2, photometric=False)
    assert anchored < 0.3 * unwarped
    with_camera, _ = _static_warp_error(SyntheticScene(config), 0, 2, photometric=True)
    assert with_camera < 0.6 * unwarped  # still consistent through noise, blur, exposure jitter and JPEG
    # control: the same scene with textures that slide with the camera (surface coords - camera xy)
    sliding_scene = SyntheticScene(config)
    cast = sliding_scene._cast

    def cast_sliding(t_s, T_wc):
        depth, box, face, coords, yaws = cast(t_s, T_wc)
        return depth, box, face, coords - T_wc.t[:2].astype(np.float32), yaws

    monkeypatch.setattr(sliding_scene, "_cast", cast_sliding)
    sliding, _ = _static_warp_error(sliding_scene, 0, 2, photometric=False)
    assert anchored < 0.35 * sliding, (anchored, sliding)


# --- CLI ---------------------------------------------------------------------------------------------------
def test_cli_randomize_writes_metadata_beside_calib(tmp_path, capsys):
    import json

    import yaml

    from depth_sfm_ros import cli
    out = tmp_path / "out"
    rc = cli.main(["synth", "--out", str(out), "--seed", "6", "--frames", "2", "--width", "48", "--format", "kitti",
                   "--randomize", "heldout", "--scene", "indoor"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "randomize heldout: scene indoor" in text
    record = yaml.safe_load((out / "kitti" / "randomization.yaml").read_text())
    assert record == yaml.safe_load((out / "randomization.yaml").read_text())
    scene = SyntheticScene(SynthConfig(seed=6, width=48, num_frames=2, randomize="heldout", scene="indoor"))
    assert record["profile"] == "heldout" and record["scene"] == "indoor"
    assert record["camera"]["fx"] == scene.intrinsics.fx and record["camera"]["height"] == scene.intrinsics.height
    assert read_calib(out / "kitti" / "calib.txt", 48, scene.intrinsics.height) == scene.intrinsics
    meta = json.loads((out / "kitti" / "meta.json").read_text())
    assert meta["randomize"] == "heldout" and meta["scene"] == "indoor"
    assert cli.main(["synth", "--out", str(tmp_path / "bad"), "--scene", "indoor", "--format", "kitti"]) == 2
    classic = tmp_path / "classic"
    assert cli.main(["synth", "--out", str(classic), "--frames", "1", "--width", "32", "--format", "kitti"]) == 0
    assert not (classic / "randomization.yaml").exists() and not (classic / "kitti" / "randomization.yaml").exists()
    assert "randomize" not in json.loads((classic / "kitti" / "meta.json").read_text())
