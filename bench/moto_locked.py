#!/usr/bin/env python3
"""moto_server with one race fixed: SQS `Queue.delete_message` runs under the queue's `_messages_lock`.

    .cache/venv/bin/python bench/moto_locked.py -H 127.0.0.1 -p PORT

Same arguments as moto_server. As shipped, moto's delete_message rebuilds the queue's message list without the lock
add_message appends under, so a message sent while another is being deleted can vanish after SendMessageBatch has
answered it with a MessageId (bench/moto_sqs_race.py shows it in-process). bench/fanout.py --locked-moto uses this
server to tell trailsetup's exactness apart from that race. Benchmarks only: the tests run moto as shipped.
"""

from __future__ import annotations

import sys

from moto_sqs_race import lock_delete_message

if __name__ == "__main__":
    lock_delete_message()
    from moto.server import main

    sys.exit(main())
