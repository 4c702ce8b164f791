"""Cognito user-pool sign-in with SRP (USER_SRP_AUTH), for the benchmark's ``--username/--password``.

The stack's UI client allows SRP only (the password never leaves the machine, not even to Cognito), so
`InitiateAuth` with USER_PASSWORD_AUTH is refused; this is the client side of Cognito's SRP-6a variant:
3072-bit group of RFC 5054 (RFC 3526's MODP prime, g = 2), SHA-256, x derived from the pool's name, the
username and the password, and an HKDF ("Caldera Derived Key") of the shared secret that signs the
challenge's secret block and timestamp. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime
from typing import Any

# RFC 3526 3072-bit MODP prime: 2^3072 - 2^3008 - 1 + 2^64 * (floor(2^2942 pi) + 1690314). A test
# recomputes it from pi, so a mistyped digit cannot hide here.
N_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
N = int(N_HEX, 16)
G = 2
INFO = b"Caldera Derived Key"


class CognitoAuthError(Exception):
    pass


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pad_hex(value: int | str) -> str:
    """Cognito's padding: an even number of hex digits, and a leading 00 when the top bit is set
    (the number is read back as a positive two's-complement integer)."""
    text = value if isinstance(value, str) else f"{value:x}"
    if len(text) % 2:
        return "0" + text
    if text[0] in "89abcdefABCDEF":
        return "00" + text
    return text


def _hex_hash(hex_text: str) -> str:
    return _sha256_hex(bytes.fromhex(hex_text))


K = int(_hex_hash("00" + N_HEX + "0" + f"{G:x}"), 16)


def compute_u(big_a: int, big_b: int) -> int:
    return int(_hex_hash(pad_hex(big_a) + pad_hex(big_b)), 16)


def compute_x(pool_name: str, user_id: str, password: str, salt_hex: str) -> int:
    inner = _sha256_hex(f"{pool_name}{user_id}:{password}".encode())
    return int(_hex_hash(pad_hex(salt_hex) + inner), 16)


def hkdf_16(ikm: bytes, salt: bytes) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, INFO + b"\x01", hashlib.sha256).digest()[:16]


def cognito_timestamp(now: datetime | None = None) -> str:
    """'Tue Jul 1 09:05:03 UTC 2026': Cognito wants the day of the month without a leading zero."""
    now = now or datetime.now(UTC)
    return f"{now:%a} {now:%b} {now.day} {now:%H:%M:%S} UTC {now:%Y}"


class SrpClient:
    def __init__(self, pool_id: str, username: str, password: str, small_a: int | None = None) -> None:
        if "_" not in pool_id:
            raise CognitoAuthError(f"not a user pool id: {pool_id!r}")
        self.pool_name = pool_id.split("_", 1)[1]
        self.username = username
        self.password = password
        self.small_a = small_a if small_a is not None else int.from_bytes(os.urandom(128), "big") % N
        self.big_a = pow(G, self.small_a, N)
        if self.big_a % N == 0:  # pragma: no cover - probability 2^-3072
            raise CognitoAuthError("SRP safety check failed; retry")

    def auth_parameters(self) -> dict[str, str]:
        return {"USERNAME": self.username, "SRP_A": f"{self.big_a:x}"}

    def password_key(self, user_id: str, big_b: int, salt_hex: str) -> bytes:
        if big_b % N == 0:
            raise CognitoAuthError("the server's SRP_B is invalid")
        u = compute_u(self.big_a, big_b)
        if u == 0:
            raise CognitoAuthError("SRP u is zero; retry")
        x = compute_x(self.pool_name, user_id, self.password, salt_hex)
        s = pow(big_b - K * pow(G, x, N), self.small_a + u * x, N)
        return hkdf_16(bytes.fromhex(pad_hex(s)), bytes.fromhex(pad_hex(u)))

    def challenge_responses(self, parameters: dict[str, str], now: datetime | None = None) -> dict[str, str]:
        user_id = parameters["USER_ID_FOR_SRP"]
        key = self.password_key(user_id, int(parameters["SRP_B"], 16), parameters["SALT"])
        timestamp = cognito_timestamp(now)
        secret_block = parameters["SECRET_BLOCK"]
        message = (
            self.pool_name.encode() + user_id.encode() + base64.standard_b64decode(secret_block) + timestamp.encode()
        )
        signature = base64.standard_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
        return {
            "TIMESTAMP": timestamp,
            "USERNAME": user_id,
            "PASSWORD_CLAIM_SECRET_BLOCK": secret_block,
            "PASSWORD_CLAIM_SIGNATURE": signature,
        }


def id_token(idp: Any, pool_id: str, client_id: str, username: str, password: str) -> str:
    """Sign in through ``idp`` (a boto3 cognito-idp client); returns the ID token (what the API's
    Cognito authorizer checks in the Authorization header)."""
    srp = SrpClient(pool_id, username, password)
    try:
        started = idp.initiate_auth(AuthFlow="USER_SRP_AUTH", ClientId=client_id, AuthParameters=srp.auth_parameters())
        if started.get("ChallengeName") != "PASSWORD_VERIFIER":
            raise CognitoAuthError(f"unexpected challenge {started.get('ChallengeName')!r}")
        respond: dict[str, Any] = {
            "ClientId": client_id,
            "ChallengeName": "PASSWORD_VERIFIER",
            "ChallengeResponses": srp.challenge_responses(started["ChallengeParameters"]),
        }
        if started.get("Session"):
            respond["Session"] = started["Session"]
        answer = idp.respond_to_auth_challenge(**respond)
    except CognitoAuthError:
        raise
    except Exception as exc:  # botocore ClientError: wrong password, unknown user, ...
        raise CognitoAuthError(f"Cognito sign-in failed: {exc}") from exc
    result = answer.get("AuthenticationResult")
    if not result:
        challenge = answer.get("ChallengeName")
        hint = " (set a permanent password first: aws cognito-idp admin-set-user-password --permanent)"
        raise CognitoAuthError(
            f"Cognito asks for {challenge!r}" + (hint if challenge == "NEW_PASSWORD_REQUIRED" else "")
        )
    return str(result["IdToken"])
