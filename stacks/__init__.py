"""FewClick infrastructure: one stack per deployable unit (model, api, monitoring).

`app.py` validates the configuration (`stacks.config`) and wires the stacks; the building
blocks live in `stacks.constructs`, one module per AWS building block.
"""
