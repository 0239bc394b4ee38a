"""Key transparency: the key log, a second verifiable log whose leaves are the published key bundles.

:mod:`backend.key_log.integrator` appends queued bundles and signs a checkpoint (in the
transaction that publishes a bundle, and once at start-up); :mod:`backend.key_log.service`
answers the proofs a key look-up carries and the routes of :mod:`backend.key_log.controller`.
"""

from backend.key_log.integrator import integrate
from backend.key_log.signer import key_log_signer

__all__ = ["integrate", "key_log_signer"]
