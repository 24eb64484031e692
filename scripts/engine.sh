#!/usr/bin/env bash
# Make sure a Docker Engine answers and the local images the examples and tests use exist.
#
#   scripts/engine.sh                 engine + busybox:local, gcc:local, golang:local,
#                                     debian-minimal:local
#   scripts/engine.sh gcc busybox     engine + only those images
#   scripts/engine.sh second-engine   engine + only the second engine's root filesystem
#   scripts/engine.sh podman          engine + Podman, with the local images its tests use
#   scripts/engine.sh rust            engine + only rust:local (not made by default: only
#                                     `cargo xtask bench` asks for it)
#
# No image registry is needed: images are made from Debian's packages and imported.
# When no engine answers and this runs as root on Debian, Debian's docker.io is installed and
# dockerd is started in the background (log: /var/log/dockerd.log). Existing images are kept.
# Debian's docker-registry is installed too, for the tests that pull from a local registry.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

tmpdirs=()
cleanup() { [ ${#tmpdirs[@]} -eq 0 ] || rm -rf "${tmpdirs[@]}"; }
trap cleanup EXIT

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

apt_install() {
    [ "$(id -u)" = 0 ] || die "need root to install $* (or install them yourself)"
    command -v apt-get >/dev/null || die "not a Debian system: install $* yourself"
    log "installing $* from Debian's packages"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
    fi
}

ensure_engine() {
    if engine_answers; then
        log "Docker Engine answers ($(docker version --format '{{.Server.Version}}'))"
        return
    fi
    [ -z "${DOCKER_HOST:-}" ] || die "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST"
    [ "$(id -u)" = 0 ] || die "no Docker Engine answers; start one (sudo $0) or set DOCKER_HOST"
    command -v dockerd >/dev/null || apt_install docker.io
    command -v docker >/dev/null || apt_install docker.io
    # A pid file left by a dockerd that died with an earlier session blocks the start.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    log "starting dockerd (log: /var/log/dockerd.log)"
    setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        engine_answers && { log "Docker Engine answers"; return; }
        sleep 1
    done
    tail -n 20 /var/log/dockerd.log >&2 || true
    die "dockerd did not answer within 60 s; see /var/log/dockerd.log"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

make_busybox() {
    have_image busybox:local && { log "busybox:local exists"; return; }
    dpkg -s busybox-static >/dev/null 2>&1 || apt_install busybox-static
    local dir
    dir=$(mktemp -d)
    tmpdirs+=("$dir")
    mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc"
    cp /bin/busybox "$dir/bin/busybox"
    for applet in sh ls cat echo id ps sleep true false env wc sha256sum touch mkdir rm init; do
        ln -s busybox "$dir/bin/$applet"
    done
    chmod 1777 "$dir/tmp"
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
    tar -C "$dir" --numeric-owner --owner=0 --group=0 -cf - . |
        docker import --change 'ENV PATH=/bin' --change 'CMD ["sh"]' - busybox:local >/dev/null
    log "made busybox:local ($(docker image inspect -f '{{.Size}}' busybox:local) bytes)"
}

# mmdebstrap a Debian bookworm of variant $2 with the other packages and import it as $1.
make_debian() {
    local image=$1 variant=$2; shift 2
    have_image "$image" && { log "$image exists"; return; }
    command -v mmdebstrap >/dev/null || apt_install mmdebstrap
    local dir include=()
    dir=$(mktemp -d)
    tmpdirs+=("$dir")
    [ $# -eq 0 ] || include=(--include="$(IFS=,; echo "$*")")
    log "making $image with mmdebstrap (variant $variant, packages: ${*:-none}; about a minute)"
    mmdebstrap --quiet --variant="$variant" "${include[@]}" bookworm "$dir/rootfs.tar"
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$dir/rootfs.tar" "$image" >/dev/null
    log "made $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
}

# rust:local, the builder of the bench's Rust workload: bookworm with gcc and libc6-dev (the
# linker and the C runtime rustc links against) plus this machine's own Rust toolchain (the one
# that builds dockception; bookworm's rustc 1.63 is older than the workload's rust-version), as
# rustc, cargo and the host target's standard library only (no docs, no other tools).
make_rust() {
    have_image rust:local && { log "rust:local exists"; return; }
    command -v mmdebstrap >/dev/null || apt_install mmdebstrap
    command -v rustc >/dev/null || die "rust:local copies this machine's Rust toolchain, and there is no rustc on PATH"
    local sysroot host dir
    sysroot=$(rustc --print sysroot)
    host=$(rustc -vV | sed -n 's/^host: //p')
    [ -x "$sysroot/bin/cargo" ] || die "rust:local wants a rustup toolchain (rustc and cargo in one folder); $sysroot/bin has no cargo"
    dir=$(mktemp -d)
    tmpdirs+=("$dir")
    mkdir -p "$dir/rust/bin" "$dir/rust/lib/rustlib"
    cp "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$dir/rust/bin/"
    cp -P "$sysroot"/lib/*.so* "$dir/rust/lib/"
    cp -r "$sysroot/lib/rustlib/$host" "$dir/rust/lib/rustlib/"
    log "making rust:local with mmdebstrap (gcc, libc6-dev, $(rustc --version | cut -d' ' -f1-2) from $sysroot; a minute or two)"
    mmdebstrap --quiet --variant=apt --include=gcc,libc6-dev,ca-certificates \
        --customize-hook="sync-in $dir/rust /usr/local" bookworm "$dir/rootfs.tar"
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$dir/rootfs.tar" rust:local >/dev/null
    log "made rust:local ($(docker image inspect -f '{{.Size}}' rust:local) bytes)"
}

# A Debian root filesystem with docker.io and openssh-server in a folder, for the tests that
# run a second Docker Engine with its own root filesystem and network namespace (DESIGN.md,
# "Engines"; tests/integration/second_engine.rs). Made once; a folder without its marker is
# an interrupted attempt, and one whose marker names other packages is an older one: both are
# made again.
SECOND_ENGINE_ROOT=${DOCKCEPTION_SECOND_ENGINE_ROOT:-/var/lib/dockception-tests/engine-root}
make_second_engine_root() {
    local root=$SECOND_ENGINE_ROOT
    # mount: its umount lets the tests drop the old root after pivot_root.
    local packages=docker.io,openssh-server,iproute2,mount
    [ "$(cat "$root/.dockception-complete" 2>/dev/null)" = "$packages" ] && { log "the second engine's root filesystem exists ($root)"; return; }
    [ "$(id -u)" = 0 ] || { log "not root: no second engine's root filesystem (its tests need root)"; return; }
    command -v mmdebstrap >/dev/null || apt_install mmdebstrap
    rm -rf "$root"
    mkdir -p "$(dirname "$root")"
    log "making the second engine's root filesystem in $root with mmdebstrap (docker.io, openssh-server; a minute or two)"
    mmdebstrap --quiet --variant=apt --include="$packages" bookworm "$root"
    echo "$packages" > "$root/.dockception-complete"
}

# Podman (Debian's podman 4.3) for the tests that build through its Docker-compatible API
# (tests/integration/podman.rs start `podman system service` themselves, rootful). Its
# containers start here only with ulimits under the machine's hard limits (DESIGN.md,
# "Engines"), so containers.conf gets default_ulimits when it names none. The local images the
# tests use are copied from the Docker Engine into Podman's storage (`docker save | podman
# load`, the same image ids), again when the Docker Engine's copy changed.
PODMAN_IMAGES=(busybox:local gcc:local debian-minimal:local)
setup_podman() {
    [ "$(id -u)" = 0 ] || { log "not root: no Podman (its tests run it rootful)"; return; }
    command -v podman >/dev/null || apt_install podman
    podman_ulimits
    local image id
    for image in "${PODMAN_IMAGES[@]}"; do
        # Podman prints the id without docker's `sha256:`.
        id=$(docker image inspect -f '{{.Id}}' "$image")
        if [ "sha256:$(podman image inspect -f '{{.Id}}' "$image" 2>/dev/null)" = "$id" ]; then
            log "Podman has $image"
            continue
        fi
        log "copying $image into Podman's storage (docker save | podman load)"
        docker save "$image" | podman load -q >/dev/null
    done
}

# The hard limit $1 ("unlimited" or a number), at most $2.
capped() { if [ "$1" = unlimited ] || [ "$1" -gt "$2" ]; then echo "$2"; else echo "$1"; fi; }

# default_ulimits in /etc/containers/containers.conf, at most the hard limits of this machine.
podman_ulimits() {
    local conf=/etc/containers/containers.conf nofile nproc line
    [ -f "$conf" ] && grep -q '^[[:space:]]*default_ulimits' "$conf" && return
    nofile=$(capped "$(ulimit -Hn)" 1048576)
    nproc=$(capped "$(ulimit -Hu)" 32768)
    line="default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
    log "setting Podman's $line in $conf"
    mkdir -p "$(dirname "$conf")"
    if [ -f "$conf" ] && grep -q '^\[containers\]' "$conf"; then
        sed -i "/^\[containers\]/a $line" "$conf"
    else
        printf '[containers]\n%s\n' "$line" >>"$conf"
    fi
}

ensure_engine
# A real registry for the tests that pull (they start it themselves, on 127.0.0.1).
command -v docker-registry >/dev/null || [ "$(id -u)" != 0 ] || apt_install docker-registry
# skopeo reads what dockception writes and pushes (tests/integration/deliver.rs); htpasswd
# (apache2-utils) makes the bcrypt file of the basic-auth registry; openssl its TLS certificate,
# and the token service's CA, key and JWT signatures (tests/integration/token_auth.rs).
command -v skopeo >/dev/null || [ "$(id -u)" != 0 ] || apt_install skopeo
command -v htpasswd >/dev/null || [ "$(id -u)" != 0 ] || apt_install apache2-utils
command -v openssl >/dev/null || [ "$(id -u)" != 0 ] || apt_install openssl
# `ip` gives the engine-goes-away test's private dockerd a bridge of its own (tests/integration/daemon.rs).
command -v ip >/dev/null || [ "$(id -u)" != 0 ] || apt_install iproute2
# unshare (util-linux) makes the second engine's namespaces; ssh is the client the docker CLI
# and dockception run for ssh:// engines, ssh-keygen makes the test's keys.
command -v unshare >/dev/null || [ "$(id -u)" != 0 ] || apt_install util-linux
command -v ssh >/dev/null || [ "$(id -u)" != 0 ] || apt_install openssh-client
# A real terminal for the progress tests (tests/integration/terminal.rs drive tmux).
command -v tmux >/dev/null || [ "$(id -u)" != 0 ] || apt_install tmux
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(busybox gcc golang debian-minimal second-engine podman)
for image in "${images[@]}"; do
    case $image in
        # Podman takes the Docker Engine's copies of the images its tests use.
        podman) make_busybox; make_debian gcc:local apt gcc libc6-dev tini
                make_debian debian-minimal:local minbase; setup_podman ;;
        busybox) make_busybox ;;
        # tini: dockception's `init = true` takes the static tini from the builder.
        gcc) make_debian gcc:local apt gcc libc6-dev tini ;;
        golang | go) make_debian golang:local apt golang-go ;;
        debian-minimal) make_debian debian-minimal:local minbase ;;
        second-engine) make_second_engine_root ;;
        rust) make_rust ;;
        *) die "unknown image $image (known: busybox gcc golang debian-minimal second-engine podman rust)" ;;
    esac
done
