#!/usr/bin/env bash
# Back up a Bastion installation into one tar.gz archive (mode 0600).
#
# THE ARCHIVE HOLDS SECRETS: the data directory's secrets/ folder (session key,
# encryption keys) and bastion.toml, next to a full copy of the database. Anyone who
# has the archive can read every record. Store it encrypted, with access control.
#
# Run it as the user that runs Bastion (it refuses otherwise), for example:
#   sudo -u bastion /opt/bastion/src/deploy/backup.sh -o /var/backups/bastion
# Safe while Bastion serves: SQLite is copied with sqlite3's online backup API,
# PostgreSQL with pg_dump, both consistent snapshots.
set -euo pipefail

PROG=$(basename "$0")

usage() {
    cat <<EOF
Usage: $PROG [-d DATA_DIR] [-o OUTPUT_DIR] [-e ENV_FILE] [-p PYTHON] [-k DAYS] [-h]

Writes OUTPUT_DIR/bastion-backup-<host>-<UTC time>.tar.gz (mode 0600) holding:
  MANIFEST                   Bastion version, time, database backend, checksums
  database.sqlite3           consistent copy of the SQLite database, or
  database.pgdump            pg_dump -Fc of the PostgreSQL database
  data/                      the data directory: secrets/, bastion.toml, ...
                             (without the live SQLite files)
and a .sha256 file beside it. The archive holds secrets: keep it safe.

Options:
  -d DATA_DIR    data directory (default: \$BASTION_DATA_DIR or /var/lib/bastion)
  -o OUTPUT_DIR  where to write the archive (default: /var/backups/bastion)
  -e ENV_FILE    environment file to read first, as systemd does
                 (default: /etc/bastion/bastion.env, skipped if missing)
  -p PYTHON      python of Bastion's virtual environment
                 (default: /opt/bastion/venv/bin/python)
  -k DAYS        afterwards delete archives in OUTPUT_DIR older than DAYS days
  -h             show this help

The database location comes from Bastion's own settings (bastion.toml in the data
directory, then BASTION_* variables), exactly as the server reads them.
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

data_dir=""
output_dir=/var/backups/bastion
env_file=/etc/bastion/bastion.env
python=/opt/bastion/venv/bin/python
keep_days=""

while getopts ":d:o:e:p:k:h" opt; do
    case "$opt" in
        d) data_dir=$OPTARG ;;
        o) output_dir=$OPTARG ;;
        e) env_file=$OPTARG ;;
        p) python=$OPTARG ;;
        k) keep_days=$OPTARG ;;
        h) usage; exit 0 ;;
        :) usage >&2; die "option -$OPTARG needs a value." ;;
        *) usage >&2; die "unknown option -$OPTARG." ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { usage >&2; die "unexpected argument: $1"; }
if [ -n "$keep_days" ] && ! [[ "$keep_days" =~ ^[0-9]+$ ]]; then
    die "-k takes a whole number of days."
fi

umask 077

if [ -r "$env_file" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
fi
if [ -n "$data_dir" ]; then
    export BASTION_DATA_DIR="$data_dir"
else
    export BASTION_DATA_DIR="${BASTION_DATA_DIR:-/var/lib/bastion}"
fi

[ -x "$python" ] || die "$python is not executable; pass Bastion's venv python with -p."

# Ask Bastion where its data and database are. One value per line:
# data dir, version, backend, then the SQLite path, or the libpq URL without its
# password and the password.
settings=$("$python" - <<'PY'
import sys

from sqlalchemy.engine import make_url

from bastion import __version__
from bastion.config import ConfigError, load_settings

try:
    settings = load_settings()
except ConfigError as exc:
    sys.exit(f"Bastion's settings are invalid: {exc}")
url = make_url(settings.effective_database_url)
print(settings.data_dir.resolve())
print(__version__)
if settings.is_sqlite:
    print("sqlite")
    print(url.database or "")
else:
    print("postgresql")
    print(url.set(drivername="postgresql", password=None).render_as_string(hide_password=False))
    print(url.password or "")
PY
) || die "could not read Bastion's settings."

{
    IFS= read -r data_dir
    IFS= read -r version
    IFS= read -r backend
    IFS= read -r db_location
    IFS= read -r db_password || true
} <<<"$settings"
unset settings

[ -d "$data_dir" ] || die "the data directory $data_dir does not exist."
[ -d "$data_dir/secrets" ] || die "$data_dir has no secrets/ folder; is it initialized?"
owner=$(stat -c %u "$data_dir")
if [ "$(id -u)" != "$owner" ]; then
    die "run this as the owner of $data_dir (uid $owner), e.g. sudo -u bastion $0 ..."
fi

mkdir -p "$output_dir"
chmod 700 "$output_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
name="bastion-backup-$(uname -n | cut -d. -f1)-$stamp"
stage=$(mktemp -d "$output_dir/.$name.XXXXXX")
cleanup() { rm -rf "$stage"; }
trap cleanup EXIT
mkdir "$stage/$name"

case "$backend" in
    sqlite)
        db_file=database.sqlite3
        [ -f "$db_location" ] || die "the SQLite database $db_location does not exist."
        echo "Copying the SQLite database $db_location (online backup)..."
        "$python" - "$db_location" "$stage/$name/$db_file" <<'PY'
import sqlite3
import sys

source = sqlite3.connect(sys.argv[1], timeout=30)
target = sqlite3.connect(sys.argv[2])
try:
    source.execute("PRAGMA busy_timeout=30000")
    source.backup(target)
    result = target.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        sys.exit(f"The copy failed its quick_check: {result}")
    # A self-contained file: no -wal or -shm needed beside it.
    target.execute("PRAGMA journal_mode=DELETE")
finally:
    target.close()
    source.close()
PY
        ;;
    postgresql)
        db_file=database.pgdump
        command -v pg_dump >/dev/null || die "pg_dump is not installed (package postgresql-client)."
        echo "Dumping the PostgreSQL database with pg_dump -Fc..."
        # The password travels in the environment, never on a command line.
        PGPASSWORD="$db_password" pg_dump --format=custom --no-password \
            --file="$stage/$name/$db_file" --dbname="$db_location"
        ;;
    *)
        die "unknown database backend $backend."
        ;;
esac
unset db_password

echo "Copying the data directory $data_dir (secrets/, bastion.toml, ...)..."
mkdir "$stage/$name/data"
tar -C "$data_dir" \
    --exclude=./bastion.db --exclude=./bastion.db-wal --exclude=./bastion.db-shm \
    --exclude=./bastion.db-journal \
    -cf - . | tar -C "$stage/$name/data" -xpf -
[ -d "$stage/$name/data/secrets" ] || die "the secrets/ folder was not copied."

{
    echo "bastion_version=$version"
    echo "created_utc=$stamp"
    echo "host=$(uname -n)"
    echo "database_backend=$backend"
    echo "database_file=$db_file"
    (cd "$stage/$name" && sha256sum "$db_file")
    echo "NOTE: this archive holds secrets (data/secrets/) and all records."
} >"$stage/$name/MANIFEST"

archive="$output_dir/$name.tar.gz"
tar -C "$stage" -czf "$stage/archive.tar.gz" "$name"
chmod 600 "$stage/archive.tar.gz"
mv "$stage/archive.tar.gz" "$archive"
(cd "$output_dir" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
chmod 600 "$archive.sha256"

if [ -n "$keep_days" ]; then
    find "$output_dir" -maxdepth 1 -type f \
        \( -name 'bastion-backup-*.tar.gz' -o -name 'bastion-backup-*.tar.gz.sha256' \) \
        -mtime +"$keep_days" -print -delete
fi

echo "Wrote $archive (mode 0600)."
echo "It holds secrets and every record: store it encrypted and restrict who can read it."
