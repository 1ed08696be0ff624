"""Which servers a run will send requests to, and whether the user has agreed to each.

A shared spec names its own ``base_url``: run as is, it would send the pool and the user's API
key (``api_key_env`` defaults to ``OPENAI_API_KEY``) to a server its author chose. So before the
first request, every endpoint must be one the user has named or a loopback address:

* loopback (``127.0.0.0/8``, ``::1``, ``localhost``): the user's own machine;
* a URL the user typed on the command line (any ``--set`` value, ``--allow-endpoint URL``) or
  passed to the Python API (``set=``, ``settings={"allow_endpoints": [...]}``);
* ``allow_endpoints`` in dslrun.yaml (a URL, or a bare ``host[:port]`` for every path on it);
* ``$OPENAI_BASE_URL``: set in the user's environment, which a spec cannot touch.

Anything else, OpenAI's own endpoint included when a spec names none, is *unknown*: ``dslrun run``
shows it with the number of calls and the cost that ``dslrun plan`` computes and asks on a
terminal; ``--yes`` agrees in advance; without a terminal, and in the Python API without
``yes=True``, the run stops before sending anything (``EndpointNotAllowed``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dslrun.runtime.api.endpoints import loopback_host

DEFAULT_PORTS = {"http": 80, "https": 443}


class EndpointNotAllowed(Exception):
    """The run would call endpoints the user has not agreed to; nothing was sent. ``text``: the
    endpoints and their planned work; ``hint``: how to allow them; ``asked``: the user was asked
    (and has seen ``text``)."""

    def __init__(self, text: str, hint: str, asked: bool = False):
        super().__init__(f"{text}\n{hint}")
        self.text, self.hint, self.asked = text, hint, asked


@dataclass(frozen=True)
class Endpoint:
    url: str
    steps: tuple[str, ...]  # the steps calling it, as "rated (judge-score, model m, key in $K)"
    names: tuple[str, ...]  # those steps' names, to find their rows in the plan


@dataclass(frozen=True)
class EndpointPolicy:
    """What the user has agreed to. ``ask``: the question on a terminal (the CLI's), None when
    there is no one to ask (no terminal, the Python API)."""

    allowed: tuple[str, ...] = ()
    yes: bool = False
    ask: Callable[[str], bool] | None = field(default=None, compare=False)


def is_loopback(host: str) -> bool:
    """A literal loopback address or ``localhost`` (one rule with the API layer's timeouts;
    a module-level name so that a test can make the test server count as remote)."""
    return loopback_host(host)


def _parts(url: str) -> tuple[str, str, int | None, str]:
    u = urlsplit(url.strip())
    try:
        port = u.port
    except ValueError:
        port = None
    return (u.scheme.lower(), (u.hostname or "").rstrip("."), port or DEFAULT_PORTS.get(u.scheme.lower()),
            u.path.rstrip("/"))


def allows(entry: str, url: str) -> bool:
    """Whether an allowance (a URL: it and the paths below it; or ``host[:port]``) covers ``url``."""
    scheme, host, port, path = _parts(url)
    if "://" not in entry:
        bare_host, _, bare_port = entry.strip().rstrip("/").lower().partition(":")
        return host == bare_host and (not bare_port or str(port) == bare_port)
    e_scheme, e_host, e_port, e_path = _parts(entry)
    return ((scheme, host, port) == (e_scheme, e_host, e_port)
            and (path == e_path or path.startswith(e_path + "/")))


def user_urls(values: Iterable[Any]) -> list[str]:
    """Every string in the user's own values (``--set``, ``set=``) that looks like a URL."""
    out, stack = [], list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, str) and "://" in v:
            out.append(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return out


def planned_endpoints(plan: Any) -> list[Endpoint]:
    """The servers the plan's steps call (OpenAI-compatible backends; ``local`` calls none)."""
    from dslrun.operators.llm.base import DEFAULT_MODEL, LlmParams
    from dslrun.runtime.api.backends import resolve_base_url

    by_url: dict[str, tuple[list[str], list[str]]] = {}
    for name in plan.order:
        op = plan.nodes[name].op
        if op is None:
            continue
        params = op.params
        settings = [params] if isinstance(params, LlmParams) else []
        settings += [v for k in type(params).model_fields if isinstance(v := getattr(params, k), LlmParams)]
        for p in settings:
            if p.backend != "openai":
                continue
            url = resolve_base_url(p.base_url)[0].rstrip("/")
            key = p.api_key_env or "OPENAI_API_KEY"
            steps, names = by_url.setdefault(url, ([], []))
            steps.append(f"{name} ({op.name}, model {p.model or DEFAULT_MODEL['openai']}, key in ${key})")
            names.append(name)
    return [Endpoint(url, tuple(s), tuple(n)) for url, (s, n) in by_url.items()]


def unknown_endpoints(plan: Any, allowed: Iterable[str]) -> list[Endpoint]:
    """The plan's endpoints the user has not agreed to (see the module's docstring)."""
    allowed = [*allowed, *filter(None, [os.environ.get("OPENAI_BASE_URL", "").strip()])]
    return [e for e in planned_endpoints(plan)
            if not is_loopback(_parts(e.url)[1]) and not any(allows(a, e.url) for a in allowed)]


def plan_lines(plan: Any, allowed: Iterable[str]) -> list[str]:
    """``dslrun plan``'s endpoint section: each server the run will call, and whether ``run``
    will send to it at once or ask first (with the same rule as ``check_endpoints``)."""
    endpoints = planned_endpoints(plan)
    if not endpoints:
        return []
    unknown = {e.url for e in unknown_endpoints(plan, allowed)}
    lines = ["endpoints:"]
    for e in endpoints:
        if e.url in unknown:
            state = "not named by you: `dslrun run` asks before sending (--yes, --allow-endpoint URL)"
        else:
            state = "loopback" if is_loopback(_parts(e.url)[1]) else "allowed"
        lines.append(f"  {e.url}  {state}; steps: {', '.join(e.names)}")
    return lines


def describe(unknown: list[Endpoint], rows: list[Any]) -> str:
    """The endpoints with the plan's calls, tokens and cost for the steps calling each."""
    at = {r.name: i for i, r in enumerate(rows)}
    lines = ["this run would send requests to " + ("an endpoint" if len(unknown) == 1 else "endpoints")
             + " you have not named:"]
    for e in unknown:
        lines.append(f"  {e.url}")
        for step, name in zip(e.steps, e.names):
            i = at.get(name)
            # a step after one whose rows are not known yet is planned over a superset: a bound
            work = _work(None, True) if i is None else _work(rows[i], all(r.exact for r in rows[:i]))
            lines.append(f"    {step}: {work}")
    return "\n".join(lines)


def _work(row: Any, exact: bool) -> str:
    if row is None or row.samples is None:
        return "calls not known before the run"
    c = row.cost
    bound = "" if exact else "at most "
    text = f"{bound}{c.api_calls} API calls ({row.cached}/{row.samples} samples cached)"
    if c.input_tokens or c.output_tokens:
        text += f", {c.input_tokens} input + at most {c.output_tokens} output tokens"
    if c.money is not None:
        return text + f", about ${c.money:.2f}"
    return text + ", no money cost known (no price, or not a known paid provider)"


def check_endpoints(plan: Any, user_values: Iterable[Any], settings: Any, policy: EndpointPolicy,
                    cache: Any) -> None:
    """Return when every endpoint is agreed to (asking if the policy can); else raise
    ``EndpointNotAllowed``. ``user_values``: the user's parameter values (``--set``, ``set=``)."""
    import sys

    unknown = unknown_endpoints(plan, [*policy.allowed, *settings.allow_endpoints, *user_urls(user_values)])
    if not unknown:
        return
    if policy.yes:
        print(f"note: sending requests to {', '.join(e.url for e in unknown)} (allowed by --yes)", file=sys.stderr)
        return
    text = describe(unknown, planned_rows(plan, cache, settings))
    if policy.ask is not None and policy.ask(text):
        return
    asked = policy.ask is not None
    raise EndpointNotAllowed(text, refusal(unknown, asked), asked)


def planned_rows(plan: Any, cache: Any, settings: Any) -> list[Any]:
    """``dslrun plan``'s rows: the numbers shown are the planner's, not a second estimate."""
    from pathlib import Path

    from dslrun.runtime.execution.context import RunContext
    from dslrun.runtime.execution.planner import dry_run

    ctx = RunContext(out_dir=Path("."), spec_dir=plan.spec_dir, cache=cache, settings=settings)
    try:
        return dry_run(plan, ctx)
    finally:
        ctx.models.release()


def refusal(unknown: list[Endpoint], asked: bool) -> str:
    urls = " ".join(e.url for e in unknown)
    allow = (f"--yes (this run), --allow-endpoint URL (e.g. --allow-endpoint {unknown[0].url}), or "
             f"allow_endpoints: [{urls}] in dslrun.yaml")
    if asked:
        return f"not confirmed: nothing was sent. To run without the question: {allow}"
    return (f"nothing was sent: there is no terminal to ask (stdin is not a TTY). To allow: {allow}; "
            f"from Python: dslrun.run(..., yes=True) or settings={{'allow_endpoints': [...]}}")


def ask_on_terminal(text: str) -> bool:
    """The CLI's question: ``text`` and ``[y/N]`` on stderr, the answer from stdin."""
    import sys

    print(text, file=sys.stderr)
    print("send these requests? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
