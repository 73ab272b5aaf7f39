"""/v1/zones/{zone_id}/grants (CONTRACT.md)."""

from __future__ import annotations

from litestar import Controller
from litestar.di import Provide

from caracal_api.resources import provide_resources


class GrantController(Controller):
    path = "/v1/zones/{zone_id:str}/grants"
    tags = ["grants"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}
