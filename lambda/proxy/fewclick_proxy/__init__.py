"""The FewClick proxy Lambda: click JSON in, model tensors to SageMaker, mask JSON out.

Layers (each testable alone):
- `handler`: thin AWS glue (Powertools REST resolver, logging, tracing, metrics),
- `segment`: the pure logic (validation, crop geometry, wire request, mask back),
- `masks`: mask encodings (COCO RLE, polygons, PNG),
- `session_token`: the opaque `sessionId` the UI carries between clicks,
- `image_source` and `endpoint_client`: data access (S3/base64 images, SageMaker Runtime),
- `config`: settings from the environment.
"""
