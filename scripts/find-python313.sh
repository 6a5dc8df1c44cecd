#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter, the function's runtime.
# Looks at $PYTHON313, then python3.13 on PATH, then pyenv's versions folder.
set -euo pipefail

is_python313() {
  [[ -x "$1" ]] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null
}

if [[ -n "${PYTHON313:-}" ]]; then
  if is_python313 "$PYTHON313"; then
    echo "$PYTHON313"
    exit 0
  fi
  echo "PYTHON313='$PYTHON313' is not a Python 3.13 interpreter: unset it or point it at one." >&2
  exit 1
fi

candidate=$(command -v python3.13 || true)
if [[ -n "$candidate" ]] && is_python313 "$candidate"; then
  echo "$candidate"
  exit 0
fi

pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for candidate in $(ls -d "$pyenv_root"/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V -r); do
  if is_python313 "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done

echo "Python 3.13 not found on PATH or in $pyenv_root/versions." >&2
echo "Install it (for example 'pyenv install 3.13') or set PYTHON313=/path/to/python3.13." >&2
exit 1
