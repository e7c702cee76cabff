"""Where every socket, database and directory lives (DESIGN §6).

``Paths`` is derived from two roots, RUN and STATE. Every per-agent path goes
through :func:`hyperhive.names.validate_agent_name` first, so no user-supplied
string ever becomes a path unchecked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hyperhive.names import MANAGER_AGENT, MANAGER_MAILBOX, validate_agent_name

SYSTEM_RUN = Path("/run/hyperhive")
SYSTEM_STATE = Path("/var/lib/hyperhive")
DEFAULT_HOME = Path(".hive")


@dataclass(frozen=True)
class Paths:
    run: Path
    state: Path

    @classmethod
    def from_home(cls, home: Path) -> Paths:
        home = home.absolute()
        return cls(run=home / "run", state=home / "state")

    @classmethod
    def system(cls) -> Paths:
        return cls(run=SYSTEM_RUN, state=SYSTEM_STATE)

    # --- RUN -----------------------------------------------------------------
    @property
    def host_sock(self) -> Path:
        return self.run / "host.sock"

    @property
    def broker_sock(self) -> Path:
        return self.run / "broker.sock"

    @property
    def manager_dir(self) -> Path:
        return self.run / "manager"

    @property
    def c0re_sock(self) -> Path:
        return self.manager_dir / "c0re.sock"

    @property
    def operator_token(self) -> Path:
        return self.run / "operator.token"

    def mailbox_dir(self, mailbox: str) -> Path:
        """The socket dir of a mailbox: ``RUN/manager`` or ``RUN/agents/<n>``."""
        if mailbox == MANAGER_MAILBOX:
            return self.manager_dir
        return self.run / "agents" / validate_agent_name(mailbox)

    def mailbox_sock(self, mailbox: str) -> Path:
        return self.mailbox_dir(mailbox) / "broker.sock"

    def agent_socket_dir(self, agent: str) -> Path:
        """The dir bound to ``/run/hive`` in the agent's sandbox or container."""
        if agent == MANAGER_AGENT:
            return self.manager_dir
        return self.mailbox_dir(agent)

    def web_sock(self, agent: str) -> Path:
        return self.agent_socket_dir(agent) / "web.sock"

    # --- STATE ---------------------------------------------------------------
    @property
    def applied(self) -> Path:
        return self.state / "applied"

    @property
    def proposed(self) -> Path:
        return self.state / "proposed"

    @property
    def c0re_db(self) -> Path:
        return self.state / "c0re.sqlite"

    @property
    def broker_db(self) -> Path:
        return self.state / "broker.sqlite"

    def agent_root(self, agent: str) -> Path:
        return self.state / "agents" / validate_agent_name(agent)

    def agent_state_dir(self, agent: str) -> Path:
        """Bound to ``/state``: notes, events.sqlite, agent.json, status.json."""
        return self.agent_root(agent) / "state"

    def agent_claude_dir(self, agent: str) -> Path:
        """Bound to ``/root/.claude``: the agent's credentials and sessions."""
        return self.agent_root(agent) / "claude"

    def agent_pidfile(self, agent: str) -> Path:
        return self.agent_root(agent) / "pid"

    def flake_dir(self, agent: str) -> Path:
        return self.state / "flakes" / validate_agent_name(agent)


def resolve_paths(
    home: str | os.PathLike[str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> Paths:
    """Client-side resolution: ``--home``, else ``--run-dir``/``--state-dir``,
    else ``$HYPERHIVE_HOME``, else ``./.hive`` when it exists, else the system default."""
    if home is not None:
        return Paths.from_home(Path(home))
    if run_dir is not None or state_dir is not None:
        return Paths(
            run=Path(run_dir).absolute() if run_dir else SYSTEM_RUN,
            state=Path(state_dir).absolute() if state_dir else SYSTEM_STATE,
        )
    env_home = os.environ.get("HYPERHIVE_HOME")
    if env_home:
        return Paths.from_home(Path(env_home))
    if DEFAULT_HOME.is_dir():
        return Paths.from_home(DEFAULT_HOME)
    return Paths.system()
