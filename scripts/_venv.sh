# Sourced by scripts/demo and scripts/test: creates .venv if needed and installs tracklog into it,
# editable, with the extras given as $1 (e.g. "[test]") and the versions pinned in constraints.txt.
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".${1:-}"
# Put the source roots on sys.path as plain entries: setuptools' editable finder ranks below a
# `tracklog/` folder of run directories in the working directory, which Python would otherwise
# import as an empty namespace package.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n' "$PWD/client" "$PWD/daemon" "$PWD/server" > "$site/tracklog-sources.pth"
