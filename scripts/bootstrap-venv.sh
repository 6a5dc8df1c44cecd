#!/usr/bin/env bash
# Create .venv with Python 3.13 and install the pinned requirements and pgserver.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
python313=$(scripts/find-python313.sh)

if [[ ! -x "$venv/bin/python3.13" ]]; then
  echo "venv: creating $venv with $python313"
  "$python313" -m venv "$venv"
fi

echo "venv: installing requirements.txt (first run takes a few minutes)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt

# pgserver 0.1.4 publishes wheels tagged cp311/cp312 only, although its one compiled
# module is built for the stable ABI (_postgresql.abi3.so) and the PostgreSQL binaries
# inside do not depend on Python. Unpack the wheel beside site-packages and add it
# with a .pth file; its dependencies come from requirements.txt.
pgserver_dir="$venv/pgserver"
if [[ ! -d "$pgserver_dir/pgserver" ]]; then
  echo "venv: installing pgserver 0.1.4 (embedded PostgreSQL 16)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version 3.11 --target "$pgserver_dir" pgserver==0.1.4
fi
site_packages=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$(cd "$pgserver_dir" && pwd)" > "$site_packages/pgserver-wheel.pth"

"$venv/bin/python" -c 'import pgserver, pg8000, moto, aws_lambda_powertools' \
  || { echo "venv: the installed packages do not import; delete $venv and run 'make venv' again." >&2; exit 1; }
echo "venv: ready"
