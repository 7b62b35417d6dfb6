#!/usr/bin/env bash
# Debian/Ubuntu packages the tests use for real: the Pushgateway, promtool, genuine Fashion-MNIST, and the
# real test nodes' container runtime (containerd, runc, the CNI bridge plugins, iptables for kube-proxy), and
# what hack/build-images.sh needs besides Go (mmdebstrap, gcc, libc6-dev).
# Idempotent: installs only what is missing. Needs root or sudo.
set -euo pipefail

need=()
command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
command -v promtool >/dev/null || need+=(prometheus)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v make >/dev/null || need+=(make)
command -v shellcheck >/dev/null || need+=(shellcheck)
# The test nodes (tests/support/k8s/realnode.py) start their own containerd with their own config and socket; the
# package's service is never used (and these machines have no init system that would start it).
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables-restore >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v nsenter >/dev/null || need+=(util-linux)
command -v openssl >/dev/null || need+=(openssl)
# hack/build-images.sh: mmdebstrap makes the stand-in python base; gcc and glibc's static libc.a the pause
# binary; flock serialises concurrent builds.
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v gcc >/dev/null || need+=(gcc)
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q 'ok installed' || need+=(libc6-dev)
command -v flock >/dev/null || need+=(util-linux)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
