#!/usr/bin/env bash
# Installs what the end-to-end tests need, if it is missing:
#   prometheus, prometheus-pushgateway — Debian's packages (tests start their own on loopback;
#   the backtest and tune tests backfill history with the package's promtool)
#   moto[server] — the Route 53 emulator, from PyPI
# Safe to run again; does nothing when everything is there. Needs root (or sudo) for apt.
set -euo pipefail

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# promtool (the same package) backfills history for the backtest and tune tests.
command -v promtool >/dev/null 2>&1 || [[ " ${need_apt[*]} " == *" prometheus "* ]] || need_apt+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || need_apt+=(prometheus-pushgateway)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_apt[*]} from Debian's packages" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# --- issue 17: image and report tools -------------------------------------------------
#   buildah, ca-certificates — deploy/build-image.sh (tests/tests/image_e2e.rs)
#   librsvg2-bin (rsvg-convert) — renders the report's chart.svg to PNG in a test
need_img=()
command -v buildah >/dev/null 2>&1 || need_img+=(buildah)
command -v rsvg-convert >/dev/null 2>&1 || need_img+=(librsvg2-bin)
[ -r /etc/ssl/certs/ca-certificates.crt ] || need_img+=(ca-certificates)
if [ ${#need_img[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_img[*]} from Debian's packages" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_img[@]}" >/dev/null
fi
# --- end issue 17 ----------------------------------------------------------------------

# Debian starts no server for us here; the tests start their own. Stop a packaged one if
# the package's postinst started it, so it does not hold port 9090.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus prometheus-pushgateway >/dev/null 2>&1 || true; fi

if [ "${CUTOVER_SETUP_SKIP_MOTO:-}" != "1" ] && ! python3 -c "import moto.server" >/dev/null 2>&1; then
  echo "setup: installing moto[server] from PyPI" >&2
  python3 -m pip install -q 'moto[server]>=5,<6' >/dev/null
fi
echo "setup: prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), moto $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo absent)" >&2

# --- issue 15: readiness checks (begin) ------------------------------------------------
# PostgreSQL from Debian's packages for tests/tests/readiness_e2e.rs: the harness
# (tests/src/postgres.rs) runs initdb/pg_ctl from /usr/lib/postgresql/*/bin as the
# `postgres` user on loopback ports; no packaged cluster is needed, so stop any it started.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! id postgres >/dev/null 2>&1 || ! command -v runuser >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing postgresql from Debian's packages" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql util-linux >/dev/null
  if command -v systemctl >/dev/null 2>&1; then systemctl stop postgresql >/dev/null 2>&1 || true; fi
fi
# --- issue 15: readiness checks (end) --------------------------------------------------
