#!/usr/bin/env bash
# Set up everything `make run` and `make test` need, installing only what is
# missing: Debian packages (as root), the .venv with the project and its dev
# tools, and the pinned Claude Code CLI from npm. Idempotent; a second run
# with nothing to do takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION=2.1.197   # later versions need Node 22; Debian 12 has Node 20
APT_PACKAGES=(git make bubblewrap systemd-container nix-bin chromium)

say() { printf '\033[1;32m[setup]\033[0m %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(nodejs npm)   # an image may bring its own Node
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.hyperhive-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "pip install -e .[dev]"
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[dev]'; } \
      >.venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    exit 1
  fi
  echo "$want" >"$stamp"
fi

if [[ "$(claude --version 2>/dev/null)" != "$CLAUDE_CODE_VERSION"* ]]; then
  say "npm install -g @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
  npm install -g --no-fund --no-audit --loglevel=error "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >/dev/null
  if ! claude --version >/dev/null 2>&1; then
    # npm skipped the postinstall that copies the native binary into place.
    node "$(npm root -g)/@anthropic-ai/claude-code/install.cjs"
  fi
  claude --version >/dev/null
fi

# mypy and import-linter cannot follow setuptools' package-dir remapping, so
# they read this link tree, which lays the services out as hyperhive.* on disk.
tree=.build/typecheck/hyperhive
rm -rf .build/typecheck && mkdir -p "$tree"
for f in hyperhive/*; do ln -s "../../../$f" "$tree/"; done
for svc in broker reconciler harness; do ln -s "../../../$svc" "$tree/$svc"; done
ln -s "../../../desired-state" "$tree/desired_state"
