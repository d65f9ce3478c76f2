#!/usr/bin/env bash
# apt-install.sh PACKAGE...: installs the Debian packages that are not
# installed yet, with apt-get (refreshing the package lists once when a
# package is not found). CI runs as root on a fresh Debian machine; elsewhere,
# install the packages yourself.
#
# Exit status: 0 when every package is installed, 3 when this machine has no
# apt-get or this user cannot use it (the caller decides whether that is a
# skip), 1 when the install fails.
set -euo pipefail

log() { printf '[apt-install] %s\n' "$*" >&2; }

missing=()
for p in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get on this machine: install ${missing[*]} yourself"
  exit 3
fi
if [[ $(id -u) -ne 0 ]]; then
  log "${missing[*]} missing and not running as root: install them yourself (sudo apt-get install ${missing[*]})"
  exit 3
fi

# Wait for another apt or dpkg run instead of failing on its lock.
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
export DEBIAN_FRONTEND=noninteractive
log "installing ${missing[*]}"
if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2; then
  log "refreshing the package lists and trying again"
  "${apt[@]}" update >&2
  "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2
fi
