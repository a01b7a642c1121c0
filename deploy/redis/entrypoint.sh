#!/bin/sh
# Renders the ACL template (users.acl) with password hashes from the
# environment, then hands over to the redis image's own entrypoint (which
# drops to the redis user). Usage, as docker-compose.yml runs it:
#   entrypoint.sh redis-server /usr/local/etc/redis/redis.conf
# Environment: ACL_TEMPLATE (default /usr/local/etc/redis/users.acl.template),
# ACL_FILE (default /run/redis/users.acl, on a tmpfs), and one variable per
# {{NAME}} in the template.
set -eu

template=${ACL_TEMPLATE:-/usr/local/etc/redis/users.acl.template}
out=${ACL_FILE:-/run/redis/users.acl}

fail() {
    echo "redis acl: $*" >&2
    exit 1
}

[ -r "$template" ] || fail "cannot read the template $template"
mkdir -p "$(dirname "$out")"
umask 077
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT

# Comment and blank lines go: an ACL file only has `user` lines.
grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$template" > "$tmp"

for name in $(grep -o '{{[A-Z0-9_]*}}' "$tmp" | sort -u | tr -d '{}'); do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "$name is not set"
    case "$value" in
        change-me*) fail "$name is still the placeholder from .env.example" ;;
    esac
    [ "${#value}" -ge 16 ] || fail "$name is shorter than 16 characters"
    hash=$(printf '%s' "$value" | sha256sum | cut -d ' ' -f 1)
    sed -i "s/{{$name}}/$hash/g" "$tmp"
done
if grep -q '{{' "$tmp"; then
    fail "unrendered placeholder left in $template"
fi

mv "$tmp" "$out"
trap - EXIT
if [ "$(id -u)" = 0 ] && id redis > /dev/null 2>&1; then
    chown redis:redis "$out" "$(dirname "$out")"
fi
echo "redis acl: rendered $(wc -l < "$out") users into $out" >&2

[ $# -gt 0 ] || set -- redis-server /usr/local/etc/redis/redis.conf
if command -v docker-entrypoint.sh > /dev/null 2>&1; then
    exec docker-entrypoint.sh "$@" --aclfile "$out"
fi
exec "$@" --aclfile "$out"
