#!/usr/bin/env bash
# scripts/check-compose.sh [FILE]: validate docker/docker-compose.yml without
# a Docker engine.  Debian 12's docker-compose (1.29, the Python one) checks
# the file against the Compose schema and resolves it (`config` needs no
# daemon); then the resolved file is checked for what the schema allows but
# p2pay's setup must not do:
#   - a secret a service names that the file does not declare (not checked
#     by docker-compose config);
#   - an image that is not pinned (an exact version tag, or a digest), or an
#     image tag that two services build;
#   - a password in an environment value or a command (a DSN's password=):
#     passwords come from secrets;
#   - --create-slot in a command: slots are made with the data directory,
#     and a service that creates one at start replaces a dropped slot at the
#     current position, silently skipping events.
# make test runs it as a suite; exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-docker/docker-compose.yml}

resolved=$(mktemp)
trap 'rm -f "$resolved"' EXIT
docker-compose -f "$file" config > "$resolved"
python3 - "$file" "$resolved" <<'PY'
import re, sys, yaml

name = sys.argv[1]
with open(sys.argv[2]) as f:
    doc = yaml.safe_load(f)
services = doc.get("services", {})
declared = set((doc.get("secrets") or {}).keys())
problems = []

built = {}
for svc, conf in services.items():
    image = conf.get("image")
    if image is None:
        problems.append(f"{svc}: no image name (give built images a tag)")
        continue
    if conf.get("build") is not None:
        built.setdefault(image, []).append(svc)
    if not re.search(r"@sha256:[0-9a-f]{64}$|:[^:/@]*[0-9]+\.[0-9]+[^:/@]*$", image):
        problems.append(f"{svc}: image {image} is not pinned to an exact version or digest")
    for s in conf.get("secrets") or []:
        s = s["source"] if isinstance(s, dict) else s
        if s not in declared:
            problems.append(f"{svc}: secret {s} is not declared under secrets:")
    env = conf.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    for key, value in env.items():
        if re.search(r"password\s*=", str(value or ""), re.I) or (
                re.search(r"PASSWORD$", key) and value):
            problems.append(f"{svc}: a password in environment variable {key}")
    command = conf.get("command") or []
    if isinstance(command, str):
        command = command.split()
    for arg in command:
        if re.search(r"password\s*=", arg, re.I):
            problems.append(f"{svc}: a password on the command line")
        if arg == "--create-slot":
            problems.append(f"{svc}: --create-slot in a long-running service's command")
for image, svcs in built.items():
    if len(svcs) > 1:
        problems.append(f"image {image} is built by {len(svcs)} services ({', '.join(svcs)}): build it once")

for p in problems:
    print(f"{name}: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"{name}: valid; {len(services)} services, images pinned, secrets declared, no passwords, no --create-slot")
PY
