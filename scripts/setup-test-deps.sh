#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent and quick when
# everything is already there.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[[ -x /usr/lib/ocf/resource.d/heartbeat/Dummy ]] || need+=(resource-agents)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
[[ -x /bin/busybox ]] && /bin/busybox --list 2>/dev/null | grep -qx httpd || need+=(busybox-static)
# A real fence agent (fence_dummy, file mode) for the STONITH protocol test (tests/fencing.rs).
[[ -x /usr/sbin/fence_dummy ]] || need+=(fence-agents)
# PostgreSQL 15 and xmllint (the pgsql and galera agents parse crm_mon's XML with it), for
# the replicated-database tests (tests/postgres.rs).
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || need+=(postgresql-15)
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# MariaDB with Galera (rsync for its state transfers), for tests/galera.rs.
[[ -x /usr/sbin/mariadbd ]] || need+=(mariadb-server)
[[ -f /usr/lib/galera/libgalera_smm.so ]] || need+=(galera-4)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
# Headless Chromium and its WebDriver, for the dashboard test (tests/dashboard.rs).
[[ -x /usr/bin/chromium ]] || need+=(chromium)
[[ -x /usr/bin/chromedriver ]] || need+=(chromium-driver)
# HAProxy (its Runtime API on an admin socket) and Alertmanager, for the zones tests (issue 19).
[[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
[[ -x /usr/bin/prometheus-alertmanager ]] || need+=(prometheus-alertmanager)
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup-test-deps: missing ${need[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "setup-test-deps: installing ${need[*]}"
  # Packaged services (haproxy, alertmanager, mariadb...) are not started on install: the
  # tests start their own, on their own addresses.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  # Never remove what the machine has: ask apt first. When it would (e.g. qemu-system-x86
  # from the stable release replacing a newer qemu-utils from backports), take the packages
  # from backports too, so that the versions coexist; refuse if even that would remove any.
  removes() { apt-get -s install --no-install-recommends "$@" | awk '/^Remv/ {print $2}' | xargs; }
  release=()
  gone=$(removes "${need[@]}")
  if [[ -n $gone ]]; then
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    if ! grep -rqs "$codename-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb http://deb.debian.org/debian $codename-backports main" >/etc/apt/sources.list.d/buoy-test-backports.list
      apt-get update -qq
    fi
    release=(-t "$codename-backports")
    gone=$(removes "${release[@]}" "${need[@]}")
    if [[ -n $gone ]]; then
      echo "setup-test-deps: installing ${need[*]} would remove $gone; install versions that coexist by hand" >&2
      exit 1
    fi
    echo "setup-test-deps: taking ${need[*]} from $codename-backports (the stable versions would remove installed packages)"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${release[@]}" "${need[@]}"
fi
# The real OpenStack client, for the Masakari-compatibility test (tests/masakari.rs).
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/masakari-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import openstack, masakariclient" 2>/dev/null; then
  echo "setup-test-deps: installing python-masakariclient into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "python-masakariclient==8.9.0" "openstacksdk==4.22.0"
fi
# Schemathesis, the API fuzzer (tests/api_fuzz.rs), in a venv of its own.
st_venv="$root/target/schemathesis-venv"
if [[ ! -x "$st_venv/bin/st" ]]; then
  echo "setup-test-deps: installing schemathesis into $st_venv"
  python3 -m venv "$st_venv"
  "$st_venv/bin/pip" install -q --disable-pip-version-check "schemathesis==4.32.5"
fi
# The tiny QEMU guest the qemu-driver tests boot.
"$root/scripts/build-test-guest.sh"
echo "setup-test-deps: ok"
