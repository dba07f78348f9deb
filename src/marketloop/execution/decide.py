"""The decision pipeline: (customer or visitor, context) -> an action or nothing, with reasons.

DESIGN.md §5, in order:

1. **candidates** — the customer's row of a campaign plan (``marketloop plan campaign``)
   when the service was given one, else the rules: a long product dwell on the site → 10 %
   off in-app; an idle cart → a reminder by e-mail or push; a return after months away → a
   win-back offer by e-mail; a new visitor's long dwell → free shipping on the first order;
   otherwise nothing;
2. **choice with a logged propensity** — with probability ``epsilon`` the choice is drawn
   uniformly from the candidates *and* "nothing" (a holdout, so the effect can be measured
   and the next policy evaluated off-policy), else the candidate; the exact probability of
   the action taken is returned;
3. **eligibility** — the offer's channels, in order, that the request allows, that the
   customer consented to (marketing consent for e-mail, SMS and push; in-app needs no
   revoked personalisation consent) and, away from the site, outside quiet hours;
4. **caps and budget** — :meth:`State.select` counts the contact and spends the offer's
   cost atomically, or refuses (cap per day or week, campaign budget exhausted); a channel
   refused by a cap gives way to the next eligible one (in-app does not count as a contact);
5. **reasons** — every step that decided leaves a line, kept with the decision.

If the state store cannot be reached, the answer is "nothing" with ``degraded=True``: no
contact is made that consent, caps or budgets could not be checked for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from marketloop.execution._ids import new_id
from marketloop.execution.config import CHANNELS, ServiceConfig, ServiceOffer
from marketloop.execution.state import (
    BUDGET,
    CAP_DAY,
    CAP_WEEK,
    NO_CONSENT,
    QUIET,
    RESERVED,
    ChannelOption,
    State,
    StateUnavailable,
)

NOTHING = "nothing"
#: Rules: context trigger -> (offer, channels in order of preference).
RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "dwell": ("pct10", ("app",)),
    "cart_idle": ("reminder", ("email", "push", "app")),
    "return_after": ("pct10", ("email", "push", "app")),
    "new_visitor_dwell": ("freeship", ("app",)),
}
#: Dwell on one product (ms) that counts as purchase intent when no trigger is named.
DWELL_MS = 30_000


@dataclass(frozen=True)
class Request:
    """One decision to make."""

    customer_id: str
    known: bool
    context: Mapping[str, object]
    channels: tuple[str, ...] = CHANNELS
    campaign: str = "default"
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    decision_id: str = field(default_factory=new_id)


@dataclass
class Decision:
    """What was decided, why, and with which probability."""

    decision_id: str
    customer_id: str
    ts: dt.datetime
    policy: str
    offer: str | None
    channel: str | None
    propensity: float
    reasons: list[str]
    campaign: str
    cost: float = 0.0
    degraded: bool = False
    format: str | None = None
    product_id: str | None = None
    dispatch: str = "caller"
    chosen: str | None = None  # the policy's choice: an offer, or None for nothing
    chosen_propensity: float = 1.0  # its probability under the policy

    @property
    def refused(self) -> bool:
        """The policy chose an offer but consent, quiet hours, a cap, the budget or an
        unreachable state store turned it into nothing."""
        return self.chosen is not None and self.offer is None

    @property
    def action(self) -> str:
        """``offer@channel``, or ``nothing``: the ``decisions`` table's ``action``."""
        return NOTHING if self.offer is None else f"{self.offer}@{self.channel}"

    def to_json(self) -> dict[str, object]:
        """The response body of ``POST /v1/decide``."""
        ts = self.ts.isoformat()
        action = None if self.offer is None else {
            "offer": self.offer, "channel": self.channel, "format": self.format,
            "product_id": self.product_id, "send_at": ts, "dispatch": self.dispatch}
        return {"decision_id": self.decision_id, "customer_id": self.customer_id,
                "ts": ts, "policy": self.policy, "action": action,
                "propensity": self.propensity, "reasons": self.reasons,
                "campaign": self.campaign, "degraded": self.degraded,
                "chosen": self.chosen, "chosen_propensity": self.chosen_propensity}


class Decider:
    """Decides for one request at a time (see the module docstring).

    Parameters
    ----------
    config : ServiceConfig
        Offers, limits, budgets, epsilon.
    state : State
        Consent, caps and budgets.
    plan : mapping of str to (offer, reason), optional
        A campaign plan's choices per customer id (``marketloop plan campaign``).
    responsiveness : mapping of str to (channel -> rate), optional
        Each customer's response rate per channel (from the decision log): messages sent
        away from the site go first through the channel the customer answers most.
    """

    def __init__(self, config: ServiceConfig, state: State,
                 plan: Mapping[str, tuple[str, str]] | None = None,
                 responsiveness: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.config = config
        self.state = state
        self.plan = dict(plan or {})
        self.responsiveness = dict(responsiveness or {})
        self.offers: dict[str, ServiceOffer] = {o.name: o for o in config.offers}
        self.policy = f"{'plan' if self.plan else 'rules'}+eps{config.epsilon:g}"

    async def decide(self, request: Request) -> Decision:
        """The decision for ``request``; never raises for a reachable or unreachable state."""
        reasons: list[str] = []
        candidate, channels = self._candidate(request, reasons)
        offer, propensity = self._choose(request, candidate, reasons)
        decision = Decision(request.decision_id, request.customer_id, request.now, self.policy,
                            None, None, propensity, reasons, request.campaign, chosen=offer,
                            chosen_propensity=propensity)
        if offer is None:
            return decision
        spec = self.offers[offer]
        budget = self.config.budgets.get(request.campaign)
        if budget is None:  # an unconfigured campaign has no money, not unlimited money
            reasons.append(f"refused: campaign {request.campaign!r} has no budget in "
                           "service.budgets; nothing sent")
            decision.propensity = 1.0
            return decision
        try:
            channel = await self._select(request, channels, spec, budget, reasons)
        except StateUnavailable as exc:
            reasons.append(f"degraded: state store unreachable ({exc}); nothing sent")
            decision.degraded = True
            channel = None
        if channel is None:
            # nothing happens whether the policy chose the offer or nothing: the answer's
            # propensity is that of what is done, 1; the choice stays in chosen_propensity
            decision.propensity = 1.0
            return decision
        decision.offer, decision.channel, decision.cost = offer, channel, spec.cost
        decision.format = spec.format
        product = request.context.get("product_id")
        decision.product_id = None if product is None else str(product)
        reasons.append(f"sent {offer} by {channel}; cost {spec.cost:.2f} charged to "
                       f"campaign {request.campaign!r}")
        return decision

    def _candidate(self, request: Request, reasons: list[str]
                   ) -> tuple[str | None, tuple[str, ...]]:
        """The offer the plan or the rules propose, and its channels in preference order."""
        planned = self.plan.get(request.customer_id)
        if planned is not None:
            offer, why = planned
            if offer in self.offers:
                reasons.append(f"plan: {why}")
                return offer, self._by_responsiveness(request.customer_id,
                                                      ("email", "push", "sms", "app"), reasons)
            reasons.append(f"plan offer {offer!r} is not a configured offer; rules apply")
        trigger = _trigger(request)
        if trigger is None:
            reasons.append("no rule applies to this context")
            return None, ()
        if trigger == "dwell" and not request.known:
            trigger = "new_visitor_dwell"
        offer, channels = RULES[trigger]
        if offer not in self.offers:
            reasons.append(f"rule {trigger}: offer {offer!r} is not configured")
            return None, ()
        reasons.append(f"rule {trigger}: {offer}")
        return offer, self._by_responsiveness(request.customer_id, channels, reasons)

    def _by_responsiveness(self, customer_id: str, channels: tuple[str, ...],
                           reasons: list[str]) -> tuple[str, ...]:
        """Channels away from the site reordered by the customer's response rates."""
        rates = self.responsiveness.get(customer_id)
        away = [c for c in channels if c != "app"]
        if not rates or len(away) < 2 or not any(c in rates for c in away):
            return channels
        ranked = sorted(away, key=lambda c: -rates.get(c, -1.0))  # stable: rule order on ties
        if ranked != away:
            known = ", ".join(f"{c} {rates[c]:.2f}" for c in ranked if c in rates)
            reasons.append(f"channels ordered by this customer's response: {known}")
        it = iter(ranked)
        return tuple(c if c == "app" else next(it) for c in channels)

    def _choose(self, request: Request, candidate: str | None, reasons: list[str]
                ) -> tuple[str | None, float]:
        """The candidate, or with probability epsilon a uniform draw incl. nothing."""
        if candidate is None:
            return None, 1.0
        options = [candidate, None]
        eps = self.config.epsilon
        u = _uniform(request.decision_id)
        if u < eps:
            pick = options[min(int(u / eps * len(options)), len(options) - 1)]
            reasons.append("explore: drawn uniformly from the offer and nothing")
        else:
            pick = candidate
        p = (1 - eps) * (pick == candidate) + eps / len(options)
        if pick is None:
            reasons.append("holdout: nothing sent, so the offer's effect can be measured")
        return pick, float(p)

    async def _select(self, request: Request, preferred: Sequence[str], spec: ServiceOffer,
                      budget: float | None, reasons: list[str]) -> str | None:
        """The first preferred channel the request allows, consented, outside quiet hours,
        within the caps and the budget, reserved in one state call; ``None`` if none is."""
        quiet = _quiet(request.now, self.config.limits)
        options = [ChannelOption(c, "personalisation" if c == "app" else "marketing",
                                 lenient=c == "app", quiet=quiet and c != "app",
                                 contact=c != "app")
                   for c in preferred if c in request.channels]
        if not options:
            reasons.append("no eligible channel: none allowed")
            return None
        answers = await self.state.select(
            request.customer_id, options, request.campaign, round(spec.cost * 100),
            None if budget is None else round(budget * 100), request.now)
        skipped = [f"{o.channel}: no {o.purpose} consent" if a == NO_CONSENT
                   else f"{o.channel}: quiet hours"
                   for o, a in zip(options, answers, strict=True) if a in (NO_CONSENT, QUIET)]
        eligible = [o.channel for o, a in zip(options, answers, strict=True)
                    if a not in (NO_CONSENT, QUIET)]
        if eligible:
            note = f" (not {'; '.join(skipped)})" if skipped else ""
            reasons.append(f"channels {', '.join(eligible)}{note}")
        else:
            reasons.append("no eligible channel: " + "; ".join(skipped))
        for o, a in zip(options, answers, strict=True):
            if a == RESERVED:
                return o.channel
            if a in (CAP_DAY, CAP_WEEK, BUDGET):
                reasons.append(f"refused {o.channel}: {a.replace('_', ' ')}")
        return None


def _trigger(request: Request) -> str | None:
    """The trigger a context names (``trigger``), or a long dwell seen in it."""
    named = request.context.get("trigger")
    if isinstance(named, str) and named in RULES:
        return named
    dwell = request.context.get("dwell_ms")
    if isinstance(dwell, int | float) and dwell >= DWELL_MS and not request.context.get(
            "purchased"):
        return "dwell"
    return None


def _quiet(now: dt.datetime, limits: object) -> bool:
    start, end = limits.quiet_start, limits.quiet_end  # type: ignore[attr-defined]
    hour = now.astimezone(dt.UTC).hour
    return start <= hour or hour < end if start > end else start <= hour < end


def _uniform(decision_id: str) -> float:
    """A uniform number in [0, 1) from the decision id: the same id, the same draw."""
    digest = hashlib.blake2b(decision_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


__all__ = ["NOTHING", "RULES", "Decider", "Decision", "Request"]
