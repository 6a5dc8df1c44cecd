#!/usr/bin/env bash
# Run the static gates on template.yaml with the pinned tools in .venv:
#   1. tool versions  - the installed gate tools match the pins in requirements.txt
#   2. cfn-lint       - with the cfn-lint-serverless rules (.cfnlintrc), no error or warning
#   3. sam validate   - `sam validate --lint`
#   4. checkov        - zero failed checks (.checkov.yaml), skips only in resource Metadata
# Prints a line when each gate starts and one with its result, and shows a failing gate's
# output. Every gate runs even after a failure. The exit status is 1 if any gate failed.
# Contacts no network service: SAM CLI telemetry and checkov's downloads are off, and the
# AWS credentials are dummies that real AWS rejects.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_bin="$repo_root/.venv/bin"
cd "$repo_root"

if [[ ! -x "$venv_bin/python" ]]; then
  echo "lint-template: $venv_bin/python not found: create the virtual environment with 'make venv'" >&2
  exit 2
fi

export PATH="$venv_bin:$PATH"
export SAM_CLI_TELEMETRY=0
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_PROFILE
# checkov: no PyPI update check and no download of Prisma Cloud mappings.
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE

failed_gates=()

run_gate() {
  local name="$1"
  shift
  echo "gate $name: running"
  local output status
  output="$("$@" 2>&1)"
  status=$?
  if [[ $status -eq 0 ]]; then
    echo "gate $name: passed"
  else
    printf '%s\n' "$output"
    echo "gate $name: FAILED (exit status $status)"
    failed_gates+=("$name")
  fi
}

check_tool_versions() {
  python - <<'PYTHON'
import re
import sys
from importlib.metadata import PackageNotFoundError, version

pins = {}
for line in open("requirements.txt", encoding="utf-8"):
    match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
    if match:
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)

mismatches = []
for tool in ("cfn-lint", "cfn-lint-serverless", "aws-sam-cli", "aws-sam-translator", "checkov"):
    pinned = pins.get(tool)
    try:
        installed = version(tool)
    except PackageNotFoundError:
        installed = None
    if pinned is None:
        mismatches.append(f"{tool} is not pinned in requirements.txt: add '{tool}==<version>'")
    elif installed != pinned:
        mismatches.append(f"{tool} {installed} is installed but requirements.txt pins {pinned}: run 'make venv'")
    else:
        print(f"{tool}=={installed}")
if mismatches:
    print("\n".join(mismatches))
    sys.exit(1)
PYTHON
}

run_gate "tool versions" check_tool_versions
run_gate "cfn-lint" cfn-lint --config-file .cfnlintrc --non-zero-exit-code warning
run_gate "sam validate --lint" sam validate --lint --template template.yaml
run_gate "checkov" checkov --config-file .checkov.yaml

if [[ ${#failed_gates[@]} -gt 0 ]]; then
  echo "lint-template: ${#failed_gates[@]} gate(s) failed: ${failed_gates[*]}"
  exit 1
fi
echo "lint-template: all gates passed"
