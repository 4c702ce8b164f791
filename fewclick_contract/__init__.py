"""Contracts shared by every side of FewClick.

- `api`: the UI-facing click JSON (pydantic, published as OpenAPI).
- `wire`: the proxy <-> model endpoint tensor format (versioned).
- `crop`: the crop geometry both the proxy (to build tensors) and the model
  library (to train) must agree on.

Only numpy, opencv and pydantic are needed here: the Lambda imports it without torch.
"""
