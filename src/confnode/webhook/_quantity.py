"""Kubernetes resource quantities and the EPC vendor resource names.

EPC is requested under three names in the wild, with two units: Azure's and Alibaba's names count
MiB (``"10"``), Intel's counts bytes as a memory quantity (``"10Mi"``). The webhook converts between
them exactly, rounding bytes *up* to whole MiB so a pod never gets less EPC than it asked for.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation, localcontext

from confnode.webhook._errors import InvalidQuantity

MIB = 1 << 20

#: EPC resource name → bytes per unit.
EPC_RESOURCES: dict[str, int] = {
    "kubernetes.azure.com/sgx_epc_mem_in_MiB": MIB,
    "alibabacloud.com/sgx_epc_MiB": MIB,
    "sgx.intel.com/epc": 1,
}

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")
_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")
#: Enough digits for any accepted quantity (64 characters, exponent <= 30, times 2**60 and a MiB)
#: to be exact: the default 28 would round a long quantity, possibly down.
_PRECISION = 160


def parse_quantity(value: object) -> Decimal:
    """Parse a Kubernetes quantity (``"10Mi"``, ``"1.5G"``, ``"1e3"``, ``10``) into a Decimal."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidQuantity(f"quantity must be a string or integer, found {value!r}")
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None or len(text) > 64:
        raise InvalidQuantity(f"{text!r} is not a Kubernetes quantity (expected e.g. 10, 10Mi, 1G)")
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise InvalidQuantity(f"{text!r} is not a Kubernetes quantity") from exc
    with localcontext(prec=_PRECISION):
        if suffix in _BINARY:
            return base * _BINARY[suffix]
        if suffix in _DECIMAL:
            return base * _DECIMAL[suffix]
        exponent = _EXPONENT.match(suffix)
        if exponent is not None:
            if abs(int(exponent.group(1))) > 30:
                raise InvalidQuantity(f"{text!r}: exponent beyond ±30 (no EPC is that size)")
            return base.scaleb(int(exponent.group(1)))
    raise InvalidQuantity(
        f"{text!r} has an unknown suffix {suffix!r} (expected Ki, Mi, Gi, k, M, G…)"
    )


def epc_bytes(resource: str, value: object) -> int:
    """EPC in bytes requested as ``value`` under ``resource``, rounded up to a whole byte."""
    with localcontext(prec=_PRECISION):
        amount = parse_quantity(value) * EPC_RESOURCES[resource]
    if amount < 0:
        raise InvalidQuantity(f"{resource}: negative EPC {value!r}")
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def format_epc(resource: str, nbytes: int) -> str:
    """Express ``nbytes`` of EPC in ``resource``'s unit (MiB counts round up)."""
    unit = EPC_RESOURCES[resource]
    if unit == 1:
        return f"{nbytes // MIB}Mi" if nbytes % MIB == 0 else str(nbytes)
    return str(-(-nbytes // unit))
