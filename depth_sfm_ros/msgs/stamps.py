"""``builtin_interfaces/Time`` <-> integer nanoseconds / float seconds (rclpy and ``rosbags`` stamps alike).

Stamps are integer nanoseconds wherever they are compared or stored: float seconds cannot hold
nanoseconds at epoch-sized values.

>>> sec, nanosec = nanoseconds_to_sec_nanosec(1_700_000_000_123_456_789)
>>> (sec, nanosec)
(1700000000, 123456789)
"""
from __future__ import annotations

from typing import Any


def stamp_to_nanoseconds(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` -> float seconds (sub-microsecond precision is lost; copy the
    stamp object itself into output headers)."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def nanoseconds_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    """Integer nanoseconds (>= 0) -> (sec, nanosec) of a ``builtin_interfaces/Time``."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"ROS time stamps must be >= 0 ns, got {stamp_ns}")
    return stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000
