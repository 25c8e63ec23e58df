"""How the node agent reaches the API server: a kubeconfig file, or the in-cluster defaults.

:func:`parse_kubeconfig` is pure (text in, :class:`ApiServerConfig` out; relative paths are
resolved against the kubeconfig's directory, as client-go does, but never opened). It honours the
fields a node component's kubeconfig uses and refuses, by name, every field that would change how
the agent authenticates or connects if it were silently ignored:

- ``current-context`` (required) → its ``cluster`` and ``user``;
- cluster: ``server`` (https only), ``certificate-authority-data`` / ``certificate-authority``
  (the data wins, as in client-go), ``tls-server-name``;
- user: ``client-certificate(-data)`` + ``client-key(-data)``, ``token`` / ``tokenFile`` (the
  token wins; the file is re-read on every request, since projected tokens rotate), and
  impersonation: ``as``, ``as-uid``, ``as-groups``, ``as-user-extra``;
- refused: ``insecure-skip-tls-verify: true``, ``proxy-url``, ``exec``, ``auth-provider``,
  ``username``/``password``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from confnode.errors import InvalidInput

__all__ = ["ApiServerConfig", "parse_kubeconfig"]


@dataclass(frozen=True, slots=True)
class ApiServerConfig:
    """Where the API server is, how to trust it and who the agent is to it."""

    server: str
    ca_pem: bytes | None = None
    ca_file: Path | None = None
    tls_server_name: str | None = None
    client_cert_pem: bytes | None = None
    client_cert_file: Path | None = None
    client_key_pem: bytes | None = None
    client_key_file: Path | None = None
    token: str | None = None
    token_file: Path | None = None
    impersonate_user: str | None = None
    impersonate_uid: str | None = None
    impersonate_groups: tuple[str, ...] = ()
    impersonate_extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def has_client_certificate(self) -> bool:
        return self.client_cert_pem is not None or self.client_cert_file is not None


#: Fields that change authentication or routing; ignoring them would talk to the server as
#: someone else, or another way, than the kubeconfig says.
_REFUSED_CLUSTER = ("proxy-url",)
_REFUSED_USER = ("exec", "auth-provider", "username", "password")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"kubeconfig {where}: found {type(value).__name__}, expected a mapping")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        # The type only: the value may be a credential.
        found = "an empty string" if value == "" else type(value).__name__
        raise InvalidInput(f"kubeconfig {where}: found {found}, expected a non-empty string")
    return value


def _optional_string(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    return None if value is None else _string(value, f"{where}.{key}")


def _named(document: Mapping[str, Any], section: str, name: str) -> Mapping[str, Any]:
    """``clusters``/``users``/``contexts`` entry ``name``'s body (``cluster``/``user``/...)."""
    entries = document.get(section) or []
    if not isinstance(entries, list):
        raise InvalidInput(f"kubeconfig {section}: found {type(entries).__name__}, expected a list")
    body = section[:-1]
    for index, entry in enumerate(entries):
        entry = _mapping(entry, f"{section}[{index}]")
        if entry.get("name") == name:
            return _mapping(entry.get(body) or {}, f"{section}[{name}].{body}")
    raise InvalidInput(f"kubeconfig {section}: no entry named {name!r}")


def _pem_data(entry: Mapping[str, Any], key: str, where: str) -> bytes | None:
    value = _optional_string(entry, key, where)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput(f"kubeconfig {where}.{key}: not base64 ({error})") from error


def _path(entry: Mapping[str, Any], key: str, where: str, base_dir: Path) -> Path | None:
    value = _optional_string(entry, key, where)
    return None if value is None else base_dir / value


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput(f"kubeconfig {where}: found {type(value).__name__}, expected a list")
    return tuple(_string(item, f"{where}[{i}]") for i, item in enumerate(value))


def _cluster(cluster: Mapping[str, Any], where: str, base_dir: Path) -> dict[str, Any]:
    for key in _REFUSED_CLUSTER:
        if cluster.get(key):
            raise InvalidInput(f"kubeconfig {where}.{key} is not supported by the node agent")
    if cluster.get("insecure-skip-tls-verify") is True:
        raise InvalidInput(
            f"kubeconfig {where} sets insecure-skip-tls-verify: the node agent always verifies "
            "the API server",
            hint="set certificate-authority or certificate-authority-data instead",
        )
    server = _string(cluster.get("server"), f"{where}.server").rstrip("/")
    if not server.startswith("https://"):
        raise InvalidInput(
            f"kubeconfig {where}.server is {server!r:.80}; expected an https:// URL "
            "(the agent sends credentials)"
        )
    ca_pem = _pem_data(cluster, "certificate-authority-data", where)
    return {
        "server": server,
        "ca_pem": ca_pem,
        "ca_file": None
        if ca_pem is not None
        else _path(cluster, "certificate-authority", where, base_dir),
        "tls_server_name": _optional_string(cluster, "tls-server-name", where),
    }


def _user(user: Mapping[str, Any], where: str, base_dir: Path) -> dict[str, Any]:
    for key in _REFUSED_USER:
        if user.get(key):
            raise InvalidInput(
                f"kubeconfig {where}.{key} is not supported by the node agent",
                hint="use a client certificate, a token/tokenFile or impersonation (as:)",
            )
    cert_pem = _pem_data(user, "client-certificate-data", where)
    key_pem = _pem_data(user, "client-key-data", where)
    cert_file = None if cert_pem is not None else _path(user, "client-certificate", where, base_dir)
    key_file = None if key_pem is not None else _path(user, "client-key", where, base_dir)
    if (cert_pem is None and cert_file is None) != (key_pem is None and key_file is None):
        raise InvalidInput(
            f"kubeconfig {where}: a client certificate needs its key (found only one of them)"
        )
    token = _optional_string(user, "token", where)
    groups = _string_list(user.get("as-groups"), f"{where}.as-groups")
    if groups and not user.get("as"):
        raise InvalidInput(f"kubeconfig {where}: as-groups without as (impersonating nobody)")
    extra = _mapping(user.get("as-user-extra") or {}, f"{where}.as-user-extra")
    return {
        "client_cert_pem": cert_pem,
        "client_cert_file": cert_file,
        "client_key_pem": key_pem,
        "client_key_file": key_file,
        "token": token,
        "token_file": None if token is not None else _path(user, "tokenFile", where, base_dir),
        "impersonate_user": _optional_string(user, "as", where),
        "impersonate_uid": _optional_string(user, "as-uid", where),
        "impersonate_groups": groups,
        "impersonate_extra": tuple(
            (_string(key, f"{where}.as-user-extra key"), _string_list(values, f"{where}.{key}"))
            for key, values in sorted(extra.items(), key=lambda item: str(item[0]))
        ),
    }


def parse_kubeconfig(text: str, *, base_dir: Path) -> ApiServerConfig:
    """The current context's cluster and user, checked; ``base_dir``: the file's directory."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidInput(f"kubeconfig is not YAML: {error}".splitlines()[0]) from error
    document = _mapping(document, "document")
    context_name = _string(document.get("current-context"), "current-context")
    context = _named(document, "contexts", context_name)
    cluster_name = _string(context.get("cluster"), f"contexts[{context_name}].context.cluster")
    cluster = _named(document, "clusters", cluster_name)
    user_name = context.get("user")
    user = _named(document, "users", _string(user_name, "context user")) if user_name else {}
    return ApiServerConfig(
        **_cluster(cluster, f"clusters[{cluster_name}]", base_dir),
        **_user(user, f"users[{user_name}]", base_dir),
    )
