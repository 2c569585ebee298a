"""Fusion methods: a registry plus one module per method (classical baselines, deep methods), each
fuser a :class:`~ivfuse.methods.base.Fuser`."""

from .base import Fuser, SideMap
from .registry import MethodInfo, available, create, info, register

__all__ = ["Fuser", "MethodInfo", "SideMap", "available", "create", "info", "register"]
