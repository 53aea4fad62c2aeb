#!/usr/bin/env python3
"""Is moto's SQS queue losing messages under concurrent send + delete? (in-process, no server, a few seconds)

    .cache/venv/bin/python bench/moto_sqs_race.py [--messages 2000] [--senders 2] [--deleters 8] [--locked]

moto's `Queue.add_message` appends to `Queue._messages` under `_messages_lock`, but `Queue.delete_message` builds a
new list from `_messages` and assigns it back without that lock: a message appended between the read and the
assignment is dropped, although SendMessage(Batch) already answered it with a MessageId. This script sends
--messages messages from --senders threads while --deleters threads receive and delete, through moto's own backend
(the code moto_server runs, minus HTTP), then counts the messages that are gone: a MessageId came back from the
send, no receive ever returned it, and it is not in the queue either.
With --locked, `delete_message` runs under `_messages_lock` (the patch `bench/moto_locked.py` applies to the server
for bench/fanout.py --locked-moto): the count must then be 0. Prints both figures; a run without --locked that
loses none proves nothing (the race is timing-dependent), one that loses any proves the loss is moto's. "still
queued" are messages received whose delete hit moto's errors (they would come back after the visibility timeout).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import Queue, sqs_backends


def lock_delete_message() -> None:
    """Make moto's Queue.delete_message hold the queue's message lock (which add_message appends under)."""
    original = Queue.delete_message
    if getattr(original, "_locked", False):
        return

    def delete_message(self: Queue, receipt_handle: str) -> None:
        with self._messages_lock:
            return original(self, receipt_handle)

    delete_message._locked = True  # type: ignore[attr-defined]
    Queue.delete_message = delete_message  # type: ignore[method-assign]


def run(messages: int, senders: int, deleters: int) -> tuple[int, int, int, int, float]:
    backend = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    name = f"race-{time.monotonic_ns()}"
    backend.create_queue(name)
    sent: set[str] = set()
    received: set[str] = set()
    errors = [0]
    lock = threading.Lock()
    done = threading.Event()

    def send(n: int) -> None:
        for i in range(n):
            m = backend.send_message(name, f"m{i}")
            with lock:
                sent.add(m.id)

    def drain() -> None:
        idle = 0
        while idle < 20:
            try:
                ms = backend.receive_message(name, 10, 0, 60)
            except RuntimeError:  # moto's own race on its pending-message set ("changed size during iteration")
                with lock:
                    errors[0] += 1
                continue
            if not ms:
                idle += done.is_set()
                time.sleep(0.005)
                continue
            with lock:
                received.update(m.id for m in ms)
            for m in ms:
                try:
                    backend.delete_message(name, m.receipt_handle)
                except Exception:  # noqa: BLE001 - moto's own errors under the race (ReceiptHandleIsInvalid, ...)
                    with lock:
                        errors[0] += 1

    t0 = time.monotonic()
    ts = [threading.Thread(target=send, args=(messages // senders,)) for _ in range(senders)]
    ds = [threading.Thread(target=drain) for _ in range(deleters)]
    for t in ds + ts:
        t.start()
    for t in ts:
        t.join()
    done.set()
    for t in ds:
        t.join()
    queued = {m.id for m in backend.get_queue(name)._messages}
    # gone: answered with a MessageId, never handed to a receiver, and no longer in the queue
    return len(sent), len(sent - received - queued), len(queued), errors[0], time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2_000)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--deleters", type=int, default=8)
    ap.add_argument("--switch", type=float, default=1e-4, help="sys.setswitchinterval: smaller = more interleaving")
    ap.add_argument("--locked", action="store_true", help="only the run with delete_message under the lock")
    a = ap.parse_args()
    sys.setswitchinterval(a.switch)  # switch threads often, as a busy server does
    rows = []
    if not a.locked:
        rows.append(("moto as shipped",) + run(a.messages, a.senders, a.deleters))
    lock_delete_message()
    rows.append(("delete_message under _messages_lock",) + run(a.messages, a.senders, a.deleters))
    print(f"{'moto SQS queue':<38} {'sent (MessageId)':>16} {'gone':>6} {'still queued':>12} "
          f"{'delete errors':>13} {'seconds':>8}")
    for label, sent, lost, left, errs, secs in rows:
        print(f"{label:<38} {sent:>16} {lost:>6} {left:>12} {errs:>13} {secs:>8.1f}")
    return 1 if rows[-1][2] else 0


if __name__ == "__main__":
    sys.exit(main())
