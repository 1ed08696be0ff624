"""What an endpoint's address says about it: a known paid provider (prices, default rate limit) or not.

Without a ``price`` of its own, a step at a known provider takes the model's list price from
``PRICES`` (a small table: where the model is not in it, no cost is shown), and a step
anywhere else has none: a vLLM or llama.cpp server costs no money (``dslrun plan`` shows no
cost for it even when a price is given; the run counts a given price, e.g. for ``max_cost``). The request
rate is unlimited by default except at a known provider, where ``PAID_DEFAULT_RPM`` keeps a
new account's first run from a 429 storm; a step's ``rpm``/``tpm`` always win.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

from dslrun.runtime.api.types import Price, PriceTable

PAID_HOSTS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.mistral.ai",
              "api.together.xyz", "api.groq.com", "api.deepseek.com", "openrouter.ai", "api.fireworks.ai",
              "openai.azure.com", "api.cohere.com")
PAID_DEFAULT_RPM = 500.0

# List prices per 1M tokens (input, output) when this was written; check your provider's.
PRICES = PriceTable({
    "gpt-4o-mini": Price(0.15, 0.60), "gpt-4o": Price(2.50, 10.00), "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4.1-mini": Price(0.40, 1.60), "gpt-4.1": Price(2.00, 8.00), "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-4-turbo": Price(10.00, 30.00), "claude-3-5-haiku": Price(0.80, 4.00), "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00), "deepseek-chat": Price(0.27, 1.10),
})


def paid_host(url: str | None) -> bool:
    """Whether ``url`` is a known provider that bills per token."""
    host = (urlparse(url or "").hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in PAID_HOSTS)


def price_for(url: str, model: str, given: dict[str, float] | None) -> Price | None:
    """The price the pool counts calls at (and bounds ``max_cost`` with): the step's own, else the
    table's for ``model`` at a known paid provider, else none."""
    if given:
        return Price(given["input"], given["output"])
    return PRICES.lookup(model.rsplit("/", 1)[-1]) if paid_host(url) else None


def default_rpm(url: str, rpm: float | None) -> float | None:
    return rpm if rpm is not None else (PAID_DEFAULT_RPM if paid_host(url) else None)


def loopback_host(host: str) -> bool:
    """A literal loopback address (IPv4-mapped too) or ``localhost``. Names are not resolved:
    what a name points to can change between this check and the request."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
