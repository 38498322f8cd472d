#!/usr/bin/env bash
# The one-shot step before `docker-compose up` (deploy/compose.yaml, docs/deploy.md): writes
# into deploy/secrets/ a private CA, a certificate and key for each node n0..n3 (DNS name = the
# compose service, IP = its fixed address on the compose network, plus localhost for the
# published ports; serverAuth and clientAuth, since nodes call each other with mutual TLS), a
# client certificate for the CLI, the gossip secret (cluster.env), and two API keys made with
# the image's own `allidb keys generate`: an operator key (tenant `*`, admin) and an application
# key (tenant `demo`, write), with their key file (api-keys).
#
#   deploy/init-secrets.sh [--image allidb:latest] [--force]
#
# Files the nodes read belong to uid 10001 (the image's user), mode 0600: run it as root (sudo).
# The CLI's files (client.key, operator.key, app.key) are given to the sudo caller. Refuses to
# overwrite existing secrets without --force.
set -euo pipefail

image="allidb:latest"
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "init-secrets: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "init-secrets: run as root (sudo): the nodes' keys must belong to uid 10001, mode 0600" >&2
  exit 1
fi

dir="$(cd "$(dirname "$0")" && pwd)/secrets"
if [ -e "$dir/ca.pem" ] && [ "$force" = 0 ]; then
  echo "init-secrets: $dir already holds secrets (--force replaces them)" >&2
  exit 1
fi
mkdir -p "$dir"
chmod 0755 "$dir"
cd "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The compose network's addresses (deploy/compose.yaml).
subnet_prefix="172.30.35"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/CN=AlliDB compose CA" -keyout ca.key -out ca.pem 2>/dev/null
issue() { # name, subjectAltName, extendedKeyUsage
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$1" \
    -keyout "$1.key" -out "$work/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$work/$1.ext" -out "$1.pem" 2>/dev/null
}
for i in 0 1 2 3; do
  issue "n$i" "DNS:n$i,DNS:localhost,IP:$subnet_prefix.1$i,IP:127.0.0.1" "serverAuth,clientAuth"
done
issue client "DNS:client" "clientAuth"

key_of() { # tenant, role -> "api_key key_file_line"
  docker run --rm --entrypoint /usr/local/bin/allidb "$image" --json keys generate \
    --tenant "$1" --role "$2" 2>/dev/null
}
json_field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p"; }
operator="$(key_of '*' admin)"
app="$(key_of demo write)"
printf '%s\n' "$operator" | json_field api_key > operator.key
printf '%s\n' "$app" | json_field api_key > app.key
{
  echo "# <sha256-hex> <tenant> <role>: the operator key, then the application key"
  printf '%s\n' "$operator" | json_field key_file_line
  printf '%s\n' "$app" | json_field key_file_line
} > api-keys
[ -s operator.key ] && [ -s app.key ] && [ "$(grep -vc '^#' api-keys)" = 2 ] || {
  echo "init-secrets: allidb keys generate in $image gave no keys" >&2
  exit 1
}
printf 'ALLIDB_CLUSTER_SECRET=%s\n' "$(openssl rand -hex 24)" > cluster.env

rm -f ca.srl
chmod 0644 ca.pem n?.pem client.pem
chmod 0600 ca.key n?.key client.key operator.key app.key api-keys cluster.env
chown 10001:10001 n?.key n?.pem api-keys
owner="${SUDO_UID:-0}:${SUDO_GID:-0}"
chown "$owner" ca.key client.key client.pem operator.key app.key cluster.env
echo "init-secrets: wrote $dir (CA, n0..n3, client, api-keys, operator.key, app.key, cluster.env)"
