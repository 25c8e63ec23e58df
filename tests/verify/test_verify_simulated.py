"""The simulated platform's quotes verify through the same checklist, flagged as not Intel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from confnode.collateral import TcbStatus
from confnode.verify import UntrustedRoot, verify_quote

sim = pytest.importorskip("confnode.sim")
AT = datetime(2026, 1, 15, 12, tzinfo=UTC)


@pytest.mark.parametrize("tcb", ["UpToDate", "SWHardeningNeeded", "OutOfDate"])
def test_simulated_quote_verifies_with_its_root(tcb: str) -> None:
    platform = sim.SimPlatform(seed="tests/verify", tcb=tcb)
    enclave = platform.enclave(debug=True)
    report = enclave.report(platform.quoting_enclave.target_info(), b"nonce".ljust(64, b"\0"))
    quote = platform.quote(report)
    collateral = platform.collateral(AT)
    result = verify_quote(quote, collateral, at=AT, trusted_root=platform.root_certificate())
    assert result.status is TcbStatus(tcb)
    assert result.trusted_root_is_intel is False
    assert result.enclave.debug is True
    assert result.report_data.startswith(b"nonce")
    with pytest.raises(UntrustedRoot):
        verify_quote(quote, collateral, at=AT)
