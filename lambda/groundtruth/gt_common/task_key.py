"""The task-token signing key: read from Secrets Manager, derived once, cached for a few minutes.

The cache keeps Secrets Manager off the per-click path (the authorizer runs on every uncached
click); its short lifetime means a rotated secret is picked up within `CACHE_SECONDS` without a
redeploy. The secret string itself is never logged or returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from fewclick_contract.task_token import derive_key

CACHE_SECONDS = 300.0


def default_secrets_client() -> Any:
    import boto3

    return boto3.client("secretsmanager")


class TaskKeyProvider:
    def __init__(
        self,
        secret_id: str,
        client_factory: Callable[[], Any] = default_secrets_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not secret_id:
            raise ValueError("TASK_TOKEN_SECRET_ARN is not set")
        self.secret_id = secret_id
        self._factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._key: bytes | None = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def key(self) -> bytes:
        with self._lock:
            if self._key is None or self._clock() - self._fetched > CACHE_SECONDS:
                if self._client is None:
                    self._client = self._factory()
                secret = self._client.get_secret_value(SecretId=self.secret_id)["SecretString"]
                self._key = derive_key(secret)
                self._fetched = self._clock()
            return self._key


class StaticKeyProvider:
    """A fixed key (tests, `fewclick serve`): same interface as `TaskKeyProvider`."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def key(self) -> bytes:
        return self._key
