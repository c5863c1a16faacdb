#!/usr/bin/env bash
# ca-bundle.sh BUNDLE: make sure the CA bundle that 'make image' copies into the image exists.
# Debian's bundle, /etc/ssl/certs/ca-certificates.crt, comes from the package ca-certificates
# (update-ca-certificates writes it): run as root with apt-get, this installs the package or
# writes the bundle; otherwise it says what to run. Another bundle (CA_BUNDLE=) must just exist.
set -euo pipefail

bundle=$1
debian=/etc/ssl/certs/ca-certificates.crt
[ -s "$bundle" ] && exit 0

if [ "$bundle" != "$debian" ]; then
  echo "make image: the CA bundle $bundle (CA_BUNDLE) is missing or empty" >&2
  exit 1
fi
if dpkg-query -W -f='${Status}' ca-certificates 2>/dev/null | grep -q 'ok installed'; then
  fix=update-ca-certificates
else
  fix='apt-get install ca-certificates'
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "make image: the CA bundle $bundle is missing: run 'sudo $fix' (Debian, Ubuntu), or set CA_BUNDLE to your system's PEM bundle" >&2
  exit 1
fi
echo "make image: the CA bundle $bundle is missing: running $fix"
if [ "$fix" = update-ca-certificates ]; then
  update-ca-certificates >/dev/null
else
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null
fi
if [ ! -s "$bundle" ]; then
  echo "make image: $fix did not write $bundle" >&2
  exit 1
fi
