"""One construct per AWS building block.

Constructors take keyword-only, typed arguments and never read CDK context: `app.py`
validates configuration once and the stacks pass plain values down.
"""
