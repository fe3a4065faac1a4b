#!/bin/sh
# Make a Docker daemon and the Docker tests' images available, for `make test` and CI.
#
#   scripts/docker-up.sh
#
# 1. Installs Debian's docker.io and debootstrap when they are missing (root only).
# 2. Uses a daemon that already answers (DOCKER_HOST, the system socket, or the one this script
#    started before); otherwise starts dockerd with its own socket, pid file and data under
#    POLYHOST_DOCKER_ROOT and POLYHOST_DOCKER_RUN, without a bridge network or iptables
#    rules: the tests' containers use the host's network on loopback ports.
# 3. Builds the base image once (debootstrap + docker import; no registry is needed) unless
#    POLYHOST_TEST_BASE_IMAGE names one the daemon already has.
# 4. Builds polyhost/sklearn and the tests' own images (Docker's layer cache makes a second run
#    rebuild nothing), and writes build/docker-test.env for the tests.
#
# Where no daemon can be had it says why and exits 0: the Docker tests are then skipped, each
# with that reason. Every value below is fixed or comes from the environment of the caller;
# none is spliced into a shell string.
set -eu

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
DATA_ROOT="${POLYHOST_DOCKER_ROOT:-/var/lib/polyhost/docker}"
RUN_DIR="${POLYHOST_DOCKER_RUN:-/run/polyhost}"
OWN_SOCKET="unix://$RUN_DIR/docker.sock"
BASE_IMAGE="${POLYHOST_TEST_BASE_IMAGE:-polyhost-base:bookworm}"
DEBIAN_MIRROR="${POLYHOST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ENV_FILE="build/docker-test.env"

say() { echo "docker-up: $*"; }
give_up() {
    say "$*"
    say "the Docker tests will be skipped"
    rm -f "$ENV_FILE"
    exit 0
}
is_root() { [ "$(id -u)" = 0 ]; }
answers() { DOCKER_HOST="$1" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# -- 1. packages ------------------------------------------------------------------------------
missing=""
command -v docker >/dev/null 2>&1 || missing="$missing docker.io"
command -v dockerd >/dev/null 2>&1 || case "$missing" in *docker.io*) ;; *) missing="$missing docker.io" ;; esac
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        say "installing$missing"
        # shellcheck disable=SC2086  # $missing is this script's own list of package names
        apt-get install -y -q $missing >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $missing >/dev/null; } ||
            give_up "could not install$missing"
    else
        command -v docker >/dev/null 2>&1 ||
            give_up "docker is not installed (as root: apt-get install docker.io debootstrap)"
    fi
fi

# -- 2. a daemon ------------------------------------------------------------------------------
host=""
for candidate in "${DOCKER_HOST:-}" "unix:///var/run/docker.sock" "$OWN_SOCKET"; do
    if [ -n "$candidate" ] && answers "$candidate"; then
        host="$candidate"
        break
    fi
done
if [ -z "$host" ]; then
    is_root || give_up "no Docker daemon answers, and only root can start one here"
    command -v dockerd >/dev/null 2>&1 || give_up "dockerd is not installed"
    mkdir -p "$DATA_ROOT" "$RUN_DIR"
    say "starting dockerd (data in $DATA_ROOT, socket $OWN_SOCKET)"
    # Its own containerd, exec root and pid file; no bridge, no iptables: host networking only.
    setsid dockerd \
        --bridge=none --iptables=false --ip6tables=false \
        --data-root "$DATA_ROOT" \
        --exec-root "$RUN_DIR/exec" \
        --pidfile "$RUN_DIR/dockerd.pid" \
        --host "$OWN_SOCKET" \
        </dev/null >"$RUN_DIR/dockerd.log" 2>&1 &
    tries=0
    until answers "$OWN_SOCKET"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 120 ]; then
            tail -n 20 "$RUN_DIR/dockerd.log" >&2 || true
            give_up "dockerd did not answer within 60 s (its log: $RUN_DIR/dockerd.log)"
        fi
        sleep 0.5
    done
    host="$OWN_SOCKET"
fi
export DOCKER_HOST="$host"
say "daemon at $DOCKER_HOST (server $(docker version --format '{{.Server.Version}}'))"

# -- 3. the base image ------------------------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    [ "$BASE_IMAGE" = "polyhost-base:bookworm" ] ||
        give_up "base image $BASE_IMAGE is not on the daemon"
    is_root || give_up "building the base image needs root (debootstrap)"
    command -v debootstrap >/dev/null 2>&1 || give_up "debootstrap is not installed"
    root="$(mktemp -d)"
    say "building $BASE_IMAGE with debootstrap (about 30 s, once)"
    if ! debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1; then
        tail -n 20 "$root.log" >&2 || true
        rm -rf "$root" "$root.log"
        give_up "debootstrap failed"
    fi
    tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$root" "$root.log"
fi

mkdir -p build
{
    echo "DOCKER_HOST=$DOCKER_HOST"
    echo "POLYHOST_TEST_BASE_IMAGE=$BASE_IMAGE"
} >"$ENV_FILE"

# -- 4. the tests' images ---------------------------------------------------------------------
if ! "$PYTHON" -c "import docker" >/dev/null 2>&1; then
    say "the Docker SDK is not installed in $PYTHON (pip install 'polyhost[docker]')"
    say "the Docker tests will be skipped"
    exit 0
fi
say "building polyhost/sklearn and the tests' images (cached after the first run)"
log="build/docker-images.log"
if POLYHOST_TEST_BASE_IMAGE="$BASE_IMAGE" "$PYTHON" -m tests.support.docker_images >"$log" 2>&1; then
    say "images ready (build log: $log)"
else
    tail -n 30 "$log" >&2 || true
    say "building the images failed (build log: $log); the Docker tests will say so"
fi
