"""Receiver chaos across restarts: webhook receivers that fail in every way HTTP allows, while
the daemon delivering to them is stopped (SIGTERM) and killed (SIGKILL) at random moments.

Two scheduled checkpoints keep producing runs; each run writes one outbox row per action
(``notify_on: always``), and the actions point at real receivers on loopback:

==========  ========  ====================================================================
action      server    behaviour (per idempotency key, attempt n as the receiver counts)
==========  ========  ====================================================================
flaky       aiohttp   500, 500, then 200
limited     aiohttp   429 with ``Retry-After: 1``, 429 without, then 200
hang        aiohttp   hangs past the action's timeout once, then 200
reset       raw TCP   resets the connection (RST) after the headers once, then 200
chaos       raw TCP   seeded random per (key, attempt): 200, 500, 429 (±Retry-After), hang,
                      reset
outage      aiohttp   503 in the cycles the test takes it down, 200 otherwise
down        aiohttp   500 always: every delivery must end dead-lettered
==========  ========  ====================================================================

The second checkpoint delivers to chaos, down, flaky and reset in ``sequential`` order
(``down`` sits there rather than in the first: a destination that never answers 2xx is
throttled to one breaker probe per ``reset_after``, and one failing run at a time keeps
its backlog, and this test, short).

Each cycle the daemon is SIGKILLed while starting, or, once it has worked 2-6 s, SIGKILLed
or stopped with SIGTERM (which must exit 0); the mix is shuffled with a fixed seed.

After the last cycle the daemon starts once more, with the schedules replaced by a manual
trigger (the same actions), and drains. Then:

- every outbox row is ``delivered`` or ``dead``: none pending, none lost (every run with a
  verdict has one row per action of its checkpoint; no row lacks its run);
- every delivered row was acknowledged (2xx) by its receiver; every key a receiver
  acknowledged is an outbox row of an action pointing at it;
- **what the design promises about duplicates** (docs/actions.md, "Durable delivery";
  daemon/dispatcher.py): delivery is at least once until the daemon has *recorded* an
  acknowledgement; a crash between the receiver's 2xx and the ``delivered`` mark sends the
  same key again. A graceful stop lets in-flight attempts finish and records them (the
  dispatcher's stop grace is 5 s here; the receivers that hang are cut off after 1.5 s and
  the others answer at once). Receivers acknowledge at once and no timeout is under
  1.5 s, so a sender never gives up on an answer already sent. So a receiver may
  acknowledge one key more than once only across a SIGKILL: every acknowledgement of a key
  except its last must fall in a daemon process that was SIGKILLed, and no process ever
  acknowledged one key twice. Those re-acknowledgements are counted, not forbidden;
  anything else is a defect;
- sequential order held across restarts: a run's next delivery was first tried only after
  the previous one was acknowledged (or, when it ended dead, after its last attempt);
- every ``down`` delivery is dead after exactly ``max_attempts`` (the breaker, open, spends
  none);
- ``PRAGMA integrity_check`` is ok and the log holds no traceback.
"""

from __future__ import annotations

import itertools
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.harness import DaemonProcess, free_port, query_state, start_daemon, wait_for
from tests.reliability.receivers import (
    Answer,
    Hit,
    HttpReceiver,
    RawReceiver,
    Receiver,
    ReceiverHost,
    Switch,
    always,
    chaos,
    scripted,
)
from tests.reliability.support import integrity_check

SEED = 20260307
LOOPS = ("asyncio", "uvloop")
VERDICTS = ("success", "warning", "failure", "error", "timeout")

CHAOS_WEIGHTS = {
    Answer.ACK: 0.40,
    Answer.ERROR: 0.15,
    Answer.LIMITED_RETRY_AFTER: 0.05,
    Answer.LIMITED: 0.10,
    Answer.HANG: 0.10,
    Answer.RESET: 0.20,
}

CONFIG = """
daemon:
  state_dir: {state}
  max_concurrent_checkpoints: 2
  graceful_shutdown_timeout: 10s
  on_crash: rerun
  log: {{format: json, level: info}}
  actions:
    poll_interval: 200ms
    per_destination: 16
    max_in_flight: 64
    backoff: {{initial: 50ms, max: 500ms}}
    breaker: {{failures: 5, reset_after: 200ms}}
    retry_after_max: 2s
checkpoints:
  - name: orders
    data_source: {{type: inline, rows: [{{amount: 5}}, {{amount: 7}}]}}
    validators:
      - {{type: range, column: amount, min: 0}}
    triggers: [{orders_trigger}]
    actions:
      list:
        - {{type: webhook, name: flaky, url: "{flaky}", notify_on: always,
            max_attempts: 6, timeout: 5s}}
        - {{type: webhook, name: limited, url: "{limited}", notify_on: always,
            max_attempts: 6, timeout: 5s}}
        - {{type: webhook, name: hang, url: "{hang}", notify_on: always,
            max_attempts: 4, timeout: 1500ms}}
        - {{type: webhook, name: reset, url: "{reset}", notify_on: always,
            max_attempts: 6, timeout: 5s}}
        - {{type: webhook, name: chaos, url: "{chaos}", notify_on: always,
            max_attempts: 5, timeout: 1500ms}}
        - {{type: webhook, name: outage, url: "{outage}", notify_on: always,
            max_attempts: 8, timeout: 5s}}
  - name: refunds
    data_source: {{type: inline, rows: [{{amount: -1}}, {{amount: 2}}]}}
    validators:
      - {{type: range, column: amount, min: 0}}
    triggers: [{refunds_trigger}]
    actions:
      strategy: sequential
      list:
        - {{type: webhook, name: seq-chaos, url: "{chaos}", notify_on: always,
            max_attempts: 5, timeout: 1500ms}}
        - {{type: webhook, name: down, url: "{down}", notify_on: always,
            max_attempts: 2, timeout: 5s}}
        - {{type: webhook, name: seq-flaky, url: "{flaky}", notify_on: always,
            max_attempts: 6, timeout: 5s}}
        - {{type: webhook, name: seq-reset, url: "{reset}", notify_on: always,
            max_attempts: 6, timeout: 5s}}
"""

RECEIVER_OF = {
    "flaky": "flaky",
    "limited": "limited",
    "hang": "hang",
    "reset": "reset",
    "chaos": "chaos",
    "outage": "outage",
    "down": "down",
    "seq-chaos": "chaos",
    "seq-flaky": "flaky",
    "seq-reset": "reset",
}
"""Action name → the receiver its URL points at."""

ACTIONS_OF = {
    "orders": {"flaky", "limited", "hang", "reset", "chaos", "outage"},
    "refunds": {"seq-chaos", "down", "seq-flaky", "seq-reset"},
}
SEQUENCE = ("seq-chaos", "down", "seq-flaky", "seq-reset")


@dataclass
class Lifetime:
    """One daemon process: when it lived (test-process monotonic clock) and how it ended."""

    started: float
    ended: float = float("inf")
    ending: str = "running"  # sigkill | sigterm | drained

    def holds(self, at: float) -> bool:
        return self.started <= at <= self.ended


def _receivers(host: ReceiverHost, outage: Switch) -> dict[str, Receiver]:
    made: list[Receiver] = [
        HttpReceiver("flaky", scripted(Answer.ERROR, Answer.ERROR)),
        HttpReceiver("limited", scripted(Answer.LIMITED_RETRY_AFTER, Answer.LIMITED)),
        HttpReceiver("hang", scripted(Answer.HANG), hang_limit=10),
        RawReceiver("reset", scripted(Answer.RESET)),
        RawReceiver("chaos", chaos(SEED, CHAOS_WEIGHTS), hang_limit=10),
        HttpReceiver("outage", outage),
        HttpReceiver("down", always(Answer.ERROR)),
    ]
    return {r.name: host.add(r) for r in made}


def _config(state: Path, receivers: dict[str, Receiver], *, drain: bool) -> str:
    urls = {name: r.url(f"/{name}") for name, r in receivers.items()}
    if drain:  # no new runs: only what is in the outbox (and the journal) is left to do
        orders_trigger = refunds_trigger = "{type: manual}"
    else:
        orders_trigger = "{type: schedule, interval: 300ms}"
        refunds_trigger = "{type: schedule, interval: 600ms}"
    return CONFIG.format(
        state=state, orders_trigger=orders_trigger, refunds_trigger=refunds_trigger, **urls
    )


def _plan(cycles: int, rng: random.Random) -> list[str]:
    """How each cycle ends, shuffled: a fifth SIGKILLed while starting, a third stopped with
    SIGTERM once working, the rest SIGKILLed once working (each kind at least once)."""
    starting = max(1, cycles // 5)
    graceful = max(1, cycles // 3)
    plan = ["kill-starting"] * starting + ["sigterm"] * graceful
    plan += ["sigkill"] * max(1, cycles - len(plan))
    rng.shuffle(plan)
    return plan


def _stop(daemon: DaemonProcess, how: str, rng: random.Random) -> str:
    """End ``daemon`` as planned, at a random moment; returns "sigkill" or "sigterm"."""
    if how == "kill-starting":
        time.sleep(rng.uniform(0.0, 1.2))
    else:
        wait_for(lambda: daemon.proc.poll() is None and daemon.ready(), timeout=60, what="ready")
        time.sleep(rng.uniform(2.0, 6.0))
    assert daemon.proc.poll() is None, f"the daemon died by itself:\n{daemon.log()[-3000:]}"
    if how != "sigterm":
        daemon.kill9()
        return "sigkill"
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(timeout=30)
    assert code == 0, f"a graceful stop exited {code}:\n{daemon.log()[-3000:]}"
    return "sigterm"


def _drained(state: Path) -> bool:
    unfinished = query_state(state, "SELECT count(*) FROM journal WHERE state != 'done'")[0][0]
    pending = query_state(state, "SELECT count(*) FROM action_outbox WHERE status = 'pending'")
    return bool(unfinished == 0 and pending[0][0] == 0)


def test_every_delivery_ends_delivered_or_dead_across_restarts_and_receiver_chaos(
    tmp_path: Path, scale, figures
):
    rng = random.Random(SEED)
    state = tmp_path / "state"
    config = tmp_path / "checkpointd.yaml"
    port, log = free_port(), tmp_path / "daemon.log"
    outage = Switch(Answer.UNAVAILABLE)
    lifetimes: list[Lifetime] = []
    endings: Counter[str] = Counter()

    with ReceiverHost() as host:
        receivers = _receivers(host, outage)
        config.write_text(_config(state, receivers, drain=False))
        for cycle, how in enumerate(_plan(scale.crash_cycles, rng)):
            outage.down = cycle % 2 == 1  # the outage receiver is down every other cycle
            life = Lifetime(time.monotonic())
            lifetimes.append(life)
            daemon = start_daemon(
                config, port=port, log_path=log, loop=LOOPS[cycle % 2], wait_ready=False
            )
            try:
                life.ending = _stop(daemon, how, rng)
            finally:
                if daemon.proc.poll() is None:
                    daemon.kill9()
                life.ended = time.monotonic()
            endings[life.ending] += 1
            if how == "kill-starting":
                endings["kill-starting"] += 1
            if (state / "checkpointd.sqlite3").exists():
                assert integrity_check(state) == "ok", f"after cycle {cycle + 1}"

        # The final start: the schedules are gone, the actions and receivers the same.
        outage.down = False
        config.write_text(_config(state, receivers, drain=True))
        life = Lifetime(time.monotonic(), ending="drained")
        lifetimes.append(life)
        daemon = start_daemon(config, port=port, log_path=log)
        try:
            wait_for(lambda: _drained(state), timeout=150, interval=0.5, what="the drain")
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0, daemon.log()[-3000:]
        finally:
            if daemon.proc.poll() is None:
                daemon.kill9()
            life.ended = time.monotonic()
        hits = [hit for r in receivers.values() for hit in r.hits()]

    runs = query_state(state, "SELECT run_id, checkpoint, status FROM runs")
    rows = query_state(
        state, "SELECT id, run_id, checkpoint, action, status, attempts FROM action_outbox"
    )
    verdict_runs = {(run_id, cp) for run_id, cp, status in runs if status in VERDICTS}
    run_ids = {run_id for run_id, _, _ in runs}
    actions_of_run: dict[str, set[str]] = defaultdict(set)
    for _id, run_id, _cp, action, _status, _attempts in rows:
        actions_of_run[run_id].add(action)
    lost = sorted(
        (run_id, action)
        for run_id, cp in verdict_runs
        for action in ACTIONS_OF[cp] - actions_of_run.get(run_id, set())
    )
    orphans = sorted({run_id for run_id in actions_of_run if run_id not in run_ids})
    status_of = {row[0]: row[4] for row in rows}
    action_of = {row[0]: row[3] for row in rows}
    by_status = Counter(status_of.values())

    # ------------------------------------------------------------ acknowledgements
    def lifetime_of(at: float) -> int:
        for index, life in enumerate(lifetimes):
            if life.holds(at):
                return index
        raise AssertionError(f"a receiver got a request while no daemon ran (t={at})")

    acks: dict[str, list[Hit]] = defaultdict(list)
    for hit in sorted(hits, key=lambda h: h.at):
        if hit.answer is Answer.ACK:
            acks[hit.key].append(hit)
    reacknowledged = 0  # acknowledgements of a key already acknowledged, after a SIGKILL
    unexplained: list[str] = []
    for key, got in acks.items():
        lives = [lifetime_of(h.at) for h in got]
        if len(set(lives)) != len(lives):
            unexplained.append(f"{key}: acknowledged twice by one daemon process {lives}")
        for earlier in lives[:-1]:
            if lifetimes[earlier].ending == "sigkill":
                reacknowledged += 1
            else:
                unexplained.append(
                    f"{key}: acknowledged in a process that ended by "
                    f"{lifetimes[earlier].ending}, then again"
                )
    resends = len(hits) - len({h.key for h in hits})  # every request after a key's first
    acked_but_dead = sorted(k for k in acks if status_of.get(k) == "dead")
    never_acked = sorted(k for k, s in status_of.items() if s == "delivered" and k not in acks)
    strangers = sorted(
        f"{h.receiver}:{h.key}"
        for h in hits
        if h.key not in action_of or RECEIVER_OF[action_of[h.key]] != h.receiver
    )

    # ------------------------------------------------------------ sequential order
    hits_of: dict[str, list[Hit]] = defaultdict(list)
    for hit in hits:
        hits_of[hit.key].append(hit)
    out_of_order = []
    by_run: dict[str, dict[str, str]] = defaultdict(dict)
    for delivery_id, run_id, cp, action, _s, _a in rows:
        if cp == "refunds":
            by_run[run_id][action] = delivery_id
    for run_id, ids in by_run.items():
        if set(ids) != set(SEQUENCE):
            continue  # a lost delivery; reported below
        for before, after in itertools.pairwise(SEQUENCE):
            first_try = min((h.at for h in hits_of[ids[after]]), default=None)
            if first_try is None:
                continue  # dead without an attempt is impossible here, and checked below
            if status_of[ids[before]] == "delivered":
                settled = min(h.at for h in acks[ids[before]])
            else:
                settled = max((h.at for h in hits_of[ids[before]]), default=0.0)
            if first_try < settled:
                out_of_order.append(f"{run_id}: {after} tried before {before} settled")

    down_rows = [row for row in rows if row[3] == "down"]
    log_text = log.read_text(errors="replace")
    figures["cycles"] = scale.crash_cycles
    figures["kills_while_starting"] = endings["kill-starting"]
    figures["sigkills"] = endings["sigkill"]  # the kills while starting included
    figures["sigterms"] = endings["sigterm"]
    figures["runs"] = len(verdict_runs)
    figures["deliveries"] = len(rows)
    figures["delivered"] = by_status["delivered"]
    figures["dead_lettered"] = by_status["dead"]
    figures["pending"] = by_status["pending"]
    figures["lost"] = len(lost)
    figures["drain_seconds"] = round(lifetimes[-1].ended - lifetimes[-1].started, 1)
    figures["cycles_seconds"] = round(lifetimes[-1].started - lifetimes[0].started, 1)
    figures["requests_received"] = len(hits)
    figures["answers"] = dict(Counter(str(h.answer) for h in hits))
    figures["duplicates"] = {
        "resends of unacknowledged deliveries": resends - reacknowledged,
        "re-acknowledged after a SIGKILL": reacknowledged,
        "acknowledged, then dead after a SIGKILL": len(acked_but_dead),
        "unexplained": len(unexplained),
    }

    assert lost == [], f"{len(lost)} deliveries never written, e.g. {lost[:3]}"
    assert orphans == [], f"outbox rows without a run: {orphans[:3]}"
    assert by_status["pending"] == 0, "deliveries left pending after the drain"
    assert set(by_status) <= {"delivered", "dead"}, by_status
    assert {cp for _, cp in verdict_runs} == {"orders", "refunds"}, "both checkpoints ran"
    assert never_acked == [], f"delivered but never acknowledged: {never_acked[:3]}"
    assert strangers == [], f"receivers got keys that are not theirs: {strangers[:3]}"
    assert unexplained == [], "\n".join(unexplained[:10])
    for key in acked_but_dead:
        # Dead after a 2xx is only possible when that 2xx was never recorded: a SIGKILL.
        assert all(lifetimes[lifetime_of(h.at)].ending == "sigkill" for h in acks[key]), key
    assert out_of_order == [], out_of_order[:5]
    # The receiver that always fails: every delivery dead, after exactly max_attempts.
    assert down_rows, "the down receiver got no deliveries"
    down_outcomes = Counter((r[4], r[5]) for r in down_rows)
    assert set(down_outcomes) == {("dead", 2)}, down_outcomes
    assert by_status["delivered"] > len(down_rows), "most deliveries should get through"
    assert "Traceback" not in log_text
    assert "attempt crashed" not in log_text
    assert integrity_check(state) == "ok"
