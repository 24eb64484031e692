# The second engine's first process: run by the tests (tests/integration/second_engine.rs) and
# by `cargo xtask bench` (xtask/src/bench/remote.rs) as the first process of fresh mount and
# pid namespaces, inside a network namespace of their own. Arguments: the engine's root
# filesystem, the engine's folder on the host, the cgroup it runs under.
# In the engine's folder: data/ (its /var/lib/docker); optionally shared (host folders bind-
# mounted at the same path, one a line), sshd_config (sshd runs too) and server/ca.pem,
# cert.pem, key.pem (dockerd also listens on tcp://0.0.0.0:2376 with TLS).
set -e
R=$1 D=$2 CG=$3
mount --make-rprivate /
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/var/lib/docker" "$R/run/dcpt" "$R/run/sshd"
mount --bind "$D/data" "$R/var/lib/docker"
mount --bind "$D" "$R/run/dcpt"
if [ -f "$D/shared" ]; then
    while read -r shared; do
        [ -n "$shared" ] || continue
        mkdir -p "$R$shared"
        mount --bind "$shared" "$R$shared"
    done < "$D/shared"
fi
ip link set lo up
# pivot_root, not chroot: runc joins a container's mount namespace for an exec, and only under
# a real root is that namespace's root the container's own (under chroot an exec's process
# sees none of the container's files or mounts).
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
if [ -f /run/dcpt/sshd_config ]; then
    /usr/sbin/sshd -D -e -f /run/dcpt/sshd_config >>/run/dcpt/sshd.log 2>&1 &
fi
set -- -H unix:///run/dcpt/docker.sock -H unix:///run/docker.sock
if [ -f /run/dcpt/server/ca.pem ]; then
    set -- "$@" -H tcp://0.0.0.0:2376 --tlsverify --tlscacert=/run/dcpt/server/ca.pem \
        --tlscert=/run/dcpt/server/cert.pem --tlskey=/run/dcpt/server/key.pem
fi
exec /usr/sbin/dockerd "$@" \
    --storage-driver=overlay2 --iptables=false --ip6tables=false --ip-masq=false \
    --cgroup-parent="/$CG" --pidfile=/run/docker.pid --exec-root=/run/docker-exec
