"""Fusion methods: a registry plus one module per method (classical baselines, seed methods)."""

from .registry import MethodInfo, available, create, info, register

__all__ = ["MethodInfo", "available", "create", "info", "register"]
