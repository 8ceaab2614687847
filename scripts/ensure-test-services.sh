#!/usr/bin/env bash
# Make sure the system programs that the test suite starts for itself are installed.
#
# The tests start their own throwaway servers (a PostgreSQL cluster in a temp dir, on a free
# loopback port), so all they need from the system is the binaries. This script installs the
# missing ones from Debian's packages and is run by `make test` before pytest; when everything
# is there already it does nothing and takes a few milliseconds.
#
# A package's postinst may start a system service (Debian's postgresql starts its "main"
# cluster on port 5432, its nginx a web server on port 80, when a service manager lets it). The
# tests never use those services, and a server left running would outlive the test run, so
# whatever an install here started is stopped again.
#
# Usage: scripts/ensure-test-services.sh   (as root, or with sudo available)
set -euo pipefail

note() { printf 'ensure-test-services: %s\n' "$*" >&2; }
die() { note "error: $*"; exit 1; }

APT_UPDATED=0
INSTALLED=()

# have BINARY: BINARY is a path (a glob is allowed: /usr/lib/postgresql/*/bin/pg_ctl) or the
# name of a command looked up on PATH.
have() {
    if [[ $1 == */* ]]; then
        compgen -G "$1" >/dev/null
    else
        command -v "$1" >/dev/null
    fi
}

# as_root COMMAND...: run COMMAND as root, through sudo when we are not root already.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "installing packages needs root (or sudo); as root, run: $*"
    fi
}

# ensure_package BINARY PACKAGE: install Debian's PACKAGE unless BINARY is there already.
ensure_package() {
    local binary=$1 package=$2 log
    have "$binary" && return 0
    command -v apt-get >/dev/null || die "$binary is missing and there is no apt-get: install $package"
    note "installing $package (for $binary) with apt-get; this takes a minute once"
    log=$(mktemp)
    # apt prints pages of progress; keep it for when something goes wrong.
    if [[ $APT_UPDATED -eq 0 ]]; then
        if ! as_root apt-get update -qq >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            die "apt-get update failed"
        fi
        APT_UPDATED=1
    fi
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        die "apt-get install $package failed"
    fi
    rm -f "$log"
    have "$binary" || die "installed $package but $binary is still missing"
    INSTALLED+=("$package")
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Debian's postgresql creates a "main" cluster and, where a service manager runs (systemd, or
# the sysv init script without a policy-rc.d that forbids it), starts it on 5432. Stop it: the
# tests start their own server, and nothing may be left running after them.
stop_system_postgresql() {
    local version cluster _rest
    if command -v pg_lsclusters >/dev/null; then
        while read -r version cluster _rest; do
            [[ $_rest == *online* ]] || continue
            note "stopping PostgreSQL cluster $version/$cluster that the package started"
            as_root pg_ctlcluster "$version" "$cluster" stop -m fast || true
        done < <(pg_lsclusters -h 2>/dev/null)
    fi
    if port_open 5432 && command -v service >/dev/null; then
        as_root service postgresql stop >/dev/null 2>&1 || true
    fi
    if port_open 5432; then
        die "something still listens on 127.0.0.1:5432 after installing postgresql; stop it"
    fi
}

# Debian's redis-server, like its postgresql, may start a system service (on 6379) when it is
# installed. The tests start their own; stop that one.
stop_system_redis() {
    if port_open 6379; then
        note "stopping the redis-server service that the package started"
        as_root service redis-server stop >/dev/null 2>&1 || true
    fi
    if port_open 6379 && command -v redis-cli >/dev/null; then
        redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
    fi
}

# Debian's nginx starts its default site on port 80 when it is installed and a service manager
# lets it. The deploy tests start their own nginx on a free loopback port; stop that one. Port 80
# is only an error when it was free before the install: then the package's server holds it.
stop_system_nginx() {
    local waited
    if command -v service >/dev/null; then
        as_root service nginx stop >/dev/null 2>&1 || true
    fi
    # Without a service manager, the package's server is the one /run/nginx.pid names.
    if [[ -s /run/nginx.pid ]]; then
        note "stopping the nginx that the package started"
        as_root /usr/sbin/nginx -s quit >/dev/null 2>&1 || true
    fi
    # `nginx -s quit` only asks; the workers finish and the port closes a moment later.
    for ((waited = 0; waited < 50; waited++)); do
        port_open 80 || return 0
        [[ $PORT_80_WAS_OPEN -eq 1 ]] && return 0
        sleep 0.1
    done
    die "something still listens on 127.0.0.1:80 after installing nginx; stop it"
}

main() {
    ensure_package '/usr/lib/postgresql/*/bin/pg_ctl' postgresql
    ensure_package redis-server redis-server
    # The web page's tests drive Debian's Chromium with Playwright (never its own browser build).
    ensure_package chromium chromium
    # The page's Chinese test shows Chinese text in its screenshots: a font that has it.
    ensure_package /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc fonts-noto-cjk
    # tests/deploy puts Debian's nginx in front of replicas; /usr/sbin is not on every PATH.
    PORT_80_WAS_OPEN=0
    if port_open 80; then
        PORT_80_WAS_OPEN=1
    fi
    ensure_package /usr/sbin/nginx nginx

    local package
    for package in "${INSTALLED[@]}"; do
        case $package in
            postgresql) stop_system_postgresql ;;
            redis-server) stop_system_redis ;;
            nginx) stop_system_nginx ;;
        esac
    done
}

# Sourcing the file (to try a function by hand) defines the functions without running main.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
