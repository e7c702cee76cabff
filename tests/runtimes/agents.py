"""Minimal agents for runtime tests: self-contained ``python -c`` programs.

The sandbox shows no test code, so each agent is one string run by the venv's
interpreter (which the sandbox does show). Every one writes what it saw to
``$HIVE_STATE_DIR`` and, unless it is meant to exit, idles until SIGTERM.
"""

from __future__ import annotations

import sys

IDLE = """
import json, os, signal, sys
state = os.environ["HIVE_STATE_DIR"]
def done(*_):
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
tmp = os.path.join(state, ".status.tmp")
with open(tmp, "w") as f:
    json.dump({"logged_in": False, "busy": False, "turns": 0, "last_turn_at": None,
               "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0, "pid": os.getpid()}, f)
os.replace(tmp, os.path.join(state, "status.json"))
while True:
    signal.pause()
"""

#: Reports its environment, cwd and what of the host it can read or write, then idles.
PROBE = """
import json, os, signal, sys
def done(*_):
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
out = {"env": dict(os.environ), "cwd": os.getcwd(), "read": {}, "write": {}}
for path in json.loads(sys.argv[1]):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").close()
        out["read"][path] = True
    except OSError:
        out["read"][path] = False
for path in json.loads(sys.argv[2]):
    try:
        with open(path, "w") as f:
            f.write("x")
        out["write"][path] = True
    except OSError:
        out["write"][path] = False
out["sysctl_writable"] = os.access("/proc/sys/kernel/core_pattern", os.W_OK)
try:
    import hyperhive.harness
    out["import"] = hyperhive.harness.__file__
except Exception as e:
    out["import"] = "failed: " + repr(e)
state = os.environ["HIVE_STATE_DIR"]
with open(os.path.join(state, ".probe.tmp"), "w") as f:
    json.dump(out, f)
os.replace(os.path.join(state, ".probe.tmp"), os.path.join(state, "probe.json"))
while True:
    signal.pause()
"""

#: Starts a grandchild in its own session that ignores SIGTERM, then idles.
FAMILY = """
import os, signal, subprocess, sys
def done(*_):
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
child = subprocess.Popen([sys.executable, "-c",
    "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "open('/state/grandchild', 'w').close()\\n"
    "while True: signal.pause()"], start_new_session=True)
while True:
    signal.pause()
"""

#: Writes its marker and exits with status 3 at once.
EXITS = """
import os, sys
print("agent giving up now", flush=True)
sys.exit(3)
"""

#: Ignores SIGTERM entirely: only SIGKILL stops it.
STUBBORN = """
import os, signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(os.environ["HIVE_STATE_DIR"], "stubborn"), "w").close()
while True:
    signal.pause()
"""


def command(program: str, *args: str) -> list[str]:
    return [sys.executable, "-c", program, *args]
