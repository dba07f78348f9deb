"""Default parameters of the generative model and the action catalogue (one place for both)."""

from __future__ import annotations

from dataclasses import dataclass

#: Time unit of the purchase rate: lambda is purchases per *week*.
WEEK_DAYS = 7.0

#: BG/NBD (Fader, Hardie & Lee 2005), lambda per week, p per repeat purchase.
BGNBD = {"r": 0.9, "alpha": 6.0, "a": 0.8, "b": 3.0}
#: Gamma-Gamma spend (Fader, Hardie & Lee 2005, "RFM and CLV"), order value in EUR.
GAMMA_GAMMA = {"p": 6.0, "q": 4.0, "gamma": 30.0}

#: Spearman-like strength of the rank coupling satisfaction -> lower dropout.
SAT_DROPOUT_RHO = 0.6
#: Rank coupling income band -> higher spend (lower nu).
INCOME_SPEND_RHO = 0.5

N_CATEGORIES = 12
CATEGORIES = (
    "apparel", "shoes", "beauty", "home", "kitchen", "garden",
    "toys", "books", "electronics", "sports", "food", "pets",
)
TASTE_DIMS = 8
ZIPF_EXPONENT = 1.0
#: Softmax temperature of taste u.v and weight of the category season in item choice.
TASTE_SCALE = 1.0
SEASON_WEIGHT = 0.8

REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
DEVICES = ("mobile", "desktop", "tablet")
INCOME_BANDS = ("low", "middle", "high")

CHANNELS = ("email", "sms", "push", "app")
PURPOSES = ("marketing", "personalisation")
FORMATS = ("plain", "visual", "personal")
ORDER_STATUSES = ("paid", "cancelled", "returned")
STATUS_PROBS = (0.95, 0.02, 0.03)

#: Offers: name -> (discount share, fixed coupon cost in EUR, order-value lift).
OFFERS: dict[str, tuple[float, float, float]] = {
    "none": (0.0, 0.0, 0.0),
    "pct10": (0.10, 0.0, 0.05),
    "pct20": (0.20, 0.0, 0.10),
    "freeship": (0.0, 4.90, 0.08),
}
#: Depth of each offer as seen by a price-sensitive customer (freeship ~ 8 % off).
OFFER_DEPTH = {"none": 0.0, "pct10": 0.10, "pct20": 0.20, "freeship": 0.08}
#: The no-contact action's offer and channel name.
NO_CONTACT = "no_contact"
#: Cost of one contact in EUR.
CONTACT_COST = {"email": 0.002, "sms": 0.08, "push": 0.001, "app": 0.001, NO_CONTACT: 0.0}
#: Mean channel responsiveness (logit-scale lift of a well-timed, well-formatted contact).
CHANNEL_MEAN = {"email": 0.35, "sms": 0.55, "push": 0.30, "app": 0.45}


@dataclass(frozen=True)
class Response:
    """Coefficients of the true response model (documented in docs/simulator.md)."""

    window_days: float = 14.0
    gross_margin: float = 0.40
    offer_slope: float = 5.0  # logit lift per unit discount depth at price sensitivity 1
    habit_rate: float = 0.12  # per week; contacts move habitual buyers less: exp(-lambda/h)
    hour_width: float = 3.0  # hours; Gaussian width of the send-hour fit
    hour_floor: float = 0.25  # share of the channel effect kept at the worst hour
    format_miss: float = 0.5  # share kept when the format is not the preferred one
    annoy_scale: float = 2.2  # logit penalty of a contact at tolerance 0
    annoy_tol: float = 0.35  # tolerance above which a contact does not annoy
    fatigue_per_contact: float = 0.25  # extra penalty per contact in the last 14 days
    dead_logit: float = -6.0  # baseline logit of a customer who has dropped out
    dead_response: float = 0.3  # share of the contact effect that reaches the dead
    complaint_base: float = -6.0
    complaint_load: float = 1.2  # per unit of (recent contacts + 1) / (1 + 4 tolerance)
    complaint_sat: float = 0.6
    unsubscribe_base: float = -6.5
    unsubscribe_load: float = 1.0
    backlash_format: str = "visual"
    backlash_logit: float = 3.0
    degraded_channel: str = "email"
    degraded_day: int = 30  # env day (or day of the period) from which it is degraded
    degraded_factor: float = 0.2
    biased_region: str = "east"
    biased_treat_factor: float = 0.25


RESPONSE = Response()
