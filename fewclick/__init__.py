"""FewClick: few-click segmentation labeling (CLI, local stack and tools)."""

__version__ = "0.1.0"
