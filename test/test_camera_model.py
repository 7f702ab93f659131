"""depth_sfm_ros.geometry.camera_model: the one camera-model module of the node, the bag tools and training.

ROS-free and fast. The synthetic distorted images are rendered with the *forward* distortion models only
(cv2.projectPoints / cv2.fisheye.projectPoints of dense samples on small 3D discs), so the undistortion under
test (remap tables, new camera matrix) is checked against an independent description of the lens.
"""
from __future__ import annotations

import doctest
import pickle

import cv2
import numpy as np
import pytest

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_ros.geometry import camera_model as cm
from depth_sfm_ros.geometry.camera_model import (CameraInputResolver, CameraModel, UnsupportedCameraModel,
                                                 Undistorter, rectified_camera_info_fields, resolve_input,
                                                 topic_is_rectified)

W, H = 640, 480
# (K as fx, fy, cx, cy; D) of a wide-angle camera per model, distortion strong enough to move dots by pixels
CAMERAS = {
    "plumb_bob": ((380.0, 378.5, 322.4, 236.1), [-0.30, 0.09, 3e-4, -2e-4, -0.012]),
    "rational_polynomial": ((330.0, 331.0, 318.2, 243.7), [0.55, -2.6, 2e-4, -1e-4, 1.45, 0.42, -2.45, 1.38]),
    "equidistant": ((240.0, 240.5, 318.7, 241.2), [-0.013, 0.046, -0.042, 0.0079]),
}
MODELS = list(CAMERAS)
# sub-pixel tolerance of a dot's position after undistortion. Resampling a raw pixel whose footprint grows across
# the dot (the edge of a fisheye image is magnified 2-3x) shifts a blurred dot's centroid by up to ~0.1 px there.
TOLERANCE_PX = {"plumb_bob": 0.1, "rational_polynomial": 0.1, "equidistant": 0.2}


def _K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def camera(name: str, with_P: bool = False, **kwargs) -> CameraModel:
    (fx, fy, cx, cy), D = CAMERAS[name]
    P = None
    if with_P:  # a rectified camera deliberately unlike K (narrower, shifted), as a calibrator may choose
        P = np.zeros((3, 4))
        P[:, :3] = _K(0.7 * fx, 0.7 * fx, cx + 6.0, cy - 4.0)
    return CameraModel.from_fields(W, H, _K(fx, fy, cx, cy), D, name, P=P, **kwargs)


def project_raw(model: CameraModel, points: np.ndarray) -> np.ndarray:
    """Raw (distorted) pixel positions (N, 2) of camera-frame points (N, 3): the forward lens model."""
    points = np.asarray(points, np.float64).reshape(-1, 1, 3)
    if model.distortion_model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(points, np.zeros(3), np.zeros(3), np.array(model.K),
                                          np.array(model.D).reshape(4, 1))
    else:
        uv, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), np.array(model.K), np.array(model.D))
    return uv.reshape(-1, 2)


def project_pinhole(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    uvw = np.asarray(points, np.float64) @ np.asarray(K).T
    return uvw[:, :2] / uvw[:, 2:]


def render_raw(model: CameraModel, centres: np.ndarray, radius_m: np.ndarray, supersample: int = 8) -> np.ndarray:
    """float32 (H, W) raw image: anti-aliased coverage of fronto-parallel 3D discs (centres (N, 3), radii (N,))
    seen through the lens model, rendered by projecting dense samples of each disc."""
    g = np.linspace(-1.0, 1.0, 97)
    gx, gy = np.meshgrid(g, g)
    unit = np.stack([gx.ravel(), gy.ravel()], axis=1)
    unit = unit[np.sum(unit ** 2, axis=1) <= 1.0]
    samples = np.concatenate([np.c_[c[0] + r * unit[:, 0], c[1] + r * unit[:, 1], np.full(len(unit), c[2])]
                              for c, r in zip(centres, radius_m)])
    uv = project_raw(model, samples)
    sub = np.floor((uv + 0.5) * supersample).astype(np.int64)
    ok = (sub[:, 0] >= 0) & (sub[:, 0] < W * supersample) & (sub[:, 1] >= 0) & (sub[:, 1] < H * supersample)
    sub = np.unique(sub[ok, 1] * (W * supersample) + sub[ok, 0])
    su, sv = sub % (W * supersample), sub // (W * supersample)
    pixel = (sv // supersample) * W + su // supersample
    coverage = np.bincount(pixel, minlength=W * H) / float(supersample ** 2)
    return coverage.reshape(H, W).astype(np.float32)


def dot_centres(image: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Intensity-weighted centroids (N, 2) of the blobs of ``image`` (pixel-centre convention)."""
    n, labels = cv2.connectedComponents((image > threshold).astype(np.uint8))
    v, u = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    w = np.bincount(labels.ravel(), weights=image.ravel(), minlength=n)
    cu = np.bincount(labels.ravel(), weights=(image * u).ravel(), minlength=n)
    cv = np.bincount(labels.ravel(), weights=(image * v).ravel(), minlength=n)
    return np.stack([cu[1:] / w[1:], cv[1:] / w[1:]], axis=1)


def nearest_errors(found: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.array([np.min(np.linalg.norm(found - e, axis=1)) for e in expected])


def scene_for(model: CameraModel, rect: Intrinsics, spacing_px: float = 44.0, dot_radius_px: float = 3.5):
    """3D disc centres on a grid of the rectified image (depths 1.5 to 4 m), radii ~``dot_radius_px`` there,
    keeping only discs whose raw image lies well inside the raw frame."""
    us = np.arange(20.0, rect.width - 20.0, spacing_px)
    vs = np.arange(20.0, rect.height - 20.0, spacing_px)
    uu, vv = np.meshgrid(us, vs)
    uu, vv = uu.ravel(), vv.ravel()
    z = 1.5 + 2.5 * ((np.arange(uu.size) * 7) % 11) / 10.0
    centres = np.stack([(uu - rect.cx) / rect.fx * z, (vv - rect.cy) / rect.fy * z, z], axis=1)
    raw = project_raw(model, centres)
    keep = (raw[:, 0] > 10) & (raw[:, 0] < W - 11) & (raw[:, 1] > 10) & (raw[:, 1] < H - 11)
    return centres[keep], dot_radius_px * centres[keep, 2] / rect.fx


# ------------------------------------------------------------------------------------- undistortion
@pytest.mark.parametrize("with_P", [False, True], ids=["new_K_from_opencv", "new_K_from_P"])
@pytest.mark.parametrize("name", MODELS)
def test_undistorted_dots_land_at_the_pinhole_projection_of_the_rectified_intrinsics(name, with_P):
    model = camera(name, with_P)
    geometry = resolve_input(model, rectified=False)
    assert geometry.remaps and geometry.source == ("undistorted (P)" if with_P else geometry.source)
    rect = geometry.intrinsics
    if with_P:
        np.testing.assert_allclose(rect.K, model.P[:, :3])
    else:
        assert geometry.source.startswith("undistorted (" + ("fisheye balance" if name == "equidistant"
                                                             else "optimal alpha"))
    centres, radii = scene_for(model, rect)
    assert len(centres) >= 40
    raw = render_raw(model, centres, radii)
    undistorted = geometry.prepare(raw)
    assert undistorted.shape == (H, W) and undistorted.dtype == np.float32
    expected = project_pinhole(rect.K, centres)
    errors = nearest_errors(dot_centres(undistorted), expected)
    assert errors.max() < TOLERANCE_PX[name], (name, with_P, errors.max())
    # the raw image has them elsewhere: the test can tell an undistortion from none
    raw_errors = nearest_errors(dot_centres(raw), expected)
    assert raw_errors.max() > 3.0
    # and so would the raw camera matrix K used as the rectified intrinsics
    assert nearest_errors(dot_centres(undistorted), project_pinhole(model.K, centres)).max() > 3.0


@pytest.mark.parametrize("name", ["plumb_bob", "equidistant"])
def test_rectification_rotation_is_applied_like_image_proc(name):
    """With a stereo calibration's R, the output is image_proc's image_rect: points X of the camera frame appear
    at P[:3, :3] @ (R X)."""
    angle = np.deg2rad(4.0)
    R = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    model = CameraModel.from_fields(W, H, camera(name).K, camera(name).D, name, P=camera(name, with_P=True).P, R=R)
    geometry = resolve_input(model, rectified=False)
    rect = geometry.intrinsics
    centres_rect, radii = scene_for(model, rect)
    centres = centres_rect @ R  # R^T: the camera-frame points seen at those rectified positions
    uv = project_raw(model, centres)
    keep = (uv[:, 0] > 10) & (uv[:, 0] < W - 11) & (uv[:, 1] > 10) & (uv[:, 1] < H - 11)
    centres, radii = centres[keep], radii[keep]
    raw = render_raw(model, centres, radii)
    found = dot_centres(geometry.prepare(raw))
    errors = nearest_errors(found, project_pinhole(rect.K, centres @ R.T))
    assert len(centres) >= 40 and errors.max() < TOLERANCE_PX[name], errors.max()
    assert nearest_errors(found, project_pinhole(rect.K, centres)).max() > 3.0  # R matters


@pytest.mark.parametrize("name", MODELS)
def test_depth_camera_info_matches_the_pixels_after_resizing(name):
    """The node's contract: the CameraInfo published with a (resized) depth image describes its pixels."""
    model = camera(name)
    geometry = resolve_input(model, rectified=False)
    centres, radii = scene_for(model, geometry.intrinsics, spacing_px=64.0, dot_radius_px=5.0)
    undistorted = geometry.prepare(render_raw(model, centres, radii, supersample=4))
    w, h = 320, 240
    small = cv2.resize(undistorted, (w, h), interpolation=cv2.INTER_AREA)
    info = geometry.camera_info_fields(w, h)
    assert (info["width"], info["height"], info["distortion_model"]) == (w, h, "plumb_bob")
    K = info["k"].reshape(3, 3)
    np.testing.assert_allclose(K, geometry.intrinsics.scaled(w, h).K)
    np.testing.assert_array_equal(info["p"].reshape(3, 4), np.c_[K, np.zeros(3)])
    np.testing.assert_array_equal(info["d"], np.zeros(5))
    np.testing.assert_array_equal(info["r"].reshape(3, 3), np.eye(3))
    errors = nearest_errors(dot_centres(small), project_pinhole(K, centres))
    assert errors.max() < TOLERANCE_PX[name], errors.max()
    # the raw camera's K, scaled the same way (what the node published before), does not describe them
    assert nearest_errors(dot_centres(small), project_pinhole(model.scaled(w, h).K, centres)).max() > 2.0
    assert geometry.undistorter.camera_info_fields(w, h)["k"].tolist() == info["k"].tolist()
    assert geometry.camera_info_fields()["width"] == W
    with pytest.raises(ValueError, match="both width and height"):
        geometry.camera_info_fields(w)


def test_matches_the_opencv_recipe_bit_for_bit():
    """What the training datasets did before this module (EuRoC / TUM): same new matrix, same pixels."""
    K = Intrinsics(458.654, 457.296, 367.215, 248.375, 752, 480)
    D = np.array([-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05])
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (480, 752, 3), dtype=np.uint8)
    depth = rng.integers(0, 5000, (480, 752), dtype=np.uint16)
    for alpha in (0.0, 0.6):
        K_new, _ = cv2.getOptimalNewCameraMatrix(K.K, D, (752, 480), alpha, (752, 480))
        reference = Intrinsics.from_matrix(K_new, 752, 480)
        maps = cv2.initUndistortRectifyMap(K.K, D, None, reference.K, (752, 480), cv2.CV_32FC1)
        und = Undistorter(CameraModel.from_intrinsics(K, D), alpha=alpha)
        assert und.intrinsics == reference
        assert np.array_equal(und.image(image), cv2.remap(image, *maps, cv2.INTER_LINEAR,
                                                          borderMode=cv2.BORDER_CONSTANT, borderValue=0))
        assert np.array_equal(und.labels(depth), cv2.remap(depth, *maps, cv2.INTER_NEAREST,
                                                           borderMode=cv2.BORDER_CONSTANT, borderValue=0))


def test_rectify_points_agrees_with_the_images():
    model = camera("equidistant")
    und = Undistorter(model)
    centres, _ = scene_for(model, und.intrinsics)
    np.testing.assert_allclose(und.rectify_points(project_raw(model, centres)),
                               project_pinhole(und.intrinsics.K, centres), atol=1e-3)


def test_labels_are_nearest_neighbour_for_any_dtype_and_fill():
    und = Undistorter(camera("plumb_bob"))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, (H, W)).astype(np.uint16)
    out = und.labels(ids)
    assert out.dtype == np.uint16 and set(np.unique(out)) <= set(range(7))
    assert not np.array_equal(out, ids)
    # dtypes OpenCV 4.x cannot remap take the numpy path with the same rounding
    assert np.array_equal(und.labels(ids.astype(np.int64)), out.astype(np.int64))
    assert np.array_equal(und.labels(ids > 3), out > 3)
    assert np.array_equal(und.labels(np.dstack([ids] * 5).astype(np.int32))[..., 4], out.astype(np.int32))
    depth = np.full((H, W), 2.0, np.float32)
    wide = Undistorter(camera("plumb_bob"), alpha=1.0)  # keeps every raw pixel: a border maps outside
    assert np.isnan(wide.labels(depth, fill=np.nan)).any() and set(np.unique(wide.labels(depth))) == {0.0, 2.0}
    with pytest.raises(ValueError, match="cannot be stored"):
        und.labels(ids, fill=np.nan)
    with pytest.raises(TypeError, match="use labels"):
        und.image(ids > 3)
    with pytest.raises(ValueError, match="does not match the calibrated 640x480"):
        und.image(np.zeros((240, 320, 3), np.uint8))


# ------------------------------------------------------------------------------------------ caching
def test_remap_tables_are_built_once_and_cached(monkeypatch):
    calls = []
    plain, fisheye = cv2.initUndistortRectifyMap, cv2.fisheye.initUndistortRectifyMap
    monkeypatch.setattr(cv2, "initUndistortRectifyMap", lambda *a, **k: calls.append("plain") or plain(*a, **k))
    monkeypatch.setattr(cv2.fisheye, "initUndistortRectifyMap",
                        lambda *a, **k: calls.append("fisheye") or fisheye(*a, **k))
    cm.clear_map_cache()
    image = np.zeros((H, W, 3), np.uint8)
    first = resolve_input(camera("plumb_bob"), rectified=False)
    for _ in range(3):
        first.prepare(image)
    again = resolve_input(camera("plumb_bob"), rectified=False)  # an equal CameraInfo, new objects
    again.prepare(image)
    assert calls == ["plain"] and cm.map_cache_info()["builds"] == 1 and cm.map_cache_info()["hits"] == 1
    assert again.undistorter.maps[0] is first.undistorter.maps[0]
    fish = resolve_input(camera("equidistant"), rectified=False)
    fish.prepare(image), fish.prepare(image)
    other_D = CameraModel.from_fields(W, H, camera("plumb_bob").K, [-0.2, 0.05, 0, 0, 0], "plumb_bob")
    resolve_input(other_D, rectified=False).prepare(image)
    assert calls == ["plain", "fisheye", "plain"] and cm.map_cache_info()["builds"] == 3
    # not pickled (DataLoader workers), rebuilt from the process cache after unpickling
    clone = pickle.loads(pickle.dumps(first.undistorter))
    assert first.undistorter.__getstate__()["_maps"] is None and clone._maps is None
    assert np.array_equal(clone.image(image), first.prepare(image)) and cm.map_cache_info()["builds"] == 3
    cm.clear_map_cache()
    assert cm.map_cache_info() == {"builds": 0, "hits": 0, "entries": 0}


def test_resolver_re_resolves_only_when_the_calibration_changes():
    resolver = CameraInputResolver(rectified=False)
    g1, changed1 = resolver.resolve(camera("plumb_bob"))
    g2, changed2 = resolver.resolve(camera("plumb_bob"))
    g3, changed3 = resolver.resolve(camera("plumb_bob", with_P=True))
    assert (changed1, changed2, changed3) == (True, False, True)
    assert g2 is g1 and g3.source == "undistorted (P)"
    assert camera("plumb_bob") == camera("plumb_bob") and hash(camera("plumb_bob")) == hash(camera("plumb_bob"))
    assert camera("plumb_bob") != camera("plumb_bob", frame_id="cam")


# ------------------------------------------------------------------------------------------- policy
@pytest.mark.parametrize("name", MODELS + ["unified"])
def test_rectified_input_uses_P_and_never_remaps(name):
    (fx, fy, cx, cy), D = CAMERAS.get(name, CAMERAS["plumb_bob"])
    P = np.c_[_K(301.0, 302.0, 315.0, 244.0), [-30.1, 0.0, 0.0]]  # a right stereo camera: Tx = -fx * B
    model = CameraModel.from_fields(W, H, _K(fx, fy, cx, cy), D, name, P=P.ravel())
    geometry = resolve_input(model, rectified=True)
    assert geometry.source == "P" and not geometry.remaps and geometry.rectified
    assert (geometry.intrinsics.fx, geometry.intrinsics.fy, geometry.intrinsics.cx, geometry.intrinsics.cy) == \
        (301.0, 302.0, 315.0, 244.0)
    image = np.zeros((H, W, 3), np.uint8)
    assert geometry.prepare(image) is image
    assert ("not used" in geometry.message) == (name == "unified")
    unset = CameraModel.from_fields(W, H, _K(fx, fy, cx, cy), D, name, P=np.zeros(12))
    fallback = resolve_input(unset, rectified=True)
    assert fallback.source == "K (P unset)" and "P is unset" in fallback.message and "D is ignored" in fallback.message
    assert fallback.intrinsics == Intrinsics(fx, fy, cx, cy, W, H)


@pytest.mark.parametrize("name, D", [("plumb_bob", [0.0] * 5), ("rational_polynomial", [0.0] * 8), ("", []),
                                     ("plumb_bob", []), ("", [0.0] * 5)])
def test_raw_input_without_distortion_is_used_as_is_with_K(name, D):
    K = _K(500.0, 501.0, 319.5, 239.5)
    P = np.c_[_K(480.0, 480.0, 322.0, 238.0), np.zeros(3)]  # P != K: K describes the raw pixels
    geometry = resolve_input(CameraModel.from_fields(W, H, K, D, name, P=P), rectified=False)
    assert geometry.source == "K" and geometry.undistorter is None
    assert geometry.intrinsics == Intrinsics(500.0, 501.0, 319.5, 239.5, W, H)
    image = np.zeros((H, W), np.uint16)
    assert geometry.prepare(image) is image and geometry.prepare_labels(image) is image
    with pytest.raises(ValueError, match="does not match the calibrated 640x480"):
        geometry.prepare(np.zeros((240, 320), np.uint16))


def test_equidistant_with_zero_coefficients_is_still_a_fisheye():
    model = CameraModel.from_fields(W, H, _K(240.0, 240.0, 319.5, 239.5), [0.0] * 4, "equidistant")
    geometry = resolve_input(model, rectified=False)
    assert geometry.remaps  # r = f * theta is not a pinhole image
    centres, radii = scene_for(model, geometry.intrinsics)
    undistorted = geometry.prepare(render_raw(model, centres, radii))
    errors = nearest_errors(dot_centres(undistorted), project_pinhole(geometry.intrinsics.K, centres))
    assert errors.max() < TOLERANCE_PX["equidistant"], errors.max()


@pytest.mark.parametrize("name, D", [("unified", [0.1, 0.0, 0.0, 0.0]), ("kannala_brandt", [0.01, 0.02, 0.0, 0.0]),
                                     ("fisheye", [0.01, 0.02, 0.0, 0.0]), ("radtan", [0.1, 0.0, 0.0, 0.0]),
                                     ("", [-0.2, 0.05, 0.0, 0.0, 0.0]), ("unified", [0.0] * 4)])
def test_unsupported_models_are_refused_with_the_supported_list(name, D):
    model = CameraModel.from_fields(W, H, _K(300.0, 300.0, 319.5, 239.5), D, name)
    assert not model.is_supported
    with pytest.raises(UnsupportedCameraModel) as error:
        resolve_input(model, rectified=False)
    assert isinstance(error.value, ValueError)
    message = str(error.value)
    assert all(m in message for m in ("plumb_bob", "rational_polynomial", "equidistant", "image_rect"))
    assert (repr(name) in message) if name else ("without a distortion model name" in message)
    with pytest.raises(UnsupportedCameraModel):
        Undistorter(model)


@pytest.mark.parametrize("fields, match", [
    (dict(K=[1.0] * 8), r"K must have 9 numbers"),
    (dict(K=np.zeros(9)), r"K focal lengths must be > 0.*uncalibrated"),
    (dict(K=[500, 0, 319.5, 0, np.nan, 239.5, 0, 0, 1]), r"K has NaN/Inf"),
    (dict(K=[500, 0, 319.5, 0, 500, 239.5, 0, 1, 1]), r"K bottom row must be \[0, 0, 1\]"),
    (dict(width=0, height=0), r"positive integers.*uncalibrated"),
    (dict(D=[0.1, np.inf, 0, 0, 0]), r"D has NaN/Inf"),
    (dict(D=[0.1, 0.0, 0.0]), r"plumb_bob distortion needs 4, 5 or 8 finite coefficients"),
    (dict(D=[0.1] * 6, distortion_model="rational_polynomial"), r"rational_polynomial distortion needs 4, 5 or 8"),
    (dict(D=[0.1] * 5, distortion_model="equidistant"), r"equidistant \(fisheye\) distortion needs exactly 4"),
    (dict(P=[1.0] * 11), r"P must have 12 numbers"),
    (dict(P=[-300, 0, 320, 0, 0, 300, 240, 0, 0, 0, 1, 0]), r"P focal lengths must be > 0"),
    (dict(R=[1, 0, 0, 0, 2, 0, 0, 0, 1]), r"R must be a rotation matrix"),
])
def test_bad_calibrations_are_refused_clearly(fields, match):
    base = dict(width=W, height=H, K=_K(500.0, 500.0, 319.5, 239.5), D=[0.1, 0.0, 0.0, 0.0, 0.0],
                distortion_model="plumb_bob")
    with pytest.raises(ValueError, match=match):
        CameraModel.from_fields(**{**base, **fields})


def test_unset_R_and_P_and_model_name_normalisation():
    model = CameraModel.from_fields(W, H, np.ravel(_K(500.0, 500.0, 319.5, 239.5)), [0.1, 0, 0, 0, 0], " Plumb_Bob",
                                    P=np.zeros((3, 4)), R=np.zeros(9))
    assert model.distortion_model == "plumb_bob" and model.P is None and np.array_equal(model.R, np.eye(3))
    with pytest.raises(ValueError):
        model.K[0, 0] = 1.0  # read-only: a cache key cannot change under the cache
    with pytest.raises(ValueError, match="P is unset"):
        model.intrinsics_P()


def test_from_camera_info_fields_reads_a_decoded_message():
    class Fields:  # shaped like depth_sfm_ros.msgs.camera_info.CameraInfoFields
        width, height = W, H
        K = _K(380.0, 378.5, 322.4, 236.1)
        D = np.array(CAMERAS["plumb_bob"][1])
        R = np.eye(3)
        P = np.zeros((3, 4))
        distortion_model = "plumb_bob"
        frame_id = "camera_optical"
    model = CameraModel.from_camera_info_fields(Fields())
    assert model == camera("plumb_bob", frame_id="camera_optical")


def test_scaled_model_follows_the_image():
    model = camera("rational_polynomial", with_P=True)
    half = model.scaled(W // 2, H // 2)
    assert half.intrinsics_K() == model.intrinsics_K().scaled(W // 2, H // 2)
    assert half.intrinsics_P() == model.intrinsics_P().scaled(W // 2, H // 2)
    np.testing.assert_array_equal(half.D, model.D)
    # undistorting the half-size raw image with the scaled model gives the dots at the scaled P's projection
    centres, radii = scene_for(half.scaled(W, H), model.intrinsics_P(), spacing_px=64.0, dot_radius_px=5.0)
    raw_small = cv2.resize(render_raw(model, centres, radii, supersample=4), (W // 2, H // 2),
                           interpolation=cv2.INTER_AREA)
    geometry = resolve_input(half, rectified=False)
    errors = nearest_errors(dot_centres(geometry.prepare(raw_small)), project_pinhole(half.P[:, :3], centres))
    assert errors.max() < 0.15, errors.max()


def test_rectified_camera_info_fields():
    fields = rectified_camera_info_fields(Intrinsics(200.0, 210.0, 79.5, 59.5, 160, 120))
    assert fields["k"].tolist() == [200.0, 0.0, 79.5, 0.0, 210.0, 59.5, 0.0, 0.0, 1.0]
    assert fields["p"].tolist() == [200.0, 0.0, 79.5, 0.0, 0.0, 210.0, 59.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    with pytest.raises(TypeError, match="Intrinsics"):
        rectified_camera_info_fields(np.eye(3))


@pytest.mark.parametrize("topic, setting, expected", [
    ("/camera/image_rect", "auto", True), ("/camera/color/image_rect_color", "auto", True),
    ("/camera/depth/image_rect_raw", "auto", True), ("image_rect/compressed", "auto", True),
    ("/camera/image_raw", "auto", False), ("/camera/image_raw/compressed", "auto", False),
    ("/image_rect_ws/image_raw", "auto", False), ("/camera/image", "rectified", True),
    ("/camera/image_rect", "raw", False),
])
def test_topic_is_rectified(topic, setting, expected):
    assert topic_is_rectified(topic, setting) is expected


def test_topic_setting_is_validated():
    with pytest.raises(ValueError, match="auto, rectified or raw"):
        topic_is_rectified("/camera/image_raw", "undistorted")


def test_docstring_examples():
    result = doctest.testmod(cm)
    assert result.attempted > 0 and result.failed == 0
