#!/bin/bash
# Run berth's whole test suite (sets up first; needs root for the end-to-end tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check berth tests bench
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
