"""The assay server: REST API (``/v1``, OpenAPI at ``/openapi.json``, docs at ``/docs``) and
web UI over one :class:`assay.registry.Registry`. Needs the ``server`` extra."""

from ._app import create_app
from ._batcher import ScoreBatcher

__all__ = ["ScoreBatcher", "create_app"]
