"""A stand-in for ``claude auth login``: prints a URL, reads a code, stores credentials.

Keeps the real command's contract as the harness uses it: the URL on stdout,
the code on stdin, exit 0 and a credentials file on success, non-zero on a
bad code.
"""

import json
import os
import sys
from pathlib import Path

print("Opening browser to sign in…", flush=True)
print("If the browser didn't open, visit: https://claude.ai/oauth/authorize?state=t3st", flush=True)
print("Paste code here if prompted > ", end="", flush=True)
code = sys.stdin.readline().strip()
if code != "good-code":
    print(f"\nOAuth error: invalid code {code!r}", flush=True)
    sys.exit(1)
path = Path(os.environ["CLAUDE_CONFIG_DIR"]) / ".credentials.json"
path.write_text(json.dumps({"claudeAiOauth": {"accessToken": "fake"}}))
print("\nLogin successful.", flush=True)
