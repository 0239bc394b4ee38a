"""The one access-policy function: every route asks it, nothing else grants access."""

from backend.policy.decide import (
    Action,
    Actor,
    ConsentFact,
    Decision,
    EmergencyFact,
    Facts,
    Resource,
    decide,
    require,
)

__all__ = [
    "Action",
    "Actor",
    "ConsentFact",
    "Decision",
    "EmergencyFact",
    "Facts",
    "Resource",
    "decide",
    "require",
]
