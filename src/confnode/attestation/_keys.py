"""Releasable keys: a directory (or mounted Kubernetes Secret) of keys and release policies.

For a key named ``NAME`` the directory holds:

* ``NAME.jwk``  the key as a JWK (any ``kty``; an AES key is ``{"kty": "oct", "k": ...}``), or
  ``NAME.key``  raw key bytes (released as an ``oct`` JWK);
* ``NAME.policy.json``  its Key Vault release policy. Without one, :func:`default_release_policy`
  applies: tokens from this service for non-debug, non-simulated SGX enclaves only
  (:func:`td_release_policy` is the TD counterpart ``new-key --mrtd`` starts from).

Files are read on every release, so a rotated Secret takes effect without a restart.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confnode.attestation._tdx import TDX_TOKEN_TYPE
from confnode.errors import InfrastructureError, InvalidInput
from confnode.policy import PolicyParseError, ReleasePolicy, parse_release_policy

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,126}")
MAX_KEY_FILE = 64 * 1024


class KeyNotFound(InvalidInput):
    """No key of that name in the key directory."""


@dataclass(frozen=True, slots=True)
class ReleasableKey:
    name: str
    jwk: dict[str, Any]
    policy: ReleasePolicy


def default_release_policy(authority: str) -> dict[str, Any]:
    """The release policy of a key that has none: this service, no debug, no simulation."""
    return {
        "version": "1.0.0",
        "anyOf": [
            {
                "authority": authority,
                "allOf": [
                    {"claim": "x-ms-sgx-is-debuggable", "equals": False},
                    {"claim": "x-confnode-simulated", "equals": False},
                ],
            }
        ],
    }


def td_release_policy(authority: str) -> dict[str, Any]:
    """A release policy for TDs: tokens from this service for non-debug, non-simulated TDs
    (``tdx_*`` claims exist only in TdxVm tokens, so SGX enclaves never satisfy it)."""
    return {
        "version": "1.0.0",
        "anyOf": [
            {
                "authority": authority,
                "allOf": [
                    {"claim": "x-ms-attestation-type", "equals": TDX_TOKEN_TYPE},
                    {"claim": "tdx_td_attributes_debug", "equals": False},
                    {"claim": "x-confnode-simulated", "equals": False},
                ],
            }
        ],
    }


def check_key_name(name: str) -> None:
    """Key names are file-name stems: letters, digits, '-' and '_' (no dots, no paths)."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"key name {name!r} is invalid (letters, digits, '-', '_')")


class KeyStore:
    def __init__(self, path: Path | None, authority: str) -> None:
        self.path = path
        self.authority = authority

    def get(self, name: str) -> ReleasableKey:
        check_key_name(name)
        if self.path is None:
            raise KeyNotFound(f"key {name!r} not found: no key directory is configured")
        jwk_file, raw_file = self.path / f"{name}.jwk", self.path / f"{name}.key"
        if jwk_file.is_file():
            try:
                jwk = json.loads(_read(jwk_file))
            except ValueError as error:
                raise InfrastructureError(f"key file {jwk_file} is not JSON: {error}") from error
            if not isinstance(jwk, dict) or "kty" not in jwk:
                raise InfrastructureError(f"key file {jwk_file} is not a JWK (no 'kty')")
        elif raw_file.is_file():
            raw = _read(raw_file)
            jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}
        else:
            raise KeyNotFound(f"key {name!r} not found")
        policy_file = self.path / f"{name}.policy.json"
        if not policy_file.is_file():
            policy = parse_release_policy(default_release_policy(self.authority))
            return ReleasableKey(name, jwk, policy)
        try:
            policy = parse_release_policy(_read(policy_file))
        except PolicyParseError as error:  # the operator's file, not the caller's request
            raise InfrastructureError(f"release policy {policy_file}: {error}") from error
        return ReleasableKey(name, jwk, policy)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except OSError as error:
        raise InfrastructureError(f"cannot read {path}: {error}") from error
    if len(data) > MAX_KEY_FILE:
        raise InfrastructureError(f"{path} is larger than {MAX_KEY_FILE} bytes")
    return data
