#!/usr/bin/env python3
"""Checks the workspace's manifests (run by scripts/test-all.sh).

- Every member inherits the workspace's rust-version
  (`rust-version.workspace = true`) and lints (`[lints] workspace = true`).
- cargo agrees: every member's rust_version (cargo metadata) is the
  workspace's.
- No package in the build graph (for this host) declares a rust-version newer than the
  workspace's (a dependency update that raises it must raise ours).

Which Rust API items the code may use is checked by clippy's
incompatible_msrv lint, which reads the same rust-version (clippy runs with
-D warnings in test-all.sh). Language features are not checked: only one
toolchain is installed here.
"""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ws = tomllib.loads((root / "Cargo.toml").read_text())
want = ws["workspace"]["package"]["rust-version"]
problems = []
for member in ws["workspace"]["members"]:
    m = tomllib.loads((root / member / "Cargo.toml").read_text())
    if m.get("package", {}).get("rust-version") != {"workspace": True}:
        problems.append(f"{member}/Cargo.toml: rust-version is not `rust-version.workspace = true`")
    if m.get("lints") != {"workspace": True}:
        problems.append(f"{member}/Cargo.toml: lints are not `[lints] workspace = true`")

host = next(l.split()[1] for l in subprocess.run(
    ["rustc", "-vV"], check=True, capture_output=True, text=True).stdout.splitlines() if l.startswith("host:"))
meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--filter-platform", host],
    cwd=root, check=True, capture_output=True, text=True).stdout)
members = set(meta["workspace_members"])
in_graph = {n["id"] for n in meta["resolve"]["nodes"]}
version = lambda v: tuple(int(x) for x in v.split("."))
for p in meta["packages"]:
    rv = p.get("rust_version")
    if p["id"] in members and rv != want and version(rv or "0") != version(want):
        problems.append(f"{p['name']}: cargo metadata says rust_version {rv}, the workspace says {want}")
    elif p["id"] in in_graph and rv and version(rv) > version(want):
        problems.append(f"dependency {p['name']} {p['version']} needs Rust {rv}, newer than the workspace's {want}")

for line in problems:
    print(f"check-manifests: {line}")
print(f"check-manifests: {len(members)} crates, rust-version {want}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
sys.exit(1 if problems else 0)
