#!/usr/bin/env bash
# kms-tls.sh: the CA and the serving certificate of the key service in the
# cluster (`rekey kms serve`, config/kms-service, the chart's kms.enabled),
# made with openssl. docs/workloads.md says how to put them in the cluster and
# how to rotate them.
#
#   hack/kms-tls.sh ca DIR [NAME...]  a new CA: DIR/ca.crt (public) and DIR/ca.key
#                                     (keep it offline); refuses to overwrite one.
#                                     Its name constraints (critical) let it
#                                     vouch only for the Service's names
#                                     (KMS_TLS_SERVICE and KMS_TLS_SERVICE.
#                                     KMS_TLS_NAMESPACE), names under .svc and
#                                     .svc.cluster.local, localhost,
#                                     127.0.0.0/8 and ::1, and the NAMEs:
#                                     DNS names (and their subdomains; .NAME:
#                                     only subdomains), IP addresses, or
#                                     ADDRESS/MASK (10.96.0.0/255.240.0.0)
#   hack/kms-tls.sh cert DIR [NAME...] a serving certificate signed by DIR's CA:
#                                     DIR/tls.crt (with the CA appended: the
#                                     chain) and DIR/tls.key, replacing any
#                                     there. NAMEs are DNS names or IP
#                                     addresses; without any, the names of
#                                     the Service rekey-kms in rekey-system
#                                     (KMS_TLS_SERVICE, KMS_TLS_NAMESPACE)
#   hack/kms-tls.sh bundle OUT CA...  one PEM file of several CAs (ca.crt of
#                                     old and new): what workloads trust
#                                     while the CA is being replaced
#
# Keys are ECDSA P-256. KMS_TLS_CA_DAYS (default 3650) and KMS_TLS_DAYS
# (default 90) set the validity of the CA and of the serving certificate: a
# new serving certificate from the same CA needs nothing from the workloads;
# a new CA does (docs/workloads.md, "Rotating the certificate and the CA").
set -euo pipefail

die() { printf 'kms-tls: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

command -v openssl >/dev/null || die "openssl is not on PATH"
[[ $# -ge 2 ]] || usage
cmd=$1 dir=$2
shift 2

case $cmd in
ca)
  [[ -e "$dir/ca.key" || -e "$dir/ca.crt" ]] && die "$dir already holds a CA; a new one goes in another directory"
  # Workloads add this CA to the trust of every connection they make
  # (SSL_CERT_DIR, NODE_EXTRA_CA_CERTS, a certifi bundle: docs/workloads.md),
  # so it may vouch only for the key service's names, not for any site.
  # Go and OpenSSL (so Python and Node) enforce the constraints: a
  # certificate with a name outside them is invalid. The IP range matters as
  # much as the DNS names: without one, any IP address would be allowed.
  svc=${KMS_TLS_SERVICE:-rekey-kms} ns=${KMS_TLS_NAMESPACE:-rekey-system}
  nc="permitted;DNS:$svc,permitted;DNS:$svc.$ns,permitted;DNS:.svc,permitted;DNS:.svc.cluster.local"
  nc+=",permitted;DNS:localhost,permitted;IP:127.0.0.0/255.0.0.0,permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
  for n in "$@"; do
    if [[ $n =~ ^[0-9a-fA-F:.]+/[0-9a-fA-F:.]+$ ]]; then nc+=",permitted;IP:$n"
    elif [[ $n =~ ^[0-9.]+$ ]]; then nc+=",permitted;IP:$n/255.255.255.255"
    elif [[ $n =~ ^[0-9a-fA-F:.]+$ && $n == *:* ]]; then nc+=",permitted;IP:$n/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    elif [[ $n =~ ^\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]]; then nc+=",permitted;DNS:$n"
    else die "$n is not a DNS name, .DOMAIN, IP address or ADDRESS/MASK"; fi
  done
  mkdir -p "$dir"
  (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key")
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "${KMS_TLS_CA_DAYS:-3650}" \
    -subj "/CN=rekey-kms-ca $(date -u +%Y%m%dT%H%M%SZ)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "nameConstraints=critical,$nc" \
    -out "$dir/ca.crt" 2>/dev/null || { rm -f "$dir/ca.key" "$dir/ca.crt"; die "openssl refused the name constraints $nc"; }
  echo "kms-tls: $dir/ca.crt (give it to workloads) and $dir/ca.key (keep it offline); it vouches only for ${nc//permitted;/}"
  ;;
cert)
  [[ -s "$dir/ca.crt" && -s "$dir/ca.key" ]] || die "$dir has no CA: run '$0 ca $dir' first"
  if [[ $# -eq 0 ]]; then
    svc=${KMS_TLS_SERVICE:-rekey-kms} ns=${KMS_TLS_NAMESPACE:-rekey-system}
    set -- "$svc" "$svc.$ns" "$svc.$ns.svc" "$svc.$ns.svc.cluster.local"
  fi
  san="" subj=""
  for n in "$@"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="${san:+,}IP:$n"; else san+="${san:+,}DNS:$n" subj=${subj:-/CN=$n}; fi
  done
  # The common name is the first DNS name, and none when there is none:
  # OpenSSL checks a common name that looks like a DNS name (127.0.0.1
  # does) against the CA's DNS constraints when the certificate has no DNS
  # name, and clients read only the subjectAltName anyway.
  subj=${subj:-/O=rekey-kms}
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/tls.key")
  openssl req -new -key "$tmp/tls.key" -subj "$subj" -out "$tmp/tls.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$san" >"$tmp/ext"
  openssl x509 -req -in "$tmp/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -CAserial "$tmp/serial" \
    -sha256 -days "${KMS_TLS_DAYS:-90}" -extfile "$tmp/ext" -out "$tmp/tls.crt" 2>/dev/null
  # A name outside the CA's name constraints would make every client refuse
  # the certificate: say so now, not at the first handshake.
  if ! openssl verify -CAfile "$dir/ca.crt" -purpose sslserver "$tmp/tls.crt" >"$tmp/verify" 2>&1; then
    cat "$tmp/verify" >&2
    die "the CA in $dir does not vouch for $san (its name constraints: openssl x509 -in $dir/ca.crt -noout -ext nameConstraints); nothing was written"
  fi
  cat "$dir/ca.crt" >>"$tmp/tls.crt"
  install -m 0600 "$tmp/tls.key" "$dir/tls.key"
  install -m 0644 "$tmp/tls.crt" "$dir/tls.crt"
  echo "kms-tls: $dir/tls.crt and $dir/tls.key for $san, valid ${KMS_TLS_DAYS:-90} days"
  ;;
bundle)
  [[ $# -ge 1 ]] || usage
  out=$dir
  tmp=$(mktemp)
  for f in "$@"; do
    openssl x509 -in "$f" -noout 2>/dev/null || { rm -f "$tmp"; die "$f is not a PEM certificate"; }
    cat "$f" >>"$tmp"
  done
  install -m 0644 "$tmp" "$out"
  rm -f "$tmp"
  echo "kms-tls: $out holds $# CA certificates"
  ;;
*) usage ;;
esac
