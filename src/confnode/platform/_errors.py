"""Errors raised by SGX platform detection."""

from __future__ import annotations

from confnode.errors import InfrastructureError, InvalidInput


class HostDataError(InvalidInput):
    """A host file (cpuinfo, auxv, sysfs, kernel config) or a CPUID answer does not parse."""


class CpuidUnavailable(InfrastructureError):
    """No CPUID source could be opened (no x86-64 CPU, no ``cpuid`` driver, no permission)."""

    hint = "load the cpuid module (modprobe cpuid) and run as root, or rely on /proc/cpuinfo"
