"""FewClick model library: click encoding, network, click simulator, training, evaluation, predictor.

Each concern is its own module with, where it makes sense, a CLI entry
(`fewclick train`, `fewclick evaluate`). The crop geometry is shared with the
proxy through `fewclick_contract.crop`.
"""

DEFAULT_INPUT_SIZE = 256
