"""Helpers for the ROS tests: scripts run as separate processes (player, recorder) and the
process management the tests share (common)."""
