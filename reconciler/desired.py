"""Read the desired state: one commit of the applied repo, validated into ``Desired``.

The loader reads git objects through pygit2, never the work tree, so what
c0re converges to is exactly a commit (an operator's half-edited file is not
desired state). Every ``<name>/agent.yaml`` is checked by the JSON Schema
and by the semantic rules of DESIGN §3; an invalid agent becomes an
:class:`InvalidAgent` naming the file and field, and the valid ones keep
converging. Validation results are cached by the folder's tree id: that is a
pure function of content, so the cache never decides anything on its own.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import pygit2
import yaml

from hyperhive.names import MANAGER_AGENT, RESERVED_NAMES, is_agent_name, preferred_web_port
from hyperhive.reconciler.runtimes.base import Desired, Role

MAX_YAML_BYTES = 64 * 1024
MAX_NIX_BYTES = 256 * 1024
MAX_FOLDER_BYTES = 1024 * 1024
MAX_FOLDER_FILES = 64
PORT_LOW, PORT_HIGH = 8100, 8999
LINK_MODE = pygit2.enums.FileMode.LINK
COMMIT_MODE = pygit2.enums.FileMode.COMMIT


@dataclass(frozen=True)
class InvalidAgent:
    """An agent folder that fails validation: the condition message names file and field."""

    name: str
    path: str
    message: str


@dataclass(frozen=True)
class AgentSource:
    """A validated agent before port assignment (ports depend on the other agents)."""

    name: str
    role: Role
    spec: Mapping[str, Any]
    agent_nix: str | None
    config_hash: str


@dataclass
class DesiredState:
    """Everything one commit declares."""

    commit: str
    agents: dict[str, Desired] = field(default_factory=dict)
    invalid: dict[str, InvalidAgent] = field(default_factory=dict)
    #: Problems that belong to no valid agent name (stray files, hostile folder names).
    problems: list[str] = field(default_factory=list)


#: libyaml when present (the no-op pass never parses, but a cold start parses every file).
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _safe_load(text: str) -> Any:
    """safe_load without anchors/aliases: a 64 KiB alias bomb must not eat the host."""
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases are not allowed",
                event.start_mark,  # type: ignore[arg-type]  # libyaml's Mark has the same fields
            )
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader


@cache
def schema_validator() -> jsonschema.protocols.Validator:
    text = resources.files("hyperhive.desired_state").joinpath("agent.schema.json").read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def default_manager_yaml() -> bytes:
    """The packaged default hm1nd agent.yaml."""
    return resources.files("hyperhive.desired_state").joinpath("hm1nd/agent.yaml").read_bytes()


class SpecError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def parse_agent_yaml(name: str, raw: bytes, path: str) -> tuple[Role, dict[str, Any]]:
    """Parse and validate one agent.yaml; return its role and spec (defaults filled in)."""
    if len(raw) > MAX_YAML_BYTES:
        raise SpecError(path, f"{path}: file is {len(raw)} bytes, limit {MAX_YAML_BYTES}")
    if b"\0" in raw:
        raise SpecError(path, f"{path}: contains a NUL byte")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(path, f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from e
    try:
        doc = _safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(path, f"{path}:{where} invalid YAML: {problem}") from e
    err = jsonschema.exceptions.best_match(schema_validator().iter_errors(doc))
    if err is not None:
        fields = [str(p) for p in err.absolute_path]
        if err.validator == "required" and isinstance(err.instance, dict):
            missing = [k for k in err.validator_value if k not in err.instance]
            fields += missing[:1]
        where = ".".join(fields) or "(document)"
        raise SpecError(path, f"{path}: field {where}: {err.message}")
    nul = _find_nul(doc, "")
    if nul is not None:
        raise SpecError(path, f"{path}: field {nul or '(document)'}: contains a NUL character")
    meta_name = doc["metadata"]["name"]
    if meta_name != name:
        raise SpecError(
            path, f"{path}: field metadata.name: {meta_name!r} differs from folder {name!r}"
        )
    spec = dict(doc["spec"])
    spec.setdefault("role", "agent")
    spec.setdefault("state", "running")
    role: Role = spec["role"]
    if role == "manager" and name != MANAGER_AGENT:
        raise SpecError(path, f"{path}: field spec.role: only {MANAGER_AGENT} may be manager")
    if name == MANAGER_AGENT and role != "manager":
        raise SpecError(path, f"{path}: field spec.role: {MANAGER_AGENT} must be manager")
    return role, spec


def _find_nul(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if "\0" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{where}.{k}" if where else str(k)
            if "\0" in str(k):
                return sub
            found = _find_nul(v, sub)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_nul(v, f"{where}.{i}")
            if found is not None:
                return found
    return None


def config_hash(spec: Mapping[str, Any], agent_nix: str | None) -> str:
    """sha256 over the canonical spec JSON and agent.nix: what Update compares."""
    h = hashlib.sha256()
    h.update(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0")
    h.update((agent_nix or "").encode())
    return h.hexdigest()


def _walk(
    repo: pygit2.Repository, tree: pygit2.Tree, prefix: str
) -> Iterator[tuple[str, int, Any]]:
    for entry in tree:
        path = f"{prefix}/{entry.name}"
        yield path, entry.filemode, entry.id
        if entry.type_str == "tree":
            yield from _walk(repo, repo[entry.id].peel(pygit2.Tree), path)


def load_folder(repo: pygit2.Repository, name: str, tree: pygit2.Tree) -> AgentSource:
    """Validate one agent folder; raise :class:`SpecError` naming the file and field."""
    total = 0
    yaml_raw: bytes | None = None
    nix_raw: bytes | None = None
    for count, (path, mode, oid) in enumerate(_walk(repo, tree, name), start=1):
        if count > MAX_FOLDER_FILES:
            raise SpecError(name, f"{name}/: more than {MAX_FOLDER_FILES} entries")
        if mode == LINK_MODE:
            raise SpecError(path, f"{path}: symlinks are not allowed")
        if mode == COMMIT_MODE:
            raise SpecError(path, f"{path}: submodules are not allowed")
        obj = repo[oid]
        if isinstance(obj, pygit2.Blob):
            total += obj.size
            if total > MAX_FOLDER_BYTES:
                raise SpecError(path, f"{name}/: folder larger than {MAX_FOLDER_BYTES} bytes")
            if path == f"{name}/agent.yaml":
                yaml_raw = obj.data
            elif path == f"{name}/agent.nix":
                if obj.size > MAX_NIX_BYTES:
                    raise SpecError(path, f"{path}: {obj.size} bytes, limit {MAX_NIX_BYTES}")
                nix_raw = obj.data
    if yaml_raw is None:
        raise SpecError(f"{name}/agent.yaml", f"{name}/agent.yaml: missing")
    role, spec = parse_agent_yaml(name, yaml_raw, f"{name}/agent.yaml")
    agent_nix: str | None = None
    if nix_raw is not None:
        path = f"{name}/agent.nix"
        if b"\0" in nix_raw:
            raise SpecError(path, f"{path}: contains a NUL byte")
        try:
            agent_nix = nix_raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpecError(path, f"{path}: not UTF-8") from e
    return AgentSource(name, role, spec, agent_nix, config_hash(spec, agent_nix))


_PortsMemo = tuple[tuple[str, ...], tuple[tuple[str, int], ...], dict[str, int]]


class DesiredLoader:
    """Loads commits of one repo, caching validated folders by tree id."""

    def __init__(self, repo: pygit2.Repository, hyperhive_rev: str) -> None:
        self.repo = repo
        self.hyperhive_rev = hyperhive_rev
        self._cache: dict[str, AgentSource | InvalidAgent] = {}
        self._ports: tuple[tuple[str, ...], tuple[tuple[str, int], ...], dict[str, int]] | None = (
            None
        )

    def load(
        self,
        commit: str | None,
        *,
        previous_ports: Mapping[str, int] | None = None,
        port_in_use: Callable[[int], bool] | None = None,
    ) -> DesiredState:
        """Validate every agent of ``commit`` (None = an empty repo) and assign web ports."""
        state = DesiredState(commit=commit or "")
        if commit is None:
            return state
        obj = self.repo[commit].peel(pygit2.Commit)
        sources: dict[str, AgentSource] = {}
        seen: dict[str, AgentSource | InvalidAgent] = {}
        for entry in obj.tree:
            shown = entry.name if entry.name is not None else "?"
            if entry.type_str != "tree":
                kind = "symlink" if entry.filemode == LINK_MODE else "file"
                state.problems.append(f"{shown}: a {kind} outside any agent folder")
                continue
            if not is_agent_name(entry.name):
                why = "reserved" if entry.name in RESERVED_NAMES else "not a valid agent name"
                state.problems.append(f"{shown!r}: folder name {why} (^[a-z][a-z0-9-]{{0,8}}$)")
                continue
            name = str(entry.name)
            key = f"{name}\0{entry.id}"
            result = self._cache.get(key)
            if result is None:
                sub = self.repo[entry.id].peel(pygit2.Tree)
                try:
                    result = load_folder(self.repo, name, sub)
                except SpecError as e:
                    result = InvalidAgent(name, e.path, e.message)
                self._cache[key] = result
            seen[key] = result
            if isinstance(result, InvalidAgent):
                state.invalid[name] = result
            else:
                sources[name] = result
        self._cache = seen  # keep only what HEAD holds, so the cache stays bounded
        ports = self._assign(sources, previous_ports or {}, port_in_use or port_is_taken)
        for name, src in sources.items():
            state.agents[name] = Desired(
                name=name,
                role=src.role,
                spec=src.spec,
                config_hash=src.config_hash,
                agent_nix=src.agent_nix,
                web_port=ports[name],
                hyperhive_rev=self.hyperhive_rev,
                commit=state.commit,
            )
        return state

    def _assign(
        self,
        sources: Mapping[str, object],
        previous: Mapping[str, int],
        in_use: Callable[[int], bool],
    ) -> dict[str, int]:
        """assign_ports, skipped when the agents and the ports they hold are unchanged."""
        key = (tuple(sorted(sources)), tuple(sorted(previous.items())))
        if self._ports is not None and self._ports[:2] == key:
            return self._ports[2]
        ports = assign_ports(sources, previous, in_use)
        # Next pass, ``previous`` (the status rows) holds exactly this assignment.
        self._ports = (key[0], tuple(sorted(ports.items())), ports)
        return ports


def port_is_taken(port: int) -> bool:
    """True when something on this host already listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def assign_ports(
    agents: Mapping[str, object],
    previous: Mapping[str, int],
    in_use: Callable[[int], bool],
) -> dict[str, int]:
    """DESIGN §10: hm1nd 8000; others ``8100 + fnv1a32 % 900``, probing upward and wrapping.

    An agent keeps the port it had (``previous``) while nobody else claims it, so
    adding an agent never moves another one's web UI.
    """
    out: dict[str, int] = {}
    held: set[int] = set()
    for name in sorted(agents):
        if name == MANAGER_AGENT:
            out[name] = preferred_web_port(name)
            continue
        port = previous.get(name)
        if port is not None and PORT_LOW <= port <= PORT_HIGH and port not in held:
            out[name] = port
            held.add(port)
    span = PORT_HIGH - PORT_LOW + 1
    for name in sorted(agents):
        if name in out:
            continue
        start = preferred_web_port(name) - PORT_LOW
        for i in range(span):
            port = PORT_LOW + (start + i) % span
            if port not in held and not in_use(port):
                break
        else:
            port = PORT_LOW + start  # every port taken: share, status will show the clash
        out[name] = port
        held.add(port)
    return out
