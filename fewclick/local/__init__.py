"""The local stack: `fewclick serve` runs gateway, proxy, runtime stand-in and model server on one machine."""
