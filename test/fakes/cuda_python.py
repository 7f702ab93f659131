"""Fake cuda-python driver API: NOT cuda-python, shaped like its ``driver`` module for ``detect_device``.

cuda-python 13 has only ``from cuda.bindings import driver``; 12.x has that and the older ``from cuda import
cuda``; 11.x only the older one. Every call returns a tuple ``(CUresult, value...)``; on an error the value is
None (like the real bindings, which do not raise). :func:`install` puts one layout into ``sys.modules``.
"""
from __future__ import annotations

import enum
import sys
import types
from dataclasses import dataclass, field


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_NOT_INITIALIZED = 3
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_INVALID_DEVICE = 101


class CUdevice_attribute(enum.IntEnum):
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


@dataclass
class FakeDriver:
    """State of the fake driver: its GPUs [(name, major, minor)] and errors to inject per call name."""

    devices: list[tuple[str, int, int]] = field(default_factory=lambda: [("Orin (nvgpu)", 8, 7)])
    errors: dict[str, CUresult] = field(default_factory=dict)
    initialized: bool = False

    def module(self) -> types.ModuleType:
        driver = types.ModuleType("cuda.bindings.driver")
        driver.CUresult = CUresult
        driver.CUdevice_attribute = CUdevice_attribute
        ok = CUresult.CUDA_SUCCESS

        def fail(call: str) -> CUresult | None:
            if call in self.errors:
                return self.errors[call]
            if call != "cuInit" and not self.initialized:
                return CUresult.CUDA_ERROR_NOT_INITIALIZED
            return None

        def cuInit(flags: int):
            err = self.errors.get("cuInit") or (CUresult.CUDA_ERROR_NO_DEVICE if not self.devices else None)
            if err:
                return (err,)
            self.initialized = True
            return (ok,)

        def cuDeviceGetCount():
            err = fail("cuDeviceGetCount")
            return (err, None) if err else (ok, len(self.devices))

        def cuDeviceGet(index: int):
            err = fail("cuDeviceGet") or (CUresult.CUDA_ERROR_INVALID_DEVICE if index >= len(self.devices) else None)
            return (err, None) if err else (ok, index)

        def cuDeviceGetName(length: int, device: int):
            err = fail("cuDeviceGetName")
            if err:
                return (err, None)
            return (ok, self.devices[device][0].encode().ljust(length, b"\0")[:length])

        def cuDeviceGetAttribute(attribute: CUdevice_attribute, device: int):
            err = fail("cuDeviceGetAttribute")
            if err:
                return (err, None)
            _, major, minor = self.devices[device]
            return (ok, major if attribute == CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
                    else minor)

        def cuGetErrorName(error: CUresult):
            return (ok, CUresult(error).name.encode())

        for function in (cuInit, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute,
                         cuGetErrorName):
            setattr(driver, function.__name__, function)
        return driver


def install(monkeypatch, layout: str, driver: FakeDriver | None = None) -> FakeDriver:
    """Put a fake cuda-python into ``sys.modules``: layout "13" (cuda.bindings.driver only), "12" (both) or
    "11" (cuda.cuda only). Returns the driver state (to inspect or inject errors)."""
    driver = driver or FakeDriver()
    module = driver.module()
    package = types.ModuleType("cuda")
    package.__path__ = []  # a package, so "from cuda.bindings import driver" is looked up in sys.modules
    for name in ("cuda", "cuda.bindings", "cuda.bindings.driver", "cuda.cuda"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "cuda", package)
    if layout in ("12", "13"):
        bindings = types.ModuleType("cuda.bindings")
        bindings.__path__ = []
        bindings.driver = module
        package.bindings = bindings
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.driver", module)
    if layout in ("11", "12"):
        package.cuda = module
        monkeypatch.setitem(sys.modules, "cuda.cuda", module)
    return driver
