"""``dslrun explain``: a spec's feasibility profile, derived from its compiled DAG.

The terms are those of the unified comparison of data selectors in Liu et al., "Take
the Essence and Discard the Dross: A Rethinking on Data Selection for Fine-Tuning Large
Language Models" (2024): how many LLMs the selector trains, how many algorithm steps it
takes (each feature or quality label is one step; a connected run of filters, ranks and
derives is one selection step, however it is spelled), how many times it uses an LLM, and whether it is model-free (its scores do not
depend on the pending fine-tune model), dataset-free (it trains nothing on the candidate
pool, so a new pool needs no re-training) and closed-API-free (no sample goes to a
proprietary model's API).

Nothing here is written per recipe: every number comes from the operators'
``feasibility()`` declarations over the steps the spec compiles to. Loading, saving and
evaluating are not part of a selector and are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import networkx as nx

from dslrun.core.cost import Feasibility, Stage
from dslrun.core.values import to_python
from dslrun.dsl.compile import Plan


@dataclass(frozen=True)
class Profile:
    trained_llms: int
    steps: int
    llm_uses: int
    model_free: bool
    dataset_free: bool
    closed_api_free: bool
    # Why each flag is false: the steps responsible, for the printout.
    because: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("because")
        return d


def pfm_models(plan: Plan) -> set[str]:
    """The pending fine-tune model(s) the spec names: an ``evaluate`` step's ``pfm``, or a ``pfm`` parameter."""
    found = {getattr(n.op.params, "pfm", None) for n in plan.nodes.values() if n.op is not None}
    if "pfm" in plan.params:
        found.add(to_python(plan.params["pfm"]))
    return {m for m in found if isinstance(m, str) and m}


def step_profiles(plan: Plan) -> dict[str, Feasibility]:
    return {name: op.feasibility() for name in plan.order if (op := plan.nodes[name].op) is not None}


def algorithm_steps(plan: Plan, steps: dict[str, Feasibility]) -> int:
    """Each label step, plus each connected run of row-selection steps (filter → rank is one cut)."""
    selecting = [n for n, f in steps.items() if not f.labels]
    runs = nx.number_connected_components(plan.graph.subgraph(selecting).to_undirected()) if selecting else 0
    return sum(f.labels for f in steps.values()) + runs


def profile(plan: Plan) -> Profile:
    pfm = pfm_models(plan)
    steps = {name: f for name, f in step_profiles(plan).items() if f.stage == Stage.SELECTOR}
    on_pfm = [n for n, f in steps.items() if f.uses_pfm or (f.model is not None and f.model in pfm)]
    on_pool = [n for n, f in steps.items() if f.trains_on_pool]
    closed = [n for n, f in steps.items() if f.closed_api]
    return Profile(
        trained_llms=sum(f.trained_llms for f in steps.values()),
        steps=algorithm_steps(plan, steps),
        llm_uses=sum(f.llm_uses for f in steps.values()),
        model_free=not on_pfm,
        dataset_free=not on_pool,
        closed_api_free=not closed,
        because={"model_free": on_pfm, "dataset_free": on_pool, "closed_api_free": closed},
    )


def render(plan: Plan, prof: Profile) -> str:
    lines = [f"feasibility profile of {plan.spec.file}", ""]
    label = {"trained_llms": "LLMs trained", "steps": "algorithm steps", "llm_uses": "LLM usages",
             "model_free": "model-free", "dataset_free": "dataset-free", "closed_api_free": "closed-API-free"}
    for key, value in prof.as_dict().items():
        text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        why = prof.because.get(key)
        if why and not value:
            text += f"  (steps: {', '.join(why)})"
        lines.append(f"  {label[key]:<17} {text}")
    lines += ["", "  step             op               stage      LLM uses  trains  PFM  pool  closed API"]
    for name, f in step_profiles(plan).items():
        op = plan.nodes[name].step.op
        lines.append(f"  {name:<16} {op:<16} {f.stage.value:<10} {f.llm_uses:>8}  {f.trained_llms:>6}  "
                     f"{_yn(f.uses_pfm or f.model in pfm_models(plan)):>3}  {_yn(f.trains_on_pool):>4}  "
                     f"{_yn(f.closed_api):>10}")
    return "\n".join(lines) + "\n"


def _yn(flag: bool) -> str:
    return "yes" if flag else "-"
