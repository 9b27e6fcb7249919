#!/usr/bin/env bash
# Makes a private CA and certificates for trying TLS with Rookery (or ZooKeeper), with openssl.
#
#   scripts/make-certs.sh DIR [NAME...]
#
# NAME: the DNS names and IP addresses the server certificate is valid for (default:
# localhost 127.0.0.1). Writes into DIR:
#   ca.pem                     the CA certificate: the trust store (ssl.trustStore.location)
#   server.pem                 the server's key and certificate in one file: a PEM key store
#                              (ssl.keyStore.location with ssl.keyStore.type=PEM)
#   server.p12                 the same as PKCS12, password in server.p12.password
#   server-cert.pem, server-key.pem
#   client.pem                 a client's key and certificate (CN=client), for ssl.clientAuth=need
#   client-cert.pem, client-key.pem
# Keys are unencrypted: protect the files with permissions (the script makes them 0600).
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR [NAME...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(localhost 127.0.0.1)
mkdir -p "$dir"
cd "$dir"
umask 077

san=""
for n in "${names[@]}"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+="IP:$n,"; else san+="DNS:$n,"; fi
done
san=${san%,}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=Rookery example CA" -keyout ca-key.pem -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null

leaf() { # name subject extendedKeyUsage [subjectAltName]
    local name=$1 subject=$2 eku=$3 alt=${4:-}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
        -keyout "$name-key.pem" -out "$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$eku"
        [ -z "$alt" ] || echo "subjectAltName=$alt"
    } > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 \
        -extfile "$name.ext" -out "$name-cert.pem" 2>/dev/null
    # PKCS#8, as ZooKeeper's PEM key store reader expects.
    openssl pkcs8 -topk8 -nocrypt -in "$name-key.pem" -out "$name-key.pk8" && mv "$name-key.pk8" "$name-key.pem"
    cat "$name-key.pem" "$name-cert.pem" > "$name.pem"
    rm -f "$name.csr" "$name.ext"
}

# Quorum members present their server certificate as clients too: serverAuth and clientAuth.
leaf server "/CN=${names[0]}" serverAuth,clientAuth "$san"
leaf client "/O=Rookery/CN=client" clientAuth

password=$(openssl rand -hex 12)
printf '%s' "$password" > server.p12.password
openssl pkcs12 -export -in server-cert.pem -inkey server-key.pem -certfile ca.pem \
    -name server -passout "pass:$password" -out server.p12
rm -f ca.srl
echo "certificates written to $dir"
