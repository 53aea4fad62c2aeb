"""moto_server that also writes, for every request it authorises, the IAM action and resource moto checked and
whether it allowed it: one JSON line per check to the file named by TS_MOTO_ACTIONS_LOG. Used by
test_permissions.py to show which actions of a policy a run exercised. Arguments are moto_server's."""

from __future__ import annotations

import json
import os
import sys
import threading

from moto.iam import access_control

_LOG = os.environ["TS_MOTO_ACTIONS_LOG"]
_lock = threading.Lock()
_orig = access_control.IAMRequestBase.check_action_permitted


def _recording(self, resource):
    allowed = False
    try:
        _orig(self, resource)
        allowed = True
    finally:
        with _lock, open(_LOG, "a") as f:
            f.write(json.dumps({"action": self._action, "resource": resource, "allowed": allowed,
                                "key": getattr(getattr(self, "_access_key", None), "_access_key_id", "")}) + "\n")


access_control.IAMRequestBase.check_action_permitted = _recording

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main(sys.argv[1:]))
