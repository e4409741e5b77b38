"""deepdream's ComfyUI nodes: copy this folder into ComfyUI's ``custom_nodes/`` and install
the deepdream wheel into ComfyUI's Python (see the README's *ComfyUI* section)."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
