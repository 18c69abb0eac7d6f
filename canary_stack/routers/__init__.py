"""The traffic routers, one module each, all of one shape (base.py); the stack picks one by name.

Adding a router is a module with a CanaryRouter subclass and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping

from canary_stack.routers.alb import AlbRouter
from canary_stack.routers.appmesh import AppMeshRouter
from canary_stack.routers.base import CanaryRouter
from canary_stack.routers.lattice import LatticeRouter

ROUTERS: Mapping[str, type[CanaryRouter]] = {
    router.name: router for router in (AlbRouter, AppMeshRouter, LatticeRouter)
}
