#!/usr/bin/env bash
# Lint gate: shellcheck over every shell script of the repo, the Python
# compiled (and checked by pyflakes when the linting python has it), the
# tests of scripts/modgraph.py and the module graph of src/ (every level),
# then formatting and clippy with every warning denied. Needs shellcheck (Debian package
# `shellcheck`; .ci/run installs it). CCCI_DEV_LINT_PYTHON names the python to
# use (.ci/run's venv, which has pyflakes); python3 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

py="${CCCI_DEV_LINT_PYTHON:-python3}"

# Every tracked or new (not ignored) file that is shell or Python, by its
# extension or its #! line. Symlinks are linted at their target.
shell_files=()
py_files=()
while IFS= read -r -d '' f; do
	if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
	case "$f" in
	*.sh) shell_files+=("$f") ;;
	*.py) py_files+=("$f") ;;
	*)
		IFS= read -r first <"$f" || true
		case "$first" in
		'#!'*python*) py_files+=("$f") ;;
		'#!'*/sh | '#!'*/bash | '#!'*' sh' | '#!'*' bash' | '#!'*/sh' '* | '#!'*/bash' '*) shell_files+=("$f") ;;
		esac
		;;
	esac
done < <(git ls-files -z --cached --others --exclude-standard)

echo "== shellcheck (${#shell_files[@]} scripts)"
if ! command -v shellcheck >/dev/null 2>&1; then
	echo "lint: shellcheck is not installed (Debian package shellcheck)" >&2
	exit 1
fi
# -x with SCRIPTDIR: a sourced file (examples/recipe/tests/knobs.inc) is
# checked as part of the script that sources it.
shellcheck -x --source-path=SCRIPTDIR "${shell_files[@]}"

echo "== python (${#py_files[@]} files)"
# Compiled into a throw-away cache, so no __pycache__ lands in the tree.
pycache=$(mktemp -d "${TMPDIR:-/tmp}/ccci-lint-pycache.XXXXXX")
trap 'rm -rf "$pycache"' EXIT
PYTHONPYCACHEPREFIX="$pycache" "$py" -m py_compile "${py_files[@]}"
if "$py" -m pyflakes --version >/dev/null 2>&1; then
	"$py" -m pyflakes "${py_files[@]}"
else
	echo "pyflakes is not installed for $py: compiled only (.ci/run's venv has it)"
fi
PYTHONPYCACHEPREFIX="$pycache" "$py" scripts/test_modgraph.py

echo "== module graph of src/"
# Imports between the modules of src/ flow one way, at every level of
# folders: a circle fails the gate, naming the lines that close it.
PYTHONPYCACHEPREFIX="$pycache" "$py" scripts/modgraph.py --check

echo "== rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --all-targets --all-features -- -D warnings
