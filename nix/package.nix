# The hyperhive Python application, built from nixpkgs' Python packages.
#
# `rev` is baked into the installed package as hyperhive/reconciler/BUILD_REV:
# hive-c0re's hyperhive_rev() reads it first, and the per-agent flakes record
# it, so auto_update can tell a container built from an older hyperhive.
{
  lib,
  python3Packages,
  rev ? "unknown",
}:

let
  fs = lib.fileset;
  root = ../.;
in
python3Packages.buildPythonApplication {
  pname = "hyperhive";
  version = "0.1.0";
  pyproject = true;

  # Only what setuptools packages: editing tests or docs does not rebuild.
  src = fs.toSource {
    inherit root;
    fileset = fs.unions [
      ../pyproject.toml
      ../README.md
      ../hyperhive
      ../broker
      ../reconciler
      ../harness
      ../desired-state
    ];
  };

  build-system = [ python3Packages.setuptools ];

  dependencies =
    with python3Packages;
    [
      pyyaml
      watchfiles
      pygit2
      starlette
      uvicorn
      aiosqlite
      mcp
      jsonschema
      httpx
      sse-starlette
      python-multipart
    ]
    # uvicorn[standard]: uvloop, httptools, websockets, watchfiles, …
    ++ uvicorn.optional-dependencies.standard;

  # The rev goes through escapeShellArg: it is data, never shell source.
  postInstall = ''
    printf '%s' ${lib.escapeShellArg rev} \
      > "$out/${python3Packages.python.sitePackages}/hyperhive/reconciler/BUILD_REV"
  '';

  # The suite needs bwrap, claude and a writable /run; it runs in CI, not here.
  doCheck = false;
  pythonImportsCheck = [
    "hyperhive"
    "hyperhive.reconciler"
  ];

  passthru = { inherit rev; };

  meta = {
    description = "Many Claude Code agents in isolated containers, declared in git, converged by a reconcile loop";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "hive-c0re";
  };
}
