"""Faults survived, nothing lost (issue 8; checklist section 4.2). Loopback only, bounded.

- ``test_server_killed``: the server SIGKILLed during a send storm (F-05).
- ``test_database_down``: PostgreSQL stopped for 5 s under load (F-02) and crashed three
  times mid-storm with clients retrying (F-03), on a private cluster.
- ``test_database_network``: latency (F-01), stalls and black holes, resets mid-request
  (F-04), refused and dropped connections, statement and lock timeouts, through
  :mod:`tests.faultproxy` between the server and PostgreSQL.
- ``test_lock_timeout``: a lock wait past ``lock_timeout`` is a 503.
- ``test_slow_push_client``: push-stream clients that stop reading.
- ``test_telemetry_sink_down``: a dead OpenTelemetry collector (F-07).
- ``test_backup_restore``: the backup and restore drill (F-09): ``pg_dump``, a fresh
  cluster, ``pg_restore``, then checksums, the audit log and a client's decryption.
- ``test_fault_handling``: the in-process pieces the above rely on.
- ``test_faultproxy``: the proxy's own modes.

The integrator leader dying mid-batch (another instance takes over, indexes stay dense) is
``tests/e2e/test_multi_instance.py``; the retention job killed mid-run (F-08) is
``tests/integration/test_retention_crash.py``.
"""
