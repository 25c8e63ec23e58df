"""Webhook errors: a bad AdmissionReview (HTTP 400) versus a pod the webhook refuses."""

from __future__ import annotations

from confnode.errors import InvalidInput


class WebhookError(InvalidInput):
    """The AdmissionReview itself is malformed; the server answers HTTP 400."""


class InvalidQuantity(InvalidInput):
    """A resource quantity that Kubernetes would not accept either."""
